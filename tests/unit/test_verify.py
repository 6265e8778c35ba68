"""Damaged objects of a real run: each read names the key, each function answers 422 (or 400 when the
object is gone) naming it, and ``verify_run`` names exactly the damaged keys.

One small CartPole run is made per module into a folder no test writes to; every test works on its
own copy of it (object store and metadata database), so tests share no state and may run in any order.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ftg_common import checkpoints, layout, runtime
from ftg_common.config import RunConfig
from ftg_common.errors import CorruptObjectError
from ftg_common.meta.sqlite import SqliteMeta
from ftg_common.settings import get_settings
from ftg_common.store.base import KeyNotFoundError, ObjectStore
from ftg_common.store.integrity import object_digest
from ftg_common.verify import Damage, verify_run
from tests.funcs import iterate, new_run, post

RUN = "damaged-run"
PPO = {"n_envs": 4, "n_steps": 16, "shards": 2, "batch_size": 32, "n_epochs": 2, "total_steps": 64 * 8}


def _clear_caches() -> None:
    get_settings.cache_clear()
    runtime.store.cache_clear()
    runtime.meta.cache_clear()
    runtime._cached_config.cache_clear()


@dataclass(frozen=True)
class Pristine:
    """The module's run: iterations 0 and 1 committed (1 evaluated), iteration 2 collected and
    aggregated but not updated; what each function answered along the way."""

    root: Path
    cfg: RunConfig
    shards: dict[int, list[dict[str, Any]]]
    aggregates: dict[int, dict[str, Any]]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pristine]:
    root = tmp_path_factory.mktemp("pristine")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FTG_STORE_URL", f"file://{root}/store")
        env.setenv("FTG_META_URL", f"sqlite:///{root}/meta.db")
        env.setenv("FTG_LOCAL_WORKERS", "0")
        _clear_caches()
        try:
            cfg = new_run(RUN, **PPO)
            done = [iterate(cfg, 0), iterate(cfg, 1, evaluate=True)]
            ref = {"run_id": RUN, "iteration": 2, "config_digest": cfg.digest()}
            last = [post("rollout-collector", {**ref, "shard": s}).json() for s in range(2)]
            agg = post("reward-aggregator", {**ref, "shards": last})
            assert agg.status == 200, agg.body
            runtime.meta().close()
        finally:
            _clear_caches()
    yield Pristine(
        root,
        cfg,
        shards={0: done[0]["shards"], 1: done[1]["shards"], 2: last},
        aggregates={0: done[0]["aggregate"], 1: done[1]["aggregate"], 2: agg.json()},
    )


@pytest.fixture
def run(pristine: Pristine, ftg_env: Path) -> Pristine:
    """A private copy of the module's run, where the functions of this process look for it."""
    shutil.copytree(pristine.root / "store", ftg_env / "store")
    for db in pristine.root.glob("meta.db*"):
        shutil.copy2(db, ftg_env / db.name)
    return pristine


def _verify() -> list[Damage]:
    return verify_run(runtime.store(), runtime.meta(), RUN)


# --------------------------------------------------------------------------- the objects of a run

Reader = Callable[[ObjectStore], object]


@dataclass(frozen=True)
class Kind:
    """One kind of object: a key of it, how the library reads it, which call reads it in a function.

    Attributes:
        key: the object damaged.
        read: reads it as the functions do.
        call: (function, iteration) of a request that reads it; None when no function reads it.
        optional: verify_run does not require it (an evaluation, an object of the uncommitted iteration).
    """

    key: str
    read: Reader
    call: tuple[str, int] | None
    optional: bool = False


def _json(key: str) -> Reader:
    return lambda store: store.get_json(key)


def _tensors(key: str) -> Reader:
    return lambda store: store.get_tensors_with_metadata(key)


def _version(v: int) -> Reader:
    return lambda store: checkpoints.read_version(store, RUN, v)


KINDS = {
    "config": Kind(layout.config_key(RUN), _json(layout.config_key(RUN)), ("collect", 2)),
    "policy": Kind(layout.policy_key(RUN, 2), lambda s: checkpoints.read_policy(s, RUN, 2), ("collect", 2)),
    "ckpt-weights": Kind(layout.ckpt_weights_key(RUN, 2), _version(2), ("update", 2)),
    "ckpt-optimizer": Kind(layout.ckpt_optim_key(RUN, 2), _version(2), ("update", 2)),
    "ckpt-state": Kind(layout.ckpt_state_key(RUN, 2), _version(2), ("update", 2)),
    "traj": Kind(layout.traj_key(RUN, 1, 1), _tensors(layout.traj_key(RUN, 1, 1)), ("aggregate", 1)),
    "carry": Kind(layout.carry_key(RUN, 1, 0), _tensors(layout.carry_key(RUN, 1, 0)), ("collect", 2)),
    "batch": Kind(layout.batch_key(RUN, 2), _tensors(layout.batch_key(RUN, 2)), ("update", 2), optional=True),
    "update": Kind(layout.update_key(RUN, 1), _json(layout.update_key(RUN, 1)), ("update", 1)),
    "eval": Kind(layout.eval_key(RUN, 1), _json(layout.eval_key(RUN, 1)), None, optional=True),
}


def _sections(store: ObjectStore, key: str) -> tuple[range, range]:
    """(data section, header) byte ranges of a stored object: a safetensors file or a JSON envelope."""
    data = store.get_bytes(key)
    if key.endswith(".json"):
        return range(8, len(data) - 77), range(0, 8)
    end = 8 + int.from_bytes(data[:8], "little")
    return range(end, len(data)), range(0, end)


def _damage(store: ObjectStore, key: str, mode: str) -> None:
    data = bytearray(store.get_bytes(key))
    body, header = _sections(store, key)
    if mode == "delete":
        assert store.delete(key)
        return
    if mode == "flip-data":
        data[body[len(body) // 2]] ^= 0x10
    elif mode == "flip-header":
        data[header[len(header) // 2]] ^= 0x10
    elif mode == "truncate":
        del data[len(data) // 2 :]
    else:
        assert mode == "empty"
        data.clear()
    store.put_bytes(key, bytes(data))


MODES = ["flip-data", "flip-header", "truncate", "empty", "delete"]


def _call(run: Pristine, call: tuple[str, int]) -> Any:
    function, iteration = call
    ref = {"run_id": RUN, "iteration": iteration, "config_digest": run.cfg.digest()}
    if function == "collect":
        return post("rollout-collector", {**ref, "shard": 0})
    if function == "aggregate":
        return post("reward-aggregator", {**ref, "shards": run.shards[iteration]})
    return post("policy-updater", {**ref, "batch": run.aggregates[iteration]})


# --------------------------------------------------------------------------- tests


def test_a_clean_run_verifies_clean_and_its_versions_recorded_their_digests(run: Pristine) -> None:
    store, meta = runtime.store(), runtime.meta()
    assert _verify() == []
    assert meta.get_run(RUN)["version"] == 2
    for v in range(3):
        expected = checkpoints.stored_digests(store, RUN, v)
        if v:
            update = layout.update_key(RUN, v - 1)
            expected[update] = object_digest(store.get_bytes(update))
        assert meta.version_digests(RUN, v) == expected


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_damage_is_named_by_the_reader_the_function_and_verify(run: Pristine, kind: str, mode: str) -> None:
    spec, store = KINDS[kind], runtime.store()
    _damage(store, spec.key, mode)
    expected_error = KeyNotFoundError if mode == "delete" else CorruptObjectError
    with pytest.raises(expected_error) as info:
        spec.read(store)
    assert info.value.key == spec.key

    if spec.call is not None:
        runtime._cached_config.cache_clear()  # a cold function reads the config afresh
        resp = _call(run, spec.call)
        body = resp.json()
        assert resp.status == (400 if mode == "delete" else 422), resp.body
        if mode == "delete":  # a missing object: 400, the key in the message (and in "key" but for config)
            assert spec.key in body["error"], body
        else:
            assert body["key"] == spec.key and spec.key in body["error"], body

    damaged = [d.key for d in _verify()]
    assert damaged == ([] if mode == "delete" and spec.optional else [spec.key])


def test_every_damaged_key_is_named_at_once(run: Pristine) -> None:
    store = runtime.store()
    chosen = ["config", "policy", "ckpt-state", "traj", "carry", "update"]
    for kind, mode in zip(chosen, MODES + MODES, strict=False):
        _damage(store, KINDS[kind].key, mode)
    found = _verify()
    assert [d.key for d in found] == sorted(KINDS[k].key for k in chosen)
    assert {d.key: d.kind for d in found}[KINDS["carry"].key] == "missing"


def test_an_intact_object_that_is_not_what_was_committed_is_a_mismatch(run: Pristine) -> None:
    store = runtime.store()
    key = layout.ckpt_weights_key(RUN, 1)
    weights = store.get_tensors(key)
    weights["pi.out.bias"] = weights["pi.out.bias"] + np.float32(1e-3)
    store.put_tensors(key, weights)  # a valid object with its own digest, but not version 1's
    assert [(d.key, d.kind) for d in _verify()] == [(key, "mismatch")]


def test_a_committed_version_without_recorded_digests_is_reported(run: Pristine, ftg_env: Path) -> None:
    meta = SqliteMeta(ftg_env / "meta.db")
    meta.create_run("other-run")
    assert meta.commit_version("other-run", 0, 0)  # committed the old way, without digests
    found = verify_run(runtime.store(), meta, "other-run")
    assert ("runs/other-run/ckpt/000001", "unrecorded") in [(d.key, d.kind) for d in found]
    meta.close()


def test_objects_of_the_uncommitted_iteration_may_be_missing(run: Pristine) -> None:
    store = runtime.store()
    assert store.delete_prefix(layout.iter_prefix(RUN, 2)) == 5
    assert _verify() == []
