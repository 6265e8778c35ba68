"""``FaaSColdStart-v0`` as gymnasium, FaaSTrainGym's collector and a sweep file see it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from ftg_common.envs.coldstart.azure_trace import MINUTES, write_azure_counts
from ftg_common.envs.coldstart.controller import NoOp, run_controller
from ftg_common.envs.coldstart.registration import COLDSTART_ID, COLDSTART_MULTI_ID
from ftg_common.envs.factory import UnknownEnvError, make_env, validate_env
from ftg_common.envs.vector import ShardEnvs

ROOT = Path(__file__).resolve().parents[2]


def _rollout(env: gym.Env, seed: int, actions: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=seed)
    seen, rewards = [obs], []
    for a in actions:
        obs, r, _, trunc, _ = env.step(a)
        seen.append(obs)
        rewards.append(r)
        if trunc:
            break
    return np.array(seen), np.array(rewards)


@pytest.mark.parametrize("env_id", [COLDSTART_ID, COLDSTART_MULTI_ID])
@pytest.mark.parametrize("observation", ["paper", "extended"])
def test_gymnasium_env_checker_passes(env_id: str, observation: str) -> None:
    env = make_env(env_id, {"observation": observation})
    check_env(env.unwrapped, skip_render_check=True)


def test_spaces_are_the_papers_state_and_an_eleven_way_prewarm_delta() -> None:
    env = validate_env(COLDSTART_ID)
    assert env.action_space == gym.spaces.Discrete(11)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box) and space.shape == (3,)
    assert space.high.tolist() == [1.0, 20.0, 1.0] and space.low.tolist() == [0.0, 0.0, 0.0]
    multi = make_env(COLDSTART_MULTI_ID, {"n_functions": 3, "observation": "extended"})
    assert multi.action_space == gym.spaces.MultiDiscrete([11, 11, 11])
    assert multi.observation_space.shape == (18,)


def test_registration_loads_no_simulator_until_an_env_is_made() -> None:
    code = (
        "import sys, gymnasium as gym, ftg_common.envs.factory; "
        f"assert {COLDSTART_ID!r} in gym.envs.registry and {COLDSTART_MULTI_ID!r} in gym.envs.registry; "
        "print(sorted(m for m in sys.modules if m.startswith('ftg_common.envs.coldstart')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['ftg_common.envs.coldstart', 'ftg_common.envs.coldstart.registration']"


def test_the_same_seed_and_actions_give_the_same_episode() -> None:
    actions = np.random.default_rng(0).integers(0, 11, 120).tolist()
    a = _rollout(make_env(COLDSTART_ID), 11, actions)
    b = _rollout(make_env(COLDSTART_ID), 11, actions)
    c = _rollout(make_env(COLDSTART_ID), 12, actions)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_episodes_truncate_after_episode_steps_and_observations_stay_in_bounds() -> None:
    env = make_env(COLDSTART_MULTI_ID, {"n_functions": 3, "observation": "extended", "episode_steps": 50})
    env.action_space.seed(1)
    obs, _ = env.reset(seed=1)
    for t in range(50):
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert not term and trunc == (t == 49)


def test_the_reward_weighs_cold_starts_failures_and_idle_memory_as_documented() -> None:
    weights = {"w_cold": 2.0, "w_fail": 3.0, "w_idle": 0.5}
    env = make_env(COLDSTART_ID, {**weights, "rate_per_min": 20.0, "max_replicas": 2, "queue_timeout_s": 1.0})
    env.reset(seed=3)
    seen = {"cold_starts": 0.0, "failed": 0.0, "idle_mb_s": 0.0}
    for a in [10, 0, 5, 5, 0, 10] * 10:
        _, r, _, _, info = env.step(a)
        expected = -(2.0 * info["cold_starts"] + 3.0 * info["failed"] + 0.5 * info["idle_mb_s"] / 1024.0)
        assert r == pytest.approx(expected)
        for k in seen:
            seen[k] += info[k]
    assert all(v > 0 for v in seen.values()), seen  # every term was exercised


def test_a_prewarm_action_starts_replicas_that_the_observation_counts() -> None:
    env = make_env(COLDSTART_ID, {"rate_per_min": 1.0})
    env.reset(seed=0)
    obs, *_ = env.step(10)  # +5
    assert obs[1] >= 5
    obs, *_ = env.step(0)  # -5: releases replicas with nothing assigned
    assert obs[1] <= 1


def test_bad_env_kwargs_are_refused_naming_the_field() -> None:
    with pytest.raises(UnknownEnvError, match="observation") as exc:
        validate_env(COLDSTART_ID, {"observation": "pixels"})
    assert exc.value.field == "env_kwargs"
    with pytest.raises(UnknownEnvError, match="SimConfig.dt_s"):
        make_env(COLDSTART_ID, {"dt_s": 0.0})
    with pytest.raises(UnknownEnvError, match="family"):
        make_env(COLDSTART_ID, {"family": "sporadic"})


def test_a_real_trace_file_replaces_the_synthetic_arrivals(tmp_path: Path) -> None:
    counts = np.zeros((2, MINUTES), dtype=np.int64)
    counts[0, 10:20] = 4
    counts[1, ::30] = 1
    path = write_azure_counts(
        tmp_path / "d01.csv", [("o", "a", "f1", "http"), ("o", "a", "f2", "timer")], counts
    )
    # A whole day in 30 s steps: the window starts at minute 0, so every invocation is replayed.
    env = make_env(
        COLDSTART_MULTI_ID,
        {"trace_path": str(path), "trace_rows": [1, 0], "n_functions": 2, "episode_steps": 2880},
    )
    env.reset(seed=0)
    arrivals, trunc = 0.0, False
    while not trunc:
        _, _, _, trunc, info = env.step(np.full(2, 5))
        arrivals += info["arrivals"]
    assert arrivals == counts.sum()
    with pytest.raises(UnknownEnvError, match="trace_rows"):
        make_env(COLDSTART_ID, {"trace_path": str(path), "trace_rows": [7]})


def test_the_collector_continues_an_episode_exactly_across_invocations() -> None:
    kwargs: dict[str, Any] = {"episode_steps": 40}
    actions = np.random.default_rng(2).integers(0, 11, size=(60, 2))
    whole = ShardEnvs(COLDSTART_ID, kwargs, n_envs=2, run_seed=5, global_offset=0)
    whole.start(None)
    expected = [tuple(x.copy() for x in whole.step(actions[t])[:2]) for t in range(60)]
    first = ShardEnvs(COLDSTART_ID, kwargs, n_envs=2, run_seed=5, global_offset=0)
    first.start(None)
    for t in range(25):
        first.step(actions[t])
    carry = first.carry()
    resumed = ShardEnvs(COLDSTART_ID, kwargs, n_envs=2, run_seed=5, global_offset=0)
    resumed.start(carry)
    for t in range(25, 60):
        obs, rewards = resumed.step(actions[t])[:2]
        assert np.array_equal(obs, expected[t][0]) and np.array_equal(rewards, expected[t][1])


def test_ppo_and_dqn_sweeps_on_the_env_pass_config_validation(tmp_path: Path) -> None:
    from workflows.ppo_sweep import _read_sweep

    sweep = tmp_path / "coldstart.yaml"
    sweep.write_text(
        "name: coldstart-smoke\nseeds: [0]\ndefaults:\n  env_id: FaaSColdStart-v0\n  threshold: null\n"
        "  env_kwargs: {episode_steps: 120, w_idle: 0.05}\n"
        "configs:\n"
        "  ppo: {algo: ppo, total_steps: 2048, n_envs: 4, n_steps: 64, batch_size: 64, shards: 1}\n"
        "  dqn: {algo: dqn, total_steps: 2048, n_envs: 1, train_freq: 64, gradient_steps: 16,"
        " learning_starts: 64, batch_size: 32, buffer_size: 2048, shards: 1}\n"
    )
    args = argparse.Namespace(seeds=None, max_parallel=None, total_steps=None, only=None, zoo=None)
    trials = _read_sweep(str(sweep), args).trial_configs()
    assert {hp.env_id for hp in trials.values()} == {COLDSTART_ID} and len(trials) == 2


def test_a_controller_replays_the_envs_episode_for_a_seed() -> None:
    # Holding (action 5) through the env and the do-nothing controller on its simulator are the same policy.
    env = make_env(COLDSTART_ID, {"rate_per_min": 12.0})
    seen = {"cold_starts": 0.0, "idle_mb_s": 0.0, "succeeded": 0.0}
    env.reset(seed=4)
    trunc = False
    while not trunc:
        _, _, _, trunc, info = env.step(5)
        for k in seen:
            seen[k] += info[k]
    env.reset(seed=4)
    summary = run_controller(env.unwrapped.sim, NoOp()).summary()  # type: ignore[attr-defined]
    assert summary["cold_starts"] == seen["cold_starts"] > 0
    assert summary["throughput"] == seen["succeeded"]
    assert summary["wasted_memory_mb_s"] == pytest.approx(seen["idle_mb_s"])
