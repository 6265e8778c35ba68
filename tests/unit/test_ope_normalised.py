"""Off-policy estimates of a normalising run: the evaluated version's frozen statistics, the env's rewards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ftg_common import layout, runtime
from ftg_common.checkpoints import load_numpy_policy
from ftg_common.envs.seeding import OPE_BOOTSTRAP, derive_rng
from ftg_common.normalize import NormalizeSettings, NormStats, RunningStats, normalize_obs
from ftg_common.ope_logged import ope_values, shard_step_log, target_inputs, v_step_log
from ftg_common.policy.init import initial_weights
from ftg_common.policy.numpy_policy import NumpyPolicy
from ftg_common.policy.spec import PolicySpec
from ftg_common.rollout import RAW_OBS, RAW_REWARDS

# Observation statistics mean [1, -2], variance [4, 0.25] (std 2 and 0.5); return variance 9 (std 3).
STATS = NormStats(
    RunningStats(np.array([1.0, -2.0]), np.array([4.0, 0.25]), 10.0), RunningStats(0.0, 9.0, 10.0)
)
EPS = 1e-8
FULL = NormalizeSettings(epsilon=EPS)


def _policy(settings: NormalizeSettings | None = FULL) -> NumpyPolicy:
    spec = PolicySpec(obs_dim=2, action_kind="discrete", n_actions=2, net_arch=[4])
    weights = initial_weights(spec, seed=7, ortho=False)
    # A critic that is not ~0, so the scaling of its values shows.
    weights["vf.out.bias"] = np.array([2.0], dtype=np.float32)
    return NumpyPolicy(spec, weights, norm=None if settings is None else STATS, norm_settings=settings)


def _shard() -> dict[str, np.ndarray]:
    """T=2 steps of M=2 envs; ``obs`` as the behaviour saw them (its own running statistics: raw here)."""
    raw = np.array([[[3.0, -1.5], [1.0, -2.0]], [[101.0, -2.5], [-1.0, -1.0]]], dtype=np.float32)
    raw_rewards = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    return {
        "obs": raw.copy(),
        "actions": np.array([[0, 1], [1, 0]], dtype=np.int64),
        "log_probs": np.log(np.full((2, 2), 0.5, dtype=np.float32)),
        "rewards": raw_rewards / 7.0,  # scaled by the behaviour's return statistics
        "terminated": np.array([[0, 0], [1, 0]], dtype=np.uint8),
        "truncated": np.zeros((2, 2), dtype=np.uint8),
        "last_values": np.array([0.5, -0.5], dtype=np.float32),
        RAW_OBS: raw,
        RAW_REWARDS: raw_rewards,
    }


def test_the_target_sees_the_raw_observations_normalised_with_its_own_statistics() -> None:
    obs, rewards, scale = target_inputs(_shard(), _policy())
    # (raw - mean) / std by hand: [3, -1.5] -> [1, 1]; [1, -2] -> [0, 0];
    # [101, -2.5] -> [50 -> 10 (clipped), -1]; [-1, -1] -> [-1, 2].
    hand = np.array([[1.0, 1.0], [0.0, 0.0], [10.0, -1.0], [-1.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(obs, hand, rtol=1e-6)
    np.testing.assert_array_equal(rewards, [[1.0, 2.0], [3.0, 4.0]])  # the env's, not the scaled ones
    assert scale == pytest.approx(3.0)


def test_only_what_the_run_normalises_is_undone() -> None:
    shard = _shard()
    obs, rewards, scale = target_inputs(shard, _policy(NormalizeSettings(norm_obs=False, epsilon=EPS)))
    np.testing.assert_array_equal(obs, shard[RAW_OBS].reshape(4, 2))
    assert scale == pytest.approx(3.0) and rewards[1, 1] == 4.0
    obs, rewards, scale = target_inputs(shard, _policy(NormalizeSettings(norm_reward=False, epsilon=EPS)))
    assert scale == 1.0 and rewards[0, 1] == 2.0
    # A run without normalisation: the trajectory as logged.
    plain = {k: v for k, v in shard.items() if not k.startswith("raw.")}
    obs, rewards, scale = target_inputs(plain, _policy(None))
    np.testing.assert_array_equal(obs, shard["obs"].reshape(4, 2))
    np.testing.assert_array_equal(rewards, shard["rewards"].astype(np.float64))
    assert scale == 1.0


def test_the_step_log_weighs_the_target_on_its_own_inputs() -> None:
    shard, policy = _shard(), _policy()
    log = shard_step_log(shard, policy, gamma=0.5)
    frozen = normalize_obs(shard[RAW_OBS].reshape(4, 2), STATS.obs_rms, 10.0, EPS)
    expected = np.exp(policy.log_prob(frozen, shard["actions"].reshape(4))).reshape(2, 2)
    np.testing.assert_allclose(log.target_probs, expected, rtol=1e-6)
    # On the behaviour's inputs the target's probabilities differ: the bug this guards against.
    as_logged = np.exp(policy.log_prob(shard["obs"].reshape(4, 2), shard["actions"].reshape(4))).reshape(2, 2)
    assert not np.allclose(log.target_probs, as_logged, atol=1e-4)
    np.testing.assert_allclose(log.behaviour_probs, 0.5)
    np.testing.assert_array_equal(log.rewards, [[1.0, 2.0], [3.0, 4.0]])
    values = policy.value(frozen).reshape(2, 2).astype(np.float64) * 3.0
    np.testing.assert_allclose(log.v_target, values, rtol=1e-6)
    # Qhat = r + gamma V(next): env 1 continues into the last values (scaled); env 0 terminated at t=1.
    np.testing.assert_allclose(log.q_taken[1], [3.0, 4.0 + 0.5 * (-0.5 * 3.0)], rtol=1e-6)
    np.testing.assert_allclose(log.q_taken[0, 1], 2.0 + 0.5 * values[1, 1], rtol=1e-6)


def test_a_normalising_runs_evaluator_reports_estimates_in_the_envs_units(ftg_env: Path) -> None:
    from tests.funcs import iterate, new_run

    cfg = new_run(n_envs=4, n_steps=32, shards=2, batch_size=64, n_epochs=2, total_steps=1024, normalize=True)
    out = iterate(cfg, 0, evaluate=True)
    ev = out["evaluate"]
    assert ev["ope_error"] is None
    store = runtime.store()
    shards = [store.get_tensors(layout.traj_key(cfg.run_id, 0, k)) for k in range(2)]
    for shard in shards:
        assert shard[RAW_OBS].shape == shard["obs"].shape
        np.testing.assert_array_equal(shard[RAW_REWARDS], 1.0)  # CartPole pays 1 per step
        assert not np.allclose(shard["rewards"], 1.0)  # the trajectory's rewards are scaled
    policy = load_numpy_policy(store, cfg.run_id, 1)
    assert policy.norm is not None and policy.norm_settings is not None
    gamma = cfg.ppo_config.gamma
    logs = []
    for shard in shards:
        t, m = shard["rewards"].shape
        frozen = normalize_obs(shard[RAW_OBS].reshape(t * m, -1), policy.norm.obs_rms, 10.0, 1e-8)
        target = policy.log_prob(frozen, shard["actions"].reshape(t * m)).reshape(t, m)
        std = np.sqrt(policy.norm.ret_rms.var + 1e-8)
        values = policy.value(frozen).reshape(t, m).astype(np.float64) * std
        raw = {**shard, "rewards": shard[RAW_REWARDS], "last_values": shard["last_values"] * std}
        logs.append(v_step_log(raw, target, values, gamma))
    expected, n = ope_values(logs, gamma, derive_rng(cfg.seed, OPE_BOOTSTRAP, 0))
    assert ev["ope_episodes"] == n
    for name, value in expected.items():
        assert ev["ope"][name]["value"] == pytest.approx(value.value, rel=1e-9), name
