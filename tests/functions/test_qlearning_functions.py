"""Tabular Q-learning through the four functions, called in-process through the python3-http contract."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ftg_common import layout, runtime
from ftg_common.algos.qlearning import q_learning_pass
from ftg_common.config import QLearningConfig, RunConfig, SweepError
from ftg_common.policy.qtable import read_qtable
from ftg_common.replay import transitions_from_shard
from tests.funcs import post
from tests.functions.test_dqn_functions import _iterate, _ref

LAKE = dict(env_id="FrozenLake-v1", n_envs=2, shards=2, train_freq=16, total_steps=32 * 4, eval_episodes=2)


def _new_run(run_id: str, seed: int = 0, **kw: Any) -> RunConfig:
    cfg = RunConfig(run_id=run_id, seed=seed, qlearning=QLearningConfig(**kw))
    runtime.store().put_json(layout.config_key(run_id), cfg.to_stored())
    runtime.meta().create_run(run_id)
    r = post("policy-updater", {**_ref(cfg, 0), "mode": "init"})
    assert r.status == 200, r.body
    return cfg


def test_an_update_applies_the_collected_transitions_shard_by_shard_in_order(ftg_env: Path) -> None:
    cfg = _new_run("lake", initial_q=0.5, **LAKE)
    hp = cfg.hparams
    out = _iterate(cfg, 0)
    assert out["append"]["key"] == layout.replay_prefix("lake") and out["append"]["replay_size"] == 32
    upd = out["update"]
    assert (upd["version"], upd["total_steps"], upd["n_updates"]) == (1, 32, 32)
    assert upd["td_loss"] > 0 and upd["learning_rate"] == hp.learning_rate
    # The same pass over the stored shards, by hand, gives the committed table bit for bit.
    store = runtime.store()
    spec, table = read_qtable(store, "lake", 0)
    assert spec.shape == (16, 4) and np.all(table == 0.5)
    expected = table.copy()
    for k in range(hp.shards):
        t = transitions_from_shard(store.get_tensors(layout.traj_key("lake", 0, k)))
        states, next_states = spec.states(t.obs), spec.states(t.next_obs)
        rewards = t.rewards.astype(np.float64)
        q_learning_pass(expected, states, t.actions, rewards, next_states, t.terminated, 0.1, hp.gamma)
    assert read_qtable(store, "lake", 1)[1].tobytes() == expected.tobytes()
    assert not np.array_equal(expected, table)
    # A retried update answers with the committed result and changes nothing.
    again = post("policy-updater", {**_ref(cfg, 0), "replay": out["append"]})
    assert again.status == 200 and again.json()["already_committed"] is True
    ev = post("policy-evaluator", _ref(cfg, 0))
    assert ev.status == 200, ev.body
    body = ev.json()
    assert body["version"] == 1 and len(body.get("ope") or {}) >= 4, body


def test_replayed_minibatches_follow_the_online_pass(ftg_env: Path) -> None:
    cfg = _new_run("replay", **{**LAKE, "replay_batches": 3, "batch_size": 8, "buffer_size": 64})
    first = _iterate(cfg, 0)["update"]
    assert first["n_updates"] == 32 + 3 * 8 and first["replay_chunks_read"] >= 1
    second = _iterate(cfg, 1)["update"]
    assert second["n_updates"] == 32 + 3 * 8 and second["version"] == 2


def test_an_update_without_its_replay_append_is_refused_by_field(ftg_env: Path) -> None:
    cfg = _new_run("norep", **LAKE)
    r = post("policy-updater", _ref(cfg, 0))
    assert r.status == 400 and r.json()["field"] == "replay"


def test_cartpole_observations_reach_the_table_through_their_bins(ftg_env: Path) -> None:
    bins = dict(bins=[3, 4, 6, 4], low=[-2.4, -3.0, -0.21, -3.5], high=[2.4, 3.0, 0.21, 3.5])
    cfg = _new_run("pole", env_id="CartPole-v1", n_envs=2, shards=1, train_freq=32, total_steps=128, **bins)
    out = _iterate(cfg, 0)
    assert out["update"]["n_updates"] == 64
    store = runtime.store()
    spec, table = read_qtable(store, "pole", 1)
    assert spec.kind == "bins" and spec.shape == (288, 2)
    t = transitions_from_shard(store.get_tensors(layout.traj_key("pole", 0, 0)))
    touched = set(zip(spec.states(t.obs).tolist(), t.actions.tolist(), strict=True))
    changed = {(int(s), int(a)) for s, a in zip(*np.nonzero(table), strict=True)}
    assert changed and changed <= touched
    ev = post("policy-evaluator", _ref(cfg, 0))
    assert ev.status == 200, ev.body


def test_taxi_has_a_table_of_its_500_states(ftg_env: Path) -> None:
    cfg = _new_run("taxi", env_id="Taxi-v4", n_envs=1, shards=1, train_freq=32, total_steps=64)
    out = _iterate(cfg, 0)
    assert out["update"]["n_updates"] == 32
    spec, table = read_qtable(runtime.store(), "taxi", 1)
    assert spec.shape == (500, 6) and np.count_nonzero(table) > 0


def test_a_box_without_finite_bounds_is_refused_at_init_and_at_submit(ftg_env: Path, tmp_path: Path) -> None:
    cfg = RunConfig(run_id="nolow", seed=0, qlearning=QLearningConfig(env_id="CartPole-v1", bins=4))
    runtime.store().put_json(layout.config_key("nolow"), cfg.to_stored())
    runtime.meta().create_run("nolow")
    r = post("policy-updater", {**_ref(cfg, 0), "mode": "init"})
    assert r.status == 400 and r.json()["field"] == "low", r.body

    from workflows.ppo_sweep import _read_sweep

    sweep = tmp_path / "pole.yaml"
    sweep.write_text(
        "name: pole\nconfigs:\n  cp: {algo: qlearning, env_id: CartPole-v1, bins: 4, low: [-1, -1, -1, -1]}\n"
    )
    overrides = argparse.Namespace(seeds=None, max_parallel=None, total_steps=None, only=None)
    with pytest.raises(
        SweepError, match=r"configs\.cp\.high: CartPole-v1: .*infinite in dimension\(s\) \[1, 3\]"
    ):
        _read_sweep(str(sweep), overrides)


def test_exporting_a_table_is_refused_naming_the_run_and_what_serves_it(ftg_env: Path) -> None:
    from workflows.export import export_policy

    cfg = _new_run("tabular", **LAKE)
    _iterate(cfg, 0)
    out = ftg_env / "policy.onnx"
    with pytest.raises(ValueError, match=r"'tabular' is tabular Q-learning: version 1 is a Q-table.*MLflow"):
        export_policy(runtime.store(), "tabular", 1, "onnx", out)
    assert not out.exists()
