"""Spin-then-block waiting for the warm pool's pipes: answers read without a sleeping thread's wake-up.

A call to a warm worker crosses a pipe twice. When the reading side sleeps in ``poll()``, each crossing
costs a wake-up, and on a virtual machine whose idle CPU has halted that is 50-150 µs, several times the
work of sending the message. The DAG's levels run one after another (aggregate, then update, then
evaluate), so an iteration pays these wake-ups six to eight times over.

The pool therefore polls instead of sleeping, but only when it is likely to pay off and cheap:

- a worker that has just answered polls its pipe for a short while (:data:`WORKER_SPIN_S`), since the
  next level's call usually follows within tens of microseconds;
- the parent's reader blocks until shortly before an in-flight call is expected to end (its function's
  recent call time, :class:`CallTimes`), then polls until the answer comes or a budget runs out, and
  only while fewer calls are in flight than there are CPUs (an idle CPU does the polling).

Every poll loop gives the CPU away between polls (``sched_yield``), so a runnable worker is never kept
waiting by a poller. Budgets bound the CPU a poller can burn per call; ``FTG_POOL_SPIN_US=0`` turns
polling off (e.g. on a machine shared with other work).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["CallTimes", "spin_until"]


def spin_until(ready: Callable[[], bool], budget_s: float) -> bool:
    """Poll ``ready`` for up to ``budget_s`` seconds, yielding the CPU between polls.

    Returns:
        Whether ``ready()`` became true within the budget (it is polled at least once).
    """
    deadline = time.perf_counter() + budget_s
    while True:
        if ready():
            return True
        if time.perf_counter() >= deadline:
            return False
        os.sched_yield()


class CallTimes:
    """Recent call time per function (exponential moving average), to predict when a call ends.

    Args:
        weight: the newest call's weight in the average.
    """

    def __init__(self, weight: float = 0.25) -> None:
        if not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.weight = weight
        self._mean: dict[str, float] = {}

    def add(self, key: str, seconds: float) -> None:
        """Record one finished call of ``key`` that took ``seconds``."""
        mean = self._mean.get(key)
        self._mean[key] = seconds if mean is None else mean + self.weight * (seconds - mean)

    def expected(self, key: str) -> float | None:
        """The average call time of ``key``; None before its first call."""
        return self._mean.get(key)

    def spin_window(self, key: str, started: float, lead_s: float) -> tuple[float, float] | None:
        """When to start polling for a call of ``key`` started at ``started`` (monotonic), and until when.

        Polling starts ``lead_s`` (or a tenth of the expected time, if larger) before the expected end
        and lasts twice that past it: late answers are then read by a blocking wait, early ones by the
        poller's first look. None when ``key`` has no history yet.
        """
        mean = self._mean.get(key)
        if mean is None:
            return None
        margin = max(lead_s, 0.1 * mean)
        end = started + mean
        return end - margin, end + 2 * margin
