"""Run ids become object-store keys and file paths: a `/` in one would let a run write into another's folder.

Every other bad id in the suite that holds a `/` also holds a `.` (``../x``), so a pattern that admitted
`/` but not `.` would pass those tests; these ids have a `/` and nothing else wrong with them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from ftg_common import layout
from ftg_common.ids import InvalidIdError, validate_run_id
from ftg_common.schemas import AggregateRequest, CollectRequest, EvalRequest, RunRef, UpdateRequest

SLASHED_IDS = ["a/b", "a/b-c", "ab/"]
GOOD_IDS = ["a", "ab", "a-b", "0-run-7", "a" * 63]

_DIGEST = "0123456789abcdef"
_SHARD_RESULT = {
    "key": "k",
    "carry_key": "c",
    "shard": 0,
    "steps": 8,
    "policy_version": 0,
    "episode_returns": [],
    "episode_lengths": [],
}
# A valid body for each function's request model; each test swaps in one bad run id.
REQUESTS: dict[type[BaseModel], dict[str, Any]] = {
    RunRef: {},
    CollectRequest: {"shard": 0},
    AggregateRequest: {"shards": [_SHARD_RESULT]},
    UpdateRequest: {"mode": "init"},
    EvalRequest: {"episodes": 2},
}
_ID_PARAMS = ("run_id", "sweep_id")


def _layout_keys() -> list[tuple[str, Callable[..., str], list[str]]]:
    """Every public function of ``ftg_common.layout`` that takes an id: (name, function, id parameters)."""
    found = []
    for name, fn in inspect.getmembers(layout, inspect.isfunction):
        if name.startswith("_") or fn.__module__ != layout.__name__:
            continue
        ids = [p for p in inspect.signature(fn).parameters if p in _ID_PARAMS]
        if ids:
            found.append((name, fn, ids))
    return found


def _call(fn: Callable[..., str], **ids: str) -> str:
    # Counters (version, iteration, shard, ...) get 0; ids get the value under test or a valid one.
    args = {p: ids.get(p, "ok") if p in _ID_PARAMS else 0 for p in inspect.signature(fn).parameters}
    return fn(**args)


@pytest.mark.parametrize("run_id", SLASHED_IDS)
def test_validate_run_id_refuses_a_slash(run_id: str) -> None:
    with pytest.raises(InvalidIdError, match="run_id"):
        validate_run_id(run_id)


@pytest.mark.parametrize("run_id", GOOD_IDS)
def test_validate_run_id_accepts_the_documented_alphabet(run_id: str) -> None:
    assert validate_run_id(run_id) == run_id


def test_layout_covers_every_key_that_embeds_an_id() -> None:
    # Guards the introspection below: if it found nothing, the layout test would pass vacuously.
    names = {name for name, _, _ in _layout_keys()}
    assert {"run_prefix", "config_key", "policy_key", "traj_key", "carry_key", "sweep_trial_key"} <= names


@pytest.mark.parametrize("bad", SLASHED_IDS)
def test_layout_keys_refuse_a_slashed_id(bad: str) -> None:
    accepted = []
    for name, fn, id_params in _layout_keys():
        assert "/ok" in _call(fn), f"layout.{name} with valid ids"
        for param in id_params:
            try:
                key = _call(fn, **{param: bad})
            except InvalidIdError:
                continue
            accepted.append(f"layout.{name}({param}={bad!r}) -> {key!r}")
    assert accepted == []


@pytest.mark.parametrize("model", list(REQUESTS), ids=lambda m: m.__name__)
@pytest.mark.parametrize("bad", SLASHED_IDS)
def test_function_requests_refuse_a_slashed_run_id(model: type[BaseModel], bad: str) -> None:
    body = {"run_id": "ok", "iteration": 0, "config_digest": _DIGEST, **REQUESTS[model]}
    model.model_validate(body)  # the body is valid apart from the id under test
    with pytest.raises(ValidationError) as info:
        model.model_validate({**body, "run_id": bad})
    assert [error["loc"] for error in info.value.errors()] == [("run_id",)]
