"""Per-process clients and the context a function's work runs in.

A warm function instance keeps its store clients and the frozen run configs it has read (they are
immutable, keyed by their digest); it keeps no training state between calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from ftg_common import errors
from ftg_common.config import RunConfig
from ftg_common.layout import config_key
from ftg_common.meta.base import MetaStore
from ftg_common.schemas import RunRef
from ftg_common.settings import get_settings
from ftg_common.store.base import KeyNotFoundError, ObjectStore

__all__ = ["FunctionContext", "Stopwatch", "context_for", "meta", "store"]


class Stopwatch:
    """Wall time since construction (``perf_counter``), rounded to microseconds for JSON bodies."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        """Seconds elapsed since the stopwatch was made."""
        return round(time.perf_counter() - self.start, 6)


@dataclass(frozen=True)
class FunctionContext:
    """What one call's work needs besides its request.

    Attributes:
        config: the run's frozen config; its digest matched the request's ``config_digest``.
        store: this process's object store client.
        meta: this process's metadata store client.
        clock: started when the call's context was made; ``faas.serve`` reports it as ``seconds``.
    """

    config: RunConfig
    store: ObjectStore
    meta: MetaStore
    clock: Stopwatch


@lru_cache(maxsize=1)
def store() -> ObjectStore:
    """The object store named by the settings, opened once per process."""
    from ftg_common.store import open_store

    return open_store(get_settings().store_url, get_settings())


@lru_cache(maxsize=1)
def meta() -> MetaStore:
    """The metadata store named by the settings, opened once per process."""
    from ftg_common.meta import open_meta

    return open_meta(get_settings().meta_url, get_settings())


@lru_cache(maxsize=64)
def _cached_config(store_url: str, run_id: str, digest: str) -> RunConfig:
    # Keyed by the store too: one process may serve runs of several stores (tests, the local gateway).
    cfg = RunConfig.from_stored(store().get_json(config_key(run_id)))
    if cfg.digest() != digest:
        raise errors.Conflict(
            f"config_digest {digest} does not match the stored config of run {run_id} ({cfg.digest()})",
            "config_digest",
        )
    return cfg


def _run_config(run_id: str, digest: str) -> RunConfig:
    try:
        return _cached_config(store().url, run_id, digest)
    except KeyNotFoundError as exc:
        raise errors.BadRequest(
            f"run {run_id!r} has no config in the object store ({exc.key})", "run_id"
        ) from exc


def context_for(req: RunRef) -> FunctionContext:
    """The context for serving ``req``: the run's config (checked against its digest) and the clients.

    Raises:
        BadRequest: the run has no config in the object store (field ``run_id``).
        Conflict: ``req.config_digest`` is not the digest of the run's stored config (field
            ``config_digest``); a step never mixes configs.
    """
    clock = Stopwatch()
    return FunctionContext(_run_config(req.run_id, req.config_digest), store(), meta(), clock)
