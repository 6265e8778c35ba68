"""Objects a warm function instance reuses between calls, each lent to one call at a time.

Building gymnasium envs costs more than a short rollout, so an instance keeps them. A plain per-process
cache would hand the same envs to two concurrent calls (the local gateway runs calls on threads, and two
trials of a sweep can ask for identical envs), interleaving their steps; a pool lends each object to one
caller and builds another when every copy is busy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

__all__ = ["WarmPool"]

T = TypeVar("T")


class WarmPool(Generic[T]):
    """Idle objects by key, built by ``factory(*key)`` when none is idle.

    Args:
        factory: builds the object for a key.
        max_idle: idle objects kept over all keys; the least recently returned go first.
    """

    def __init__(self, factory: Callable[..., T], max_idle: int = 16) -> None:
        self._factory = factory
        self._max_idle = max_idle
        self._idle: OrderedDict[tuple[Hashable, ...], list[T]] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def lend(self, *key: Hashable) -> Iterator[T]:
        """An object for ``key``, the caller's alone until the block ends.

        An object whose block raised is dropped, not returned: its state is unknown.
        """
        with self._lock:
            idle = self._idle.get(key)
            obj = idle.pop() if idle else None
        if obj is None:
            obj = self._factory(*key)
        yield obj
        with self._lock:
            self._idle.setdefault(key, []).append(obj)
            self._idle.move_to_end(key)
            self._trim()

    def idle(self) -> int:
        """Idle objects currently kept."""
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def clear(self) -> None:
        """Drop every idle object."""
        with self._lock:
            self._idle.clear()

    def _trim(self) -> None:
        excess = sum(len(v) for v in self._idle.values()) - self._max_idle
        while excess > 0:
            key, objs = next(iter(self._idle.items()))
            drop = min(excess, len(objs))
            del objs[:drop]
            excess -= drop
            if not objs:
                del self._idle[key]
