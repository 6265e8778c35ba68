"""What every function handler shares: request validation, error mapping, and per-process clients.

A warm function instance keeps its store clients and the frozen run configs it has read (they are
immutable, keyed by their digest); it keeps no training state between calls.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ftg_common.config import RunConfig
from ftg_common.envs.factory import UnknownEnvError
from ftg_common.ids import InvalidIdError
from ftg_common.layout import config_key
from ftg_common.meta.base import MetaStore, RunNotFoundError
from ftg_common.settings import get_settings
from ftg_common.store.base import InvalidKeyError, KeyNotFoundError, ObjectStore

log = logging.getLogger("ftg.function")
Req = TypeVar("Req", bound=BaseModel)


class FunctionError(Exception):
    status = 500

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(FunctionError):
    status = 400


class Conflict(FunctionError):
    status = 409


def _error(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return {"statusCode": status, "body": body, "headers": {"Content-Type": "application/json"}}


def serve(event: Any, model: type[Req], work: Callable[[Req], BaseModel]) -> dict[str, Any]:
    """Parse and validate ``event.body`` as ``model``, run ``work``, and map every failure to a JSON
    error with the right status: bad input is a 400 naming the problem, never a stack trace."""
    method = getattr(event, "method", "POST")
    if method != "POST":
        return _error(405, f"method {method} not allowed; POST a JSON object")
    try:
        raw = json.loads(event.body or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _error(400, f"request body is not valid JSON: {exc}")
    if not isinstance(raw, dict):
        return _error(400, "request body must be a JSON object")
    try:
        req = model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in exc.errors())
        return _error(400, f"invalid request: {problems}", loc or None)
    try:
        result = work(req)
    except FunctionError as exc:
        return _error(exc.status, exc.message, exc.field)
    except KeyNotFoundError as exc:
        return _error(400, str(exc), "key")
    except (InvalidIdError, InvalidKeyError) as exc:
        return _error(400, str(exc))
    except UnknownEnvError as exc:
        return _error(400, str(exc), "env_id")
    except RunNotFoundError as exc:
        return _error(400, str(exc), "run_id")
    except Exception as exc:  # the contract is a JSON body, even for our own bugs
        log.exception("function failed")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")
    return {"statusCode": 200, "body": result.model_dump(mode="json"), "headers": {"Content-Type": "application/json"}}


@lru_cache(maxsize=1)
def store() -> ObjectStore:
    from ftg_common.store import open_store

    return open_store(get_settings().store_url, get_settings())


@lru_cache(maxsize=1)
def meta() -> MetaStore:
    from ftg_common.meta import open_meta

    return open_meta(get_settings().meta_url, get_settings())


@lru_cache(maxsize=64)
def _cached_config(store_url: str, run_id: str, digest: str) -> RunConfig:
    cfg = RunConfig.from_stored(store().get_json(config_key(run_id)))
    if cfg.digest() != digest:
        raise Conflict(
            f"config_digest {digest} does not match the stored config of run {run_id} ({cfg.digest()})",
            "config_digest",
        )
    return cfg


def run_config(run_id: str, digest: str) -> RunConfig:
    """The run's frozen config; the digest in the request must match it (no mixing of configs)."""
    try:
        return _cached_config(store().url, run_id, digest)
    except KeyNotFoundError as exc:
        raise BadRequest(f"run {run_id!r} has no config in the object store ({exc.key})", "run_id") from exc


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 6)
