"""The four handlers through the python3-http contract: results, idempotency, and bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import numpy as np
import pytest
from pydantic import BaseModel

from ftg_common import catalog, faas, layout, runtime
from ftg_common.errors import BadRequest, Conflict
from ftg_common.faas import Event
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import RunRef
from tests.funcs import freeze_config, iterate, new_run, post

FUNCTIONS = ["rollout-collector", "reward-aggregator", "policy-updater", "policy-evaluator"]
_SHARD_RESULT = {
    "key": "k",
    "carry_key": "c",
    "shard": 0,
    "steps": 1,
    "policy_version": 0,
    "episode_returns": [],
    "episode_lengths": [],
}
# What each function needs beside the run reference, so a test body has only the fault it means to have.
FUNCTION_FIELDS: dict[str, dict[str, Any]] = {
    "rollout-collector": {"shard": 0},
    "reward-aggregator": {"shards": [_SHARD_RESULT]},
    "policy-updater": {},
    "policy-evaluator": {},
}


def test_one_iteration_flows_through_all_four_functions(ftg_env: Path) -> None:
    cfg = new_run(n_envs=4, n_steps=16, shards=2, batch_size=32, n_epochs=2, total_steps=640)
    out = iterate(cfg, 0, evaluate=True)
    assert [s["shard"] for s in out["shards"]] == [0, 1]
    assert all(s["steps"] == 2 * 16 for s in out["shards"])
    assert out["aggregate"]["batch_size"] == 64 and out["aggregate"]["steps"] == 64
    upd = out["update"]
    assert upd["version"] == 1 and upd["total_steps"] == 64 and upd["n_updates"] == 2 * 2
    assert runtime.meta().get_run(cfg.run_id)["version"] == 1
    ev = out["evaluate"]
    assert ev["version"] == 1 and ev["episodes"] == cfg.ppo.eval_episodes
    stored = runtime.store().get_json(layout.eval_key(cfg.run_id, 0))
    assert len(stored["returns"]) == cfg.ppo.eval_episodes
    assert np.isclose(np.mean(stored["returns"]), ev["mean_return"])
    batch = runtime.store().get_tensors(layout.batch_key(cfg.run_id, 0))
    assert batch["obs"].shape == (64, 4) and batch["advantages"].dtype == np.float32


def test_episodes_continue_across_iterations(ftg_env: Path) -> None:
    """With 16-step rollouts, an episode longer than 16 steps is only possible if state carries over."""
    cfg = new_run(n_envs=2, n_steps=16, shards=1, batch_size=32, n_epochs=1, total_steps=32 * 12)
    lengths = []
    for i in range(12):
        lengths += iterate(cfg, i)["shards"][0]["episode_lengths"]
    assert lengths and max(lengths) > 16


def test_retried_steps_rewrite_identical_bytes(ftg_env: Path) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=2, batch_size=16, n_epochs=1, total_steps=160)
    first = iterate(cfg, 0)
    store = runtime.store()
    run = cfg.run_id
    keys = [
        layout.traj_key(run, 0, 0),
        layout.carry_key(run, 0, 1),
        layout.batch_key(run, 0),
        layout.policy_key(run, 1),
        layout.ckpt_weights_key(run, 1),
    ]
    before = {k: store.get_bytes(k) for k in keys}
    ref = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest()}
    again = [post("rollout-collector", {**ref, "shard": s}).json() for s in range(2)]
    post("reward-aggregator", {**ref, "shards": again})
    retry = post("policy-updater", {**ref, "batch": first["aggregate"]})
    assert retry.status == 200 and retry.json()["already_committed"] is True
    assert retry.json()["version"] == 1
    assert {k: store.get_bytes(k) for k in keys} == before
    assert runtime.meta().get_run(cfg.run_id)["version"] == 1


def test_update_out_of_order_is_a_conflict(ftg_env: Path) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=1, batch_size=16, n_epochs=1, total_steps=160)
    out = iterate(cfg, 0)
    ref = {"run_id": cfg.run_id, "iteration": 2, "config_digest": cfg.digest()}
    batch = {**out["aggregate"], "key": layout.batch_key(cfg.run_id, 2)}
    r = post("policy-updater", {**ref, "batch": batch})
    assert r.status == 409 and "version 1" in r.json()["error"]


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize(
    ("body", "needle", "field"),
    [
        (b"{not json", "not valid JSON", None),
        (b"\xff\xfe", "not valid JSON", None),
        (b"", "not valid JSON", None),
        (b"[1, 2]", "JSON object", None),
        (b'"run_id"', "JSON object", None),
        ({"iteration": 0, "config_digest": "0" * 16}, "Field required", "run_id"),
        ({"run_id": "../../etc", "iteration": 0, "config_digest": "0" * 16}, "pattern", "run_id"),
        ({"run_id": "Upper", "iteration": 0, "config_digest": "0" * 16}, "pattern", "run_id"),
        ({"run_id": "ok", "iteration": "zero", "config_digest": "0" * 16}, "integer", "iteration"),
        ({"run_id": "ok", "iteration": -1, "config_digest": "0" * 16}, "greater than", "iteration"),
        ({"run_id": "ok", "iteration": 0, "config_digest": "../x"}, "pattern", "config_digest"),
        ({"run_id": "ok", "iteration": 0, "config_digest": "0" * 16, "extra": 1}, "not permitted", "extra"),
    ],
)
def test_bad_input_is_a_400_with_a_json_error(
    ftg_env: Path, function: str, body: bytes | dict[str, Any], needle: str, field: str | None
) -> None:
    r = post(function, body if isinstance(body, bytes) else {**FUNCTION_FIELDS[function], **body})
    assert r.status == 400, r.body
    assert r.headers["Content-Type"] == "application/json"
    err = r.json()
    assert needle in err["error"]
    assert err.get("field") == field
    assert "Traceback" not in r.body


def test_a_mistyped_function_field_is_named(ftg_env: Path) -> None:
    ref = {"run_id": "ok", "iteration": 0, "config_digest": "0" * 16}
    r = post("rollout-collector", {**ref, "shard": "first"})
    assert r.status == 400 and r.json()["field"] == "shard"
    r = post("reward-aggregator", {**ref, "shards": [{"key": "k"}]})
    assert r.status == 400 and r.json()["field"].startswith("shards.0.")


def test_unknown_run_and_missing_keys_are_400s(ftg_env: Path) -> None:
    ref = {"run_id": "never-created", "iteration": 0, "config_digest": "0" * 16}
    r = post("rollout-collector", {**ref, "shard": 0})
    assert r.status == 400 and "no config" in r.json()["error"] and r.json()["field"] == "run_id"
    cfg = new_run(n_envs=2, n_steps=8, shards=1, batch_size=16, n_epochs=1, total_steps=160)
    # Iteration 0's shard was never collected: its trajectory is missing.
    ref = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest()}
    shard = {**_SHARD_RESULT, "key": layout.traj_key(cfg.run_id, 0, 0)}
    r = post("reward-aggregator", {**ref, "shards": [shard]})
    assert r.status == 400 and "key not found" in r.json()["error"] and r.json()["field"] == "key"


def test_digest_mismatch_and_shard_range(ftg_env: Path) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=2, batch_size=16, n_epochs=1, total_steps=160)
    ref = {"run_id": cfg.run_id, "iteration": 0}
    r = post("rollout-collector", {**ref, "config_digest": "f" * 16, "shard": 0})
    assert r.status == 409 and r.json()["field"] == "config_digest"
    r = post("rollout-collector", {**ref, "config_digest": cfg.digest(), "shard": 2})
    assert r.status == 400 and r.json()["field"] == "shard"


def test_aggregator_checks_shard_set_and_keys(ftg_env: Path) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=2, batch_size=16, n_epochs=1, total_steps=160)
    ref = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest()}
    shards = [post("rollout-collector", {**ref, "shard": s}).json() for s in range(2)]
    r = post("reward-aggregator", {**ref, "shards": shards[:1]})
    assert r.status == 400 and "shards" in r.json()["error"]
    forged = [{**shards[0], "key": "runs/other/iter/000000/traj/0000.safetensors"}, shards[1]]
    r = post("reward-aggregator", {**ref, "shards": forged})
    assert r.status == 400 and "is not" in r.json()["error"]


def test_unknown_env_in_a_stored_config_is_a_400_naming_env_id(ftg_env: Path) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=1, batch_size=16, n_epochs=1, total_steps=160)
    bad = cfg.model_dump(mode="json")
    bad["ppo"]["env_id"] = "NoSuchEnv-v0"
    bad["run_id"] = "bad-env"
    from ftg_common.config import RunConfig

    digest = RunConfig.model_validate(bad).digest()
    runtime.store().put_json(layout.config_key("bad-env"), bad)
    runtime.meta().create_run("bad-env")
    r = post("policy-updater", {"run_id": "bad-env", "iteration": 0, "config_digest": digest, "mode": "init"})
    assert r.status == 400 and r.json()["field"] == "env_id" and "NoSuchEnv-v0" in r.json()["error"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_non_post_is_refused(ftg_env: Path, function: str) -> None:
    resp = faas.invoke(catalog.function(function).module, Event(body=b"{}", method="GET"))
    assert resp.status == 405 and resp.headers["Allow"] == "POST" and "GET" in resp.json()["error"]


# --------------------------------------------------------------------------- faas.serve and the context


class Timed(BaseModel):
    note: str = ""
    seconds: float = 0.0


def _ref(cfg: Any, **extra: Any) -> bytes:
    return json.dumps({"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest(), **extra}).encode()


def test_serve_hands_work_the_run_context_and_fills_seconds(ftg_env: Path) -> None:
    cfg = freeze_config()
    seen: list[tuple[RunRef, FunctionContext]] = []

    def work(req: RunRef, ctx: FunctionContext) -> Timed:
        seen.append((req, ctx))
        time.sleep(0.05)
        return Timed(note="done")

    out = faas.serve(Event(body=_ref(cfg)), RunRef, work)
    assert out["statusCode"] == 200 and out["headers"]["Content-Type"] == "application/json"
    assert out["body"]["note"] == "done" and 0.05 <= out["body"]["seconds"] < 5
    req, ctx = seen[0]
    assert req.run_id == cfg.run_id and ctx.config == cfg
    assert ctx.store is runtime.store() and ctx.meta is runtime.meta()
    assert runtime.context_for(req).config is ctx.config  # frozen configs are read once per process


def test_context_for_refuses_unknown_runs_and_other_digests(ftg_env: Path) -> None:
    cfg = freeze_config()
    with pytest.raises(BadRequest, match="no config") as missing:
        runtime.context_for(RunRef(run_id="nobody", iteration=0, config_digest="0" * 16))
    assert missing.value.field == "run_id"
    with pytest.raises(Conflict) as other:
        runtime.context_for(RunRef(run_id=cfg.run_id, iteration=0, config_digest="f" * 16))
    assert other.value.field == "config_digest" and other.value.status == 409


@pytest.mark.parametrize(
    ("exc", "status", "field"),
    [
        (BadRequest("no good", "shard"), 400, "shard"),
        (Conflict("moved", "iteration"), 409, "iteration"),
        (RuntimeError("a bug"), 500, None),
    ],
)
def test_serve_maps_failures_of_the_work_to_json_errors(
    ftg_env: Path, exc: Exception, status: int, field: str | None
) -> None:
    cfg = freeze_config()

    def work(req: RunRef, ctx: FunctionContext) -> Timed:
        raise exc

    resp = faas.render_response(faas.serve(Event(body=_ref(cfg)), RunRef, work))
    assert resp.status == status and resp.json().get("field") == field
    assert str(exc) in resp.json()["error"] and "Traceback" not in resp.body


def test_invoke_answers_500_text_when_a_handler_raises() -> None:
    resp = faas.invoke("tests.fakefuncs.raises", Event(body=b"{}"))
    assert resp.status == 500 and resp.headers["Content-Type"] == "text/plain"
    assert resp.body == "RuntimeError: handler bug"
    missing = faas.invoke("tests.fakefuncs.no_such_module", Event(body=b"{}"))
    assert missing.status == 500 and "ModuleNotFoundError" in missing.body


def test_call_refuses_functions_outside_the_catalog() -> None:
    with pytest.raises(catalog.UnknownFunctionError):
        faas.call("tests.fakefuncs.raises", b"{}")


def _wsgi(app: Any, body: bytes, method: str = "POST") -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}
    out = b"".join(app(environ, lambda status, headers: seen.update(status=status, headers=dict(headers))))
    return seen["status"], seen["headers"], out


def test_wsgi_app_answers_like_the_in_process_adapter(ftg_env: Path) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=1, batch_size=16, n_epochs=1, total_steps=160)
    module = catalog.function("rollout-collector").module
    app = faas.wsgi_app(module)
    good = _ref(cfg, shard=0)
    for body in (good, b"{broken", _ref(cfg, shard=5)):
        status, headers, out = _wsgi(app, body)
        local = faas.invoke(module, Event(body=body, headers={"Content-Type": "application/json"}))
        assert int(status.split()[0]) == local.status
        assert headers["Content-Type"] == local.headers["Content-Type"]
        assert headers["Content-Length"] == str(len(out))
        # A collector call is idempotent; only its wall time differs between the two calls.
        assert {**json.loads(out), "seconds": 0} == {**local.json(), "seconds": 0}
    assert _wsgi(app, good)[0] == "200 OK" and _wsgi(app, b"{broken")[0] == "400 Bad Request"
    assert _wsgi(app, b"", method="GET")[0] == "405 Method Not Allowed"
    status, headers, out = _wsgi(faas.wsgi_app("tests.fakefuncs.raises"), b"{}")
    assert status.startswith("500") and headers["Content-Type"] == "text/plain" and b"handler bug" in out


def test_rollout_path_imports_neither_torch_nor_mlflow() -> None:
    code = (
        "import sys, functions.rollout_collector.handler, functions.reward_aggregator.handler, "
        "functions.policy_evaluator.handler; "
        "bad = [m for m in ('torch', 'mlflow') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_box_action_env_runs_through_all_functions(ftg_env: Path) -> None:
    """Pendulum-v1: Gaussian policy, clipped env actions, time-limit truncation bootstrapped."""
    cfg = new_run(
        env_id="Pendulum-v1",
        n_envs=2,
        n_steps=128,
        shards=2,
        batch_size=64,
        n_epochs=2,
        total_steps=256 * 3,
        gamma=0.9,
    )
    lengths, truncated = [], 0
    for i in range(2):
        out = iterate(cfg, i, evaluate=(i == 1))
        lengths += [n for s in out["shards"] for n in s["episode_lengths"]]
        traj = runtime.store().get_tensors(layout.traj_key(cfg.run_id, i, 0))
        assert traj["actions"].shape == (128, 1, 1) and traj["actions"].dtype == np.float32
        truncated += int(traj["truncated"].sum())
        # Where an episode hit its time limit the value of its true final state was recorded.
        assert np.all(traj["trunc_values"][traj["truncated"] == 0] == 0)
        assert np.all(traj["trunc_values"][traj["truncated"] == 1] != 0)
    assert lengths == [200, 200] and truncated == 1  # one 200-step episode per env, one env per shard
    assert out["evaluate"]["mean_length"] == 200.0 and out["update"]["version"] == 2
