"""The four handlers serving a DQN run: one iteration end to end, idempotent appends, and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ftg_common import layout, runtime
from ftg_common.config import RunConfig, SweepError
from tests.dqn_runs import SMALL_DQN, start_dqn_run
from tests.funcs import collect_and_aggregate, post
from tests.funcs import request_ref as _ref


def _new_dqn_run(run_id: str = "dqn-run", seed: int = 0, **kw: Any) -> RunConfig:
    return start_dqn_run(run_id, seed, base=SMALL_DQN, **kw)


def _iterate(cfg: RunConfig, i: int) -> dict[str, Any]:
    _, append = collect_and_aggregate(cfg, _ref(cfg, i))
    upd = post("policy-updater", {**_ref(cfg, i), "replay": append})
    assert upd.status == 200, upd.body
    return {"append": append, "update": upd.json()}


def test_a_dqn_iteration_flows_through_all_four_functions(ftg_env: Path) -> None:
    cfg = _new_dqn_run()
    first = _iterate(cfg, 0)  # 32 steps > learning_starts: trains
    assert first["append"]["chunks"] == [0, 1] and first["append"]["replay_size"] == 32
    upd = first["update"]
    assert upd["version"] == 1 and upd["n_updates"] == 4 and upd["td_loss"] is not None
    assert upd["replay_chunks_read"] in (1, 2) and upd["pg_loss"] is None
    traj = runtime.store().get_tensors(layout.traj_key(cfg.run_id, 0, 0))
    assert traj["next_obs"].shape == (16, 1, 4) and np.all(traj["behaviour_probs"] > 0)
    # Uniformly random actions for the first learning_starts = 16 env steps (8 steps of 2 envs), then
    # the linear schedule read at the run's env steps (a function of the steps, not of the sharding).
    eps = traj["epsilons"]
    assert np.all(eps[:8] == 1.0) and np.all(np.diff(eps[8:]) < 0)
    ev = post("policy-evaluator", _ref(cfg, 0))
    assert ev.status == 200, ev.body
    body = ev.json()
    assert body["version"] == 1 and body["episodes"] == 2
    assert set(body["ope"]) >= {"is", "wis", "pdwis", "dr"} and body["ope_episodes"] >= 2
    assert body["ope_error"] is None


def test_the_buffer_evicts_fifo_and_sampling_only_reads_the_window(ftg_env: Path) -> None:
    cfg = _new_dqn_run()
    for i in range(4):
        out = _iterate(cfg, i)
    # 4 x 32 transitions with capacity 64: chunks 0..3 (the first 64) have left the window.
    assert out["append"]["evicted"] == [2, 3] and out["append"]["replay_size"] == 64
    keys = runtime.store().list(layout.replay_prefix(cfg.run_id))
    assert keys == [layout.replay_chunk_key(cfg.run_id, c) for c in range(4, 8)]


def test_a_retried_aggregate_appends_nothing_twice(ftg_env: Path) -> None:
    cfg = _new_dqn_run()
    shards, first = collect_and_aggregate(cfg, _ref(cfg, 0))
    again = post("reward-aggregator", {**_ref(cfg, 0), "shards": shards})
    assert again.status == 200 and again.json()["chunks"] == first["chunks"]
    assert runtime.meta().replay_head(cfg.run_id).next_first == 32


def test_an_update_without_its_replay_append_is_a_400(ftg_env: Path) -> None:
    cfg = _new_dqn_run()
    _, append = collect_and_aggregate(cfg, _ref(cfg, 0))
    r = post("policy-updater", _ref(cfg, 0))
    assert r.status == 400 and r.json()["field"] == "replay"
    r = post("policy-updater", {**_ref(cfg, 0), "replay": {**append, "iteration": 1}})
    assert r.status == 400 and r.json()["field"] == "replay"


def test_a_missing_replay_chunk_is_a_409_naming_its_key(ftg_env: Path) -> None:
    cfg = _new_dqn_run()
    _, append = collect_and_aggregate(cfg, _ref(cfg, 0))
    key = layout.replay_chunk_key(cfg.run_id, 0)
    # Missing (as if deleted by hand); both chunks of the window are sampled from.
    assert runtime.store().delete(key)
    for c in (1,):
        runtime.store().delete(layout.replay_chunk_key(cfg.run_id, c))
    r = post("policy-updater", {**_ref(cfg, 0), "replay": append})
    assert r.status == 409, r.body
    assert r.json()["key"] in (key, layout.replay_chunk_key(cfg.run_id, 1))
    assert "missing" in r.json()["error"] and runtime.meta().get_run(cfg.run_id)["version"] == 0


def test_a_corrupt_replay_chunk_is_a_422_naming_its_key(ftg_env: Path) -> None:
    cfg = _new_dqn_run()
    _, append = collect_and_aggregate(cfg, _ref(cfg, 0))
    for c in (0, 1):
        key = layout.replay_chunk_key(cfg.run_id, c)
        data = bytearray(runtime.store().get_bytes(key))
        data[-5] ^= 0xFF
        runtime.store().put_bytes(key, bytes(data))
    r = post("policy-updater", {**_ref(cfg, 0), "replay": append})
    assert r.status == 422, r.body
    assert r.json()["key"].startswith(layout.replay_prefix(cfg.run_id) + "/")
    assert runtime.meta().get_run(cfg.run_id)["version"] == 0


def test_a_box_action_space_is_refused_by_name_at_submit(tmp_path: Path) -> None:
    import argparse

    from workflows.ppo_sweep import _read_sweep

    sweep = tmp_path / "box.yaml"
    sweep.write_text("name: box\nconfigs:\n  pend: {algo: dqn, env_id: Pendulum-v1, total_steps: 1024}\n")
    overrides = argparse.Namespace(seeds=None, max_parallel=None, total_steps=None, only=None)
    with pytest.raises(SweepError, match=r"configs\.pend\.env_id: Pendulum-v1: .*Discrete.*Box"):
        _read_sweep(str(sweep), overrides)


def test_a_ppo_evaluation_reports_off_policy_estimates_too(ftg_env: Path) -> None:
    from tests.funcs import iterate, new_run

    cfg = new_run(n_envs=4, n_steps=16, shards=2, batch_size=32, n_epochs=2, total_steps=640)
    ev = iterate(cfg, 0, evaluate=True)["evaluate"]
    # Behaviour: version 0 (which logged iteration 0); target: version 1, the one evaluated.
    assert set(ev["ope"]) >= {"is", "wis", "pdwis", "dr"} and ev["ope_episodes"] >= 4
    assert all(v["ess"] > 0 for v in ev["ope"].values())
