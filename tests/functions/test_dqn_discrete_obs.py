"""DQN on Discrete / Tuple / MultiDiscrete observations: raw indices stored, one-hot inputs to the network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

from ftg_common import layout, runtime
from ftg_common.algos.qnet import FlatQ, QNetSpec, initial_qnet_weights
from ftg_common.checkpoints import load_q_policy, read_qnet
from ftg_common.errors import UnknownEnvError
from ftg_common.evaluation import run_episodes
from ftg_common.policy.qpolicy import QPolicy
from tests.dqn_runs import FROZEN_LAKE_DQN, ref, start_dqn_run, train_dqn_run
from tests.funcs import post

# 4x4 FrozenLake, not slippery: the shortest path from the start to the goal is 6 steps.
SHORTEST_PATH = 6


def test_a_short_dqn_run_learns_to_reach_the_frozen_lake_goal(ftg_env: Path) -> None:
    cfg = train_dqn_run("dqn-lake", seed=0)
    last = cfg.hparams.n_iterations - 1
    ev = post("policy-evaluator", ref(cfg, last))
    assert ev.status == 200, ev.body
    body = ev.json()
    # The environment and the greedy policy are deterministic: every episode is the same one.
    assert body["version"] == last + 1 and body["mean_return"] == 1.0
    assert body["mean_length"] == SHORTEST_PATH
    assert body["ope_error"] is None and body["ope"]["wis"]["value"] is not None
    # The untrained network's greedy policy does not (seeded: version 0 is fixed by the run's seed).
    hp = cfg.hparams
    untrained, _ = run_episodes(hp.env_id, hp.env_kwargs, load_q_policy(runtime.store(), "dqn-lake", 0), [0])
    assert untrained.tolist() == [0.0]


def test_the_replay_buffer_keeps_raw_indices_and_the_network_takes_one_hots(ftg_env: Path) -> None:
    cfg = start_dqn_run("dqn-raw", total_steps=256, learning_starts=32)
    spec, _ = read_qnet(runtime.store(), "dqn-raw", 0)
    assert (spec.obs_dim, spec.raw_obs_dim, spec.n_actions) == (16, 1, 4)
    shards = [post("rollout-collector", {**ref(cfg, 0), "shard": s}).json() for s in range(2)]
    traj = runtime.store().get_tensors(layout.traj_key("dqn-raw", 0, 0))
    # One float per step (the state's index), not 16.
    assert traj["obs"].shape == (16, 2, 1) and traj["next_obs"].shape == (16, 2, 1)
    assert set(np.unique(traj["obs"]).tolist()) <= set(range(16))
    agg = post("reward-aggregator", {**ref(cfg, 0), "shards": shards})
    assert agg.status == 200, agg.body
    chunk = runtime.store().get_tensors(layout.replay_chunk_key("dqn-raw", 0))
    assert chunk["obs"].shape[1] == 1
    upd = post("policy-updater", {**ref(cfg, 0), "replay": agg.json()})
    assert upd.status == 200 and upd.json()["n_updates"] == FROZEN_LAKE_DQN["gradient_steps"], upd.body


def _policy(space: spaces.Space[Any], n_actions: int = 3) -> tuple[QNetSpec, QPolicy, FlatQ]:
    spec = QNetSpec.from_spaces(space, spaces.Discrete(n_actions), [8])
    weights = initial_qnet_weights(spec, seed=5)
    return spec, QPolicy(spec, weights), FlatQ(spec).load(weights)


def test_the_q_policy_one_hot_encodes_discrete_tuple_and_multidiscrete_observations() -> None:
    spec, policy, net = _policy(spaces.Discrete(4, start=2))
    assert (spec.obs_dim, spec.raw_obs_dim) == (4, 1)
    raw = np.array([[2.0], [5.0], [3.0]], dtype=np.float32)
    hand = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]], dtype=np.float32)  # index - start
    np.testing.assert_array_equal(policy.q_values(raw), net.q_values(hand))

    spec, policy, net = _policy(spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))))
    assert (spec.obs_dim, spec.raw_obs_dim) == (5, 2)
    hand = np.array([[0, 1, 0, 0, 1]], dtype=np.float32)  # (1, 2): one-hot of 1 in 2, then of 2 in 3
    np.testing.assert_array_equal(policy.q_values(np.array([[1.0, 2.0]])), net.q_values(hand))

    spec, policy, net = _policy(spaces.MultiDiscrete([3, 2]))
    hand = np.array([[0, 0, 1, 1, 0]], dtype=np.float32)
    np.testing.assert_array_equal(
        policy.act_deterministic(np.array([[2.0, 0.0]])), net.q_values(hand).argmax(1)
    )
    with pytest.raises(ValueError, match=r"component 0 = 3\.0 is outside \[0, 3\)"):
        policy.q_values(np.array([[3.0, 0.0]]))


def test_box_observation_specs_are_stored_as_before() -> None:
    spec = QNetSpec.from_spaces(spaces.Box(-1, 1, (4,)), spaces.Discrete(2), [64, 64])
    # No encoding, no new key: the bytes (and digests) of every existing DQN version stay the same.
    assert spec.model_dump_json() == '{"obs_dim":4,"n_actions":2,"net_arch":[64,64],"activation":"relu"}'
    assert spec.encoding is None and spec.raw_obs_dim == 4


def test_unsupported_observation_spaces_are_refused_by_name() -> None:
    dict_space = spaces.Dict({"a": spaces.Discrete(2)})
    with pytest.raises(UnknownEnvError, match=r"DQN cannot take this env's observations: unsupported"):
        QNetSpec.from_spaces(dict_space, spaces.Discrete(2), [8])


def test_a_dqn_sweep_on_discrete_observations_passes_submit_validation(tmp_path: Path) -> None:
    import argparse

    from workflows.ppo_sweep import _read_sweep

    sweep = tmp_path / "lake.yaml"
    sweep.write_text(
        "name: lake\nconfigs:\n"
        "  lake: {algo: dqn, env_id: FrozenLake-v1, env_kwargs: {is_slippery: false}, total_steps: 1024}\n"
    )
    overrides = argparse.Namespace(seeds=None, max_parallel=None, total_steps=None, only=None)
    trials = _read_sweep(str(sweep), overrides).trial_configs()
    assert trials["lake"].env_id == "FrozenLake-v1"
