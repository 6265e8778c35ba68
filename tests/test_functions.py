"""The four handlers through the python3-http contract: results, idempotency, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ftg_common import layout, runtime
from tests.funcs import iterate, new_run, post

FUNCTIONS = ["rollout-collector", "reward-aggregator", "policy-updater", "policy-evaluator"]


def test_one_iteration_flows_through_all_four_functions(ftg_env) -> None:
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


def test_episodes_continue_across_iterations(ftg_env) -> None:
    """With 16-step rollouts, an episode longer than 16 steps is only possible if state carries over."""
    cfg = new_run(n_envs=2, n_steps=16, shards=1, batch_size=32, n_epochs=1, total_steps=32 * 12)
    lengths = []
    for i in range(12):
        lengths += iterate(cfg, i)["shards"][0]["episode_lengths"]
    assert lengths and max(lengths) > 16


def test_retried_steps_rewrite_identical_bytes(ftg_env) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=2, batch_size=16, n_epochs=1, total_steps=160)
    first = iterate(cfg, 0)
    store = runtime.store()
    keys = [layout.traj_key(cfg.run_id, 0, 0), layout.carry_key(cfg.run_id, 0, 1), layout.batch_key(cfg.run_id, 0),
            layout.policy_key(cfg.run_id, 1), layout.ckpt_weights_key(cfg.run_id, 1)]
    before = {k: store.get_bytes(k) for k in keys}
    ref = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest()}
    again = [post("rollout-collector", {**ref, "shard": s}).json() for s in range(2)]
    post("reward-aggregator", {**ref, "shards": again})
    retry = post("policy-updater", {**ref, "batch": first["aggregate"]})
    assert retry.status == 200 and retry.json()["already_committed"] is True
    assert retry.json()["version"] == 1
    assert {k: store.get_bytes(k) for k in keys} == before
    assert runtime.meta().get_run(cfg.run_id)["version"] == 1


def test_update_out_of_order_is_a_conflict(ftg_env) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=1, batch_size=16, n_epochs=1, total_steps=160)
    out = iterate(cfg, 0)
    ref = {"run_id": cfg.run_id, "iteration": 2, "config_digest": cfg.digest()}
    batch = {**out["aggregate"], "key": layout.batch_key(cfg.run_id, 2)}
    r = post("policy-updater", {**ref, "batch": batch})
    assert r.status == 409 and "version 1" in r.json()["error"]


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "not valid JSON"),
        ({"iteration": 0, "config_digest": "0" * 16}, "run_id"),
        ({"run_id": "../../etc", "iteration": 0, "config_digest": "0" * 16}, "run_id"),
        ({"run_id": "Upper", "iteration": 0, "config_digest": "0" * 16}, "run_id"),
        ({"run_id": "ok", "iteration": "zero", "config_digest": "0" * 16}, "iteration"),
        ({"run_id": "ok", "iteration": -1, "config_digest": "0" * 16}, "iteration"),
        ({"run_id": "ok", "iteration": 0, "config_digest": "../x"}, "config_digest"),
        ({"run_id": "ok", "iteration": 0, "config_digest": "0" * 16, "surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_a_400_with_a_json_error(ftg_env, function: str, body, needle: str) -> None:
    r = post(function, body)
    assert r.status == 400, r.body
    err = r.json()
    assert needle in err["error"] or needle == err.get("field")
    assert "Traceback" not in r.body


def test_unknown_run_and_missing_keys_are_400s(ftg_env) -> None:
    ref = {"run_id": "never-created", "iteration": 0, "config_digest": "0" * 16}
    r = post("rollout-collector", {**ref, "shard": 0})
    assert r.status == 400 and "no config" in r.json()["error"]
    cfg = new_run(n_envs=2, n_steps=8, shards=1, batch_size=16, n_epochs=1, total_steps=160)
    # Iteration 3 has no policy version 3 yet and no carried env state from iteration 2.
    ref = {"run_id": cfg.run_id, "iteration": 3, "config_digest": cfg.digest()}
    r = post("rollout-collector", {**ref, "shard": 0})
    assert r.status == 400 and "key not found" in r.json()["error"]
    r = post("policy-evaluator", {**ref, "version": 7})
    assert r.status == 400 and "000007" in r.json()["error"]


def test_digest_mismatch_and_shard_range(ftg_env) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=2, batch_size=16, n_epochs=1, total_steps=160)
    r = post("rollout-collector", {"run_id": cfg.run_id, "iteration": 0, "config_digest": "f" * 16, "shard": 0})
    assert r.status == 409 and r.json()["field"] == "config_digest"
    r = post("rollout-collector", {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest(), "shard": 2})
    assert r.status == 400 and r.json()["field"] == "shard"


def test_aggregator_checks_shard_set_and_keys(ftg_env) -> None:
    cfg = new_run(n_envs=2, n_steps=8, shards=2, batch_size=16, n_epochs=1, total_steps=160)
    ref = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest()}
    shards = [post("rollout-collector", {**ref, "shard": s}).json() for s in range(2)]
    r = post("reward-aggregator", {**ref, "shards": shards[:1]})
    assert r.status == 400 and "shards" in r.json()["error"]
    forged = [{**shards[0], "key": "runs/other/iter/000000/traj/0000.safetensors"}, shards[1]]
    r = post("reward-aggregator", {**ref, "shards": forged})
    assert r.status == 400 and "is not" in r.json()["error"]


def test_unknown_env_in_a_stored_config_is_a_400_naming_env_id(ftg_env) -> None:
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


def test_non_post_is_refused(ftg_env) -> None:
    from ftg_common.faas import Context, Event, load_handler, render_response

    resp = render_response(load_handler("rollout-collector").handle(Event(body=b"{}", method="GET"), Context()))
    assert resp.status == 405 and json.loads(resp.body)["error"]


def test_rollout_path_imports_neither_torch_nor_mlflow() -> None:
    code = (
        "import sys, functions.rollout_collector.handler, functions.reward_aggregator.handler, "
        "functions.policy_evaluator.handler; "
        "bad = [m for m in ('torch', 'mlflow') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_box_action_env_runs_through_all_functions(ftg_env) -> None:
    """Pendulum-v1: Gaussian policy, clipped env actions, time-limit truncation bootstrapped."""
    cfg = new_run(env_id="Pendulum-v1", n_envs=2, n_steps=128, shards=2, batch_size=64, n_epochs=2,
                  total_steps=256 * 3, gamma=0.9)
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
