"""Corruption: damaged objects of a real run are refused, by name, wherever they are read.

    python -c "from benchmarks.reliability.corruption import run; [print(c) for c in run()]"

A real small run (CartPole, 4 envs x 16 steps in 2 shards) is made through the four functions, in this
process, once on a file store and once on an S3 server (moto in server mode, started here as a
process); the metadata store is SQLite. Iterations 0 and 1 are committed (1 is evaluated) and iteration
2 is collected and aggregated but not yet updated, so that every kind of object has a function that
still reads it. For each kind (config.json, policy file, checkpoint weights, optimizer and state.json,
trajectory, carry, batch, update.json, eval.json) one object is damaged in each way:

* ``flip-data``: one byte XOR-ed with a random mask in the data (the tensors' bytes, or the JSON
  document), ``2 * scale`` random positions;
* ``flip-header``: likewise in the header (the length prefix and JSON header of a safetensors file, the
  frame of a JSON envelope), ``2 * scale`` positions;
* ``truncate``: cut at ``scale`` random lengths; ``empty``: zero bytes; ``delete``: the object removed.

Required of every case, each a check of its own:

* **read**: reading it as the functions do raises ``CorruptObjectError`` (``KeyNotFoundError`` once
  deleted) whose ``key`` is the damaged key;
* **function**: the function that reads it answers 422 with ``key`` naming it (400 naming it in the
  error once deleted), never 200 or 500; no function reads ``eval.json``, so it has no such cases;
* **verify**: ``verify_run`` reports exactly the damaged key, and nothing else. Deleting the batch of
  the uncommitted iteration or an ``eval.json`` is not damage (a run may stop before those exist), so
  there ``verify_run`` must report nothing.

After each case the original bytes are put back; after each kind ``verify_run`` must find the run clean
again (the **restored** check). Positions and masks come from a seeded generator: a run is repeatable.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.reliability.checks import Check
from benchmarks.reliability.procs import environment, moto_server
from ftg_common import checkpoints, faas, layout, runtime
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.errors import CorruptObjectError
from ftg_common.store.base import KeyNotFoundError, ObjectStore
from ftg_common.verify import verify_run

AREA = "corruption"
SEED = 20_261_125
_JSON_TAIL = 77  # ,"sha256":"<64 hex>"} closing a JSON envelope
MODES = ("flip-data", "flip-header", "truncate", "empty", "delete")


# --------------------------------------------------------------------------- stores


@contextmanager
def backend(name: str, root: Path) -> Iterator[None]:
    """Point this process's settings at a scratch store of kind ``name`` (``file`` or ``s3``)."""
    meta = {"FTG_META_URL": f"sqlite:///{root}/{name}-meta.db", "FTG_LOCAL_WORKERS": "0"}
    if name == "file":
        with environment({"FTG_STORE_URL": f"file://{root}/store", **meta}):
            yield
        return
    with moto_server(root / "moto.log") as endpoint:
        bucket = f"ftg-corruption-{uuid.uuid4().hex[:12]}"
        env = {
            "FTG_STORE_URL": f"s3://{bucket}/runs-under-test",
            "FTG_S3_ENDPOINT_URL": endpoint,
            # moto accepts any credentials, but boto3 refuses to sign without some.
            "AWS_ACCESS_KEY_ID": "ftg-corruption",
            "AWS_SECRET_ACCESS_KEY": "ftg-corruption",
            "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1"])),
            **meta,
        }
        with environment(env):
            from ftg_common.store.s3 import S3Store

            S3Store(bucket, endpoint_url=endpoint, create_bucket=True)
            yield


# --------------------------------------------------------------------------- the run


def _post(function: str, body: dict[str, Any]) -> faas.Response:
    return faas.call(function, json.dumps(body).encode(), {"Content-Type": "application/json"})


def _ok(function: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = _post(function, body)
    if resp.status != 200:
        raise RuntimeError(f"setting up the run: {function} answered {resp.status}: {resp.body}")
    out: dict[str, Any] = resp.json()
    return out


@dataclass(frozen=True)
class Target:
    """The run the damage is done to, and the answers needed to call each function again.

    Attributes:
        cfg: the run's frozen config.
        shards: iteration -> the collectors' answers (the aggregator's request).
        batches: iteration -> the aggregator's answer (the updater's request).
    """

    cfg: RunConfig
    shards: dict[int, list[dict[str, Any]]]
    batches: dict[int, dict[str, Any]]

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.cfg.run_id

    def ref(self, iteration: int) -> dict[str, Any]:
        """The run reference of a request for ``iteration``."""
        return {"run_id": self.run_id, "iteration": iteration, "config_digest": self.cfg.digest()}


def make_target(run_id: str) -> Target:
    """Create run ``run_id``: iterations 0 and 1 committed (1 evaluated), iteration 2 aggregated.

    The settings must already point at scratch stores.
    """
    ppo = PPOConfig(
        n_envs=4, n_steps=16, shards=2, batch_size=32, n_epochs=2, total_steps=64 * 8, eval_episodes=2
    )
    cfg = RunConfig(run_id=run_id, seed=0, ppo=ppo)
    runtime.store().put_json(layout.config_key(run_id), cfg.to_stored())
    runtime.meta().create_run(run_id)
    target = Target(cfg, {}, {})
    _ok("policy-updater", {**target.ref(0), "mode": "init"})
    for i in range(3):
        target.shards[i] = [
            _ok("rollout-collector", {**target.ref(i), "shard": s}) for s in range(ppo.shards)
        ]
        target.batches[i] = _ok("reward-aggregator", {**target.ref(i), "shards": target.shards[i]})
        if i < 2:
            _ok("policy-updater", {**target.ref(i), "batch": target.batches[i]})
    _ok("policy-evaluator", target.ref(1))
    return target


# --------------------------------------------------------------------------- the kinds of object

Reader = Callable[[ObjectStore, str, str], object]


@dataclass(frozen=True)
class Kind:
    """One kind of object of a run.

    Attributes:
        name: as the report names it.
        key: run id -> the key of the object damaged.
        read: (store, run id, that key) -> reads it as the functions do.
        call: (function, iteration) of a request that reads it; None when no function does.
        optional: its absence is not damage (an evaluation; an object of the uncommitted iteration).
    """

    name: str
    key: Callable[[str], str]
    read: Reader
    call: tuple[str, int] | None
    optional: bool = False


def _key(builder: Callable[..., str], *args: int) -> Callable[[str], str]:
    """Run id -> ``builder(run_id, *args)``: the key of one object of every run."""
    return lambda run_id: builder(run_id, *args)


def _read_json(store: ObjectStore, run_id: str, key: str) -> object:
    return store.get_json(key)


def _read_tensors(store: ObjectStore, run_id: str, key: str) -> object:
    return store.get_tensors_with_metadata(key)


def _read_policy(version: int) -> Reader:
    return lambda store, run_id, key: checkpoints.read_policy(store, run_id, version)


def _read_version(version: int) -> Reader:
    return lambda store, run_id, key: checkpoints.read_version(store, run_id, version)


KINDS = (
    Kind("config.json", layout.config_key, _read_json, ("rollout-collector", 2)),
    Kind("policy file", _key(layout.policy_key, 2), _read_policy(2), ("rollout-collector", 2)),
    Kind("ckpt weights", _key(layout.ckpt_weights_key, 2), _read_version(2), ("policy-updater", 2)),
    Kind("ckpt optimizer", _key(layout.ckpt_optim_key, 2), _read_version(2), ("policy-updater", 2)),
    Kind("ckpt state.json", _key(layout.ckpt_state_key, 2), _read_version(2), ("policy-updater", 2)),
    Kind("traj", _key(layout.traj_key, 1, 1), _read_tensors, ("reward-aggregator", 1)),
    Kind("carry", _key(layout.carry_key, 1, 0), _read_tensors, ("rollout-collector", 2)),
    Kind("batch", _key(layout.batch_key, 2), _read_tensors, ("policy-updater", 2), optional=True),
    Kind("update.json", _key(layout.update_key, 1), _read_json, ("policy-updater", 1)),
    Kind("eval.json", _key(layout.eval_key, 1), _read_json, None, optional=True),
)


def _call(target: Target, call: tuple[str, int]) -> faas.Response:
    function, iteration = call
    body = target.ref(iteration)
    if function == "rollout-collector":
        body["shard"] = 0
    elif function == "reward-aggregator":
        body["shards"] = target.shards[iteration]
    elif function == "policy-updater":
        body["batch"] = target.batches[iteration]
    runtime._cached_config.cache_clear()  # as a cold function: read the config afresh
    return _post(function, body)


# --------------------------------------------------------------------------- damage


@dataclass(frozen=True)
class Case:
    """One way of damaging one object: a mode and, for flips and truncations, where."""

    mode: str
    position: int = -1
    mask: int = 0

    def describe(self) -> str:
        """The case as the report shows it."""
        if self.mode.startswith("flip"):
            return f"{self.mode}@{self.position}^0x{self.mask:02x}"
        if self.mode == "truncate":
            return f"truncate@{self.position}"
        return self.mode

    def apply(self, data: bytes) -> bytes:
        """The damaged bytes (not used for ``delete``)."""
        if self.mode.startswith("flip"):
            damaged = bytearray(data)
            damaged[self.position] ^= self.mask
            return bytes(damaged)
        if self.mode == "truncate":
            return data[: self.position]
        return b""


def _sections(key: str, data: bytes) -> tuple[range, range]:
    """(data, header) byte ranges of a safetensors file or a JSON envelope."""
    if key.endswith(".json"):
        return range(8, len(data) - _JSON_TAIL), range(0, 8)
    end = 8 + int.from_bytes(data[:8], "little")
    return range(end, len(data)), range(0, end)


def cases(key: str, data: bytes, rng: random.Random, scale: int) -> list[Case]:
    """Every way ``data`` (stored under ``key``) is damaged."""
    body, header = _sections(key, data)
    out: list[Case] = []
    for mode, section in (("flip-data", body), ("flip-header", header)):
        if len(section):
            out += [Case(mode, rng.choice(section), rng.randrange(1, 256)) for _ in range(2 * scale)]
    out += [Case("truncate", rng.randrange(1, len(data))) for _ in range(scale)]
    return [*out, Case("empty"), Case("delete")]


@dataclass
class _Checks:
    """The area's checks, one per (kind, requirement)."""

    checks: dict[tuple[str, str], Check]

    def get(self, kind: str, what: str, notes: str) -> Check:
        return self.checks.setdefault((kind, what), Check(AREA, f"{kind}: {what}", notes=notes))


def _read_check(kind: Kind, store: ObjectStore, target: Target, key: str, mode: str) -> str | None:
    """None if the read failed as required, else what happened."""
    expected = KeyNotFoundError if mode == "delete" else CorruptObjectError
    try:
        kind.read(store, target.run_id, key)
    except (CorruptObjectError, KeyNotFoundError) as exc:
        if isinstance(exc, expected) and exc.key == key:
            return None
        return f"{type(exc).__name__} naming {exc.key!r}: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other outcome is the failure being counted
        return f"{type(exc).__name__}: {exc}"
    return "read without error"


def _function_check(kind: Kind, target: Target, key: str, mode: str) -> tuple[str | None, bool]:
    """(None if the function answered as required else what it answered, whether it answered 200)."""
    assert kind.call is not None
    resp = _call(target, kind.call)
    try:
        body = resp.json()
    except ValueError:
        return f"{resp.status} with a body that is not JSON: {resp.body[:120]}", False
    if mode == "delete":
        ok = resp.status == 400 and key in str(body.get("error", ""))
    else:
        ok = resp.status == 422 and body.get("key") == key
    return (None if ok else f"{resp.status}: {resp.body[:200]}"), resp.status == 200


def _verify_check(kind: Kind, store: ObjectStore, target: Target, key: str, mode: str) -> str | None:
    expected = [] if mode == "delete" and kind.optional else [key]
    try:
        found = verify_run(store, runtime.meta(), target.run_id)
    except Exception as exc:  # noqa: BLE001 - verify_run itself failing is what is counted
        return f"verify_run raised {type(exc).__name__}: {exc}"
    if [d.key for d in found] == expected:
        return None
    return "verify_run found " + ("; ".join(str(d) for d in found) or "nothing")


# --------------------------------------------------------------------------- the area


def _damage_run(backend_name: str, scale: int, rng: random.Random, out: _Checks) -> None:
    """Every kind x every case on the run in the current backend."""
    generation = 0
    target = make_target(f"corrupt-{backend_name}-{generation}")
    store = runtime.store()
    clean = out.get("run", "verify_run finds a clean run clean", "per backend, and after every rebuild")
    clean.record(verify_run(store, runtime.meta(), target.run_id) == [], f"{backend_name}: fresh run")
    for kind in KINDS:
        key = kind.key(target.run_id)
        original = store.get_bytes(key)
        for case in cases(key, original, rng, scale):
            label = f"{backend_name}/{key.split('/', 2)[-1]}/{case.describe()}"
            if case.mode == "delete":
                store.delete(key)
            else:
                store.put_bytes(key, case.apply(original))
            problem = _read_check(kind, store, target, key, case.mode)
            out.get(
                kind.name, "read raises naming the key", "CorruptObjectError, KeyNotFoundError once deleted"
            ).record(problem is None, f"{label}: {problem}")
            answered_200 = False
            if kind.call is not None:
                problem, answered_200 = _function_check(kind, target, key, case.mode)
                out.get(
                    kind.name, "function answers 422 (400 if deleted) naming the key", f"{kind.call[0]}"
                ).record(problem is None, f"{label}: {problem}")
            problem = _verify_check(kind, store, target, key, case.mode)
            notes = "exactly the damaged key" + ("; nothing when deleted (optional)" if kind.optional else "")
            out.get(kind.name, "verify_run names exactly the key", notes).record(
                problem is None, f"{label}: {problem}"
            )
            store.put_bytes(key, original)
            if answered_200:  # the function went on with damaged input and may have moved the run on
                generation += 1
                target = make_target(f"corrupt-{backend_name}-{generation}")
                clean.record(
                    verify_run(store, runtime.meta(), target.run_id) == [], f"{backend_name}: rebuilt"
                )
                key = kind.key(target.run_id)
                original = store.get_bytes(key)
        found = verify_run(store, runtime.meta(), target.run_id)
        out.get(kind.name, "restored: verify_run finds the run clean", "after every case of the kind").record(
            found == [], f"{backend_name}: " + "; ".join(str(d) for d in found)
        )


def run(scale: int = 1) -> list[Check]:
    """The corruption area on a file store and on an S3 server, ``(4 * scale + scale + 2)`` cases per
    kind of object and backend (fewer flips where a section is empty).

    Works in a scratch directory of its own; the process's store settings are restored afterwards.
    """
    start = time.perf_counter()
    rng = random.Random(SEED)
    out = _Checks({})
    with tempfile.TemporaryDirectory(prefix="ftg-corruption-") as tmp:
        for name in ("file", "s3"):
            with backend(name, Path(tmp)):
                _damage_run(name, scale, rng, out)
    seconds = time.perf_counter() - start
    checks = list(out.checks.values())
    for check in checks:
        check.notes += f" (file and S3 stores; area run: {seconds:.0f} s)"
    return checks
