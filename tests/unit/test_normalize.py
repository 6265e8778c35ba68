"""VecNormalize-style statistics: exact merges, SB3's step semantics, clipping and serialisation."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest

from ftg_common.normalize import (
    NormalizeSettings,
    NormStats,
    RunningStats,
    begin_shard,
    merge,
    merge_all,
    merge_increments,
    normalize_obs,
    normalize_reward,
    observe_reset,
    observe_step,
    shard_carry_from_tensors,
    shard_carry_to_tensors,
    shard_view,
    stats_from_tensors,
    stats_to_tensors,
    update_returns,
)
from ftg_common.tensorio import decode, encode


def _close(a: RunningStats, b: RunningStats, tol: float = 1e-12) -> None:
    assert a.count == pytest.approx(b.count, rel=tol, abs=0)
    np.testing.assert_allclose(a.mean, b.mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.var, b.var, rtol=tol, atol=tol)


# --- running statistics -----------------------------------------------------------------------------


def test_hand_computed_merge() -> None:
    # rows {1, 2} and {3}: mean 2, population variance ((1-2)^2 + 0 + (3-2)^2) / 3 = 2/3
    a = RunningStats.from_batch(np.array([1.0, 2.0]))
    b = RunningStats.from_batch(np.array([3.0]))
    m = merge(a, b)
    assert (float(m.mean), float(m.var), m.count) == (2.0, pytest.approx(2.0 / 3.0, abs=1e-15), 3.0)
    # delta = 3 - 1.5 = 1.5, m2 = 0.25 * 2 + 0 + 2.25 * 2 * 1 / 3 = 2, var = 2/3
    assert float(merge(b, a).var) == pytest.approx(2.0 / 3.0, abs=1e-15)


def test_prior_update_hand_computed() -> None:
    # SB3's prior (0, 1, 1e-4) plus the single row 2: mean = 2 * 1 / 1.0001,
    # var = (1 * 1e-4 + 0 + 4 * 1e-4 * 1 / 1.0001) / 1.0001
    s = RunningStats.prior(()).update(np.array([2.0]))
    assert float(s.mean) == pytest.approx(2.0 / 1.0001, rel=1e-15)
    assert float(s.var) == pytest.approx((1e-4 + 4e-4 / 1.0001) / 1.0001, rel=1e-14)
    assert s.count == pytest.approx(1.0001, rel=1e-15)


def test_empty_is_identity_and_empty_batch() -> None:
    s = RunningStats.from_batch(np.arange(6.0).reshape(3, 2))
    e = RunningStats.empty((2,))
    assert merge(s, e) is s and merge(e, s) is s
    assert RunningStats.from_batch(np.zeros((0, 2))).count == 0.0
    assert merge_all([], (2,)).shape == (2,)
    with pytest.raises(ValueError, match="shapes"):
        merge(s, RunningStats.empty((3,)))


def test_shards_in_any_order_equal_single_pass() -> None:
    rng = np.random.default_rng(0)
    shards = [
        rng.normal(loc=rng.normal() * 5, scale=rng.uniform(0.1, 3), size=(n, 3)) for n in (7, 1, 40, 13)
    ]
    single = RunningStats.from_batch(np.concatenate(shards))
    parts = [RunningStats.from_batch(s) for s in shards]
    results = [merge_all(perm) for perm in itertools.permutations(parts)]
    for r in results:
        _close(r, single)
        # Canonical order: not just close, bit-identical whichever order the fan-in delivered.
        assert r.mean.tobytes() == results[0].mean.tobytes() and r.var.tobytes() == results[0].var.tobytes()
    # A sequential update row-block by row-block is the same computation.
    seq = RunningStats.empty((3,))
    for s in shards:
        seq = seq.update(s)
    _close(seq, single)


def test_merge_increments_on_a_prior_equals_one_pass() -> None:
    rng = np.random.default_rng(1)
    base = NormStats.initial((2,))
    obs_rows = [rng.normal(size=(5, 2)) for _ in range(3)]
    ret_rows = [rng.normal(size=(5,)) for _ in range(3)]
    incs = [
        NormStats(RunningStats.from_batch(o), RunningStats.from_batch(r))
        for o, r in zip(obs_rows, ret_rows, strict=True)
    ]
    merged = merge_increments(base, reversed(incs))
    _close(merged.obs_rms, base.obs_rms.update(np.concatenate(obs_rows)))
    _close(merged.ret_rms, base.ret_rms.update(np.concatenate(ret_rows)))


# --- normalising ------------------------------------------------------------------------------------


def test_normalize_obs_clip_and_epsilon() -> None:
    stats = RunningStats(np.array([1.0, 0.0]), np.array([4.0, 0.0]), 10.0)
    out = normalize_obs(np.array([[5.0, 1.0]]), stats, clip_obs=1e9, epsilon=1e-8)
    # (5 - 1) / sqrt(4 + 1e-8) and (1 - 0) / sqrt(0 + 1e-8) = 1e4: epsilon keeps a constant feature finite
    np.testing.assert_allclose(out, [[4.0 / math.sqrt(4.0 + 1e-8), 1e4]], rtol=1e-6)
    clipped = normalize_obs(np.array([[5.0, -1.0]]), stats, clip_obs=1.5, epsilon=1e-8)
    np.testing.assert_array_equal(clipped, np.array([[1.5, -1.5]], dtype=np.float32))
    assert clipped.dtype == np.float32


def test_normalize_reward_scales_without_centring() -> None:
    ret = RunningStats(np.array(100.0), np.array(4.0), 3.0)  # a large mean must not shift rewards
    out = normalize_reward(np.array([2.0, -2.0, 50.0]), ret, clip_reward=10.0, epsilon=0.0)
    np.testing.assert_array_equal(out, np.array([1.0, -1.0, 10.0], dtype=np.float32))
    assert out.dtype == np.float32


def test_observe_step_hand_computed_returns_reset_on_done() -> None:
    # One env, gamma 0.5, rewards 1, 1, 1 with the episode ending (truncated counts) at step 2.
    s = NormalizeSettings(norm_obs=False, gamma=0.5, epsilon=1e-12)
    base = NormStats(RunningStats.empty((1,)), RunningStats.empty(()))
    inc = begin_shard((1,), 1)
    seen = []
    for done in (False, True, False):
        inc, _, r = observe_step(base, inc, np.zeros((1, 1)), np.array([1.0]), np.array([done]), s)
        seen.append((float(inc.returns[0]), float(r[0])))
    # ret: 1, then 1.5 (stats {1, 1.5}, reset to 0 after), then 1 again: ret_rms over {1, 1.5, 1}
    assert [x[0] for x in seen] == [1.0, 0.0, 1.0]
    # step 1: var {1} = 0 -> 1 / sqrt(1e-12) = 1e6, clipped to 10; step 2: var {1, 1.5} = 1/16 -> 1 / 0.25 = 4
    # step 3: var {1, 1.5, 1} = 1/18 -> sqrt(18) = 4.2426...
    np.testing.assert_allclose([x[1] for x in seen], [10.0, 4.0, math.sqrt(18.0)], rtol=1e-6)
    _close(inc.ret_rms, RunningStats.from_batch(np.array([1.0, 1.5, 1.0])))


def test_update_returns() -> None:
    np.testing.assert_allclose(update_returns(np.array([2.0, 0.0]), np.array([1.0, -1.0]), 0.9), [2.8, -1.0])


def _drive(n_envs: int, steps: int, seed: int):
    """A deterministic stream of (raw obs, rewards, dones) with episodes ending at various steps."""
    rng = np.random.default_rng(seed)
    obs0 = rng.normal(size=(n_envs, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    stream = []
    for _ in range(steps):
        obs = rng.normal(size=(n_envs, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
        stream.append((obs, rng.normal(size=n_envs) * 3 + 1, rng.random(n_envs) < 0.15))
    return obs0, stream


def _reference(obs0, stream, s: NormalizeSettings):
    """The same semantics written out directly: every statistic is one pass over all rows so far."""
    obs_rows = [obs0]
    ret_rows = []
    ret = np.zeros(obs0.shape[0])
    outs = []
    for obs, rew, done in stream:
        obs_rows.append(obs)
        o = RunningStats.prior((3,)).update(np.concatenate(obs_rows))
        ret = ret * s.gamma + rew
        ret_rows.append(ret.copy())
        r = RunningStats.prior(()).update(np.concatenate(ret_rows))
        n_obs = np.clip((obs - o.mean) / np.sqrt(o.var + s.epsilon), -s.clip_obs, s.clip_obs)
        n_rew = np.clip(rew / np.sqrt(r.var + s.epsilon), -s.clip_reward, s.clip_reward)
        outs.append((n_obs, n_rew))
        ret[done] = 0.0
    return outs, o, r


def test_single_shard_matches_direct_definition() -> None:
    s = NormalizeSettings(gamma=0.9, clip_obs=3.0, clip_reward=2.0)
    obs0, stream = _drive(4, 30, seed=2)
    expected, o_ref, r_ref = _reference(obs0, stream, s)
    base = NormStats.initial((3,))
    inc, _ = observe_reset(base, begin_shard((3,), 4), obs0, s)
    for (obs, rew, done), (e_obs, e_rew) in zip(stream, expected, strict=True):
        inc, n_obs, n_rew = observe_step(base, inc, obs, rew, done, s)
        np.testing.assert_allclose(n_obs, e_obs, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(n_rew, e_rew, rtol=1e-6, atol=1e-6)
    final = merge_increments(base, [inc])
    _close(final.obs_rms, o_ref)
    _close(final.ret_rms, r_ref)


def test_shards_and_iterations_merge_to_single_pass() -> None:
    # Two shards of 2 envs, two iterations each: the merged statistics after iteration 2 equal one pass
    # over every raw observation and every discounted return the four envs produced, and the carried
    # returns continue across the invocation boundary.
    s = NormalizeSettings(gamma=0.95)
    obs0, stream = _drive(4, 20, seed=3)
    base = NormStats.initial((3,))
    carries: list[tuple[np.ndarray, np.ndarray] | None] = [None, None]
    for it in range(2):
        incs = []
        for k in range(2):
            cols = slice(2 * k, 2 * k + 2)
            inc = begin_shard((3,), 2, carries[k])
            if carries[k] is None:
                inc, _ = observe_reset(base, inc, obs0[cols], s)
            for obs, rew, done in stream[10 * it : 10 * it + 10]:
                inc, _, _ = observe_step(base, inc, obs[cols], rew[cols], done[cols], s)
            arrays, _ = decode(encode(shard_carry_to_tensors(inc)))
            carries[k] = shard_carry_from_tensors(arrays)
            incs.append(inc)
        base = merge_increments(base, incs)
    _, o_ref, r_ref = _reference(obs0, stream, s)
    _close(base.obs_rms, o_ref)
    _close(base.ret_rms, r_ref)


def test_norm_flags_off_pass_values_through() -> None:
    s = NormalizeSettings(norm_obs=False, norm_reward=False, gamma=0.9)
    base = NormStats.initial((2,))
    inc = begin_shard((2,), 1)
    inc, o, r = observe_step(base, inc, np.array([[3.0, -4.0]]), np.array([7.0]), np.array([False]), s)
    np.testing.assert_array_equal(o, [[3.0, -4.0]])
    np.testing.assert_array_equal(r, [7.0])
    assert inc.obs_rms.count == 0.0  # SB3 does not update obs_rms without norm_obs
    assert inc.ret_rms.count == 1.0  # ... but does update ret_rms in training mode
    assert shard_view(base, inc).ret_rms.count == pytest.approx(1.0001)


def test_settings_validation_and_json() -> None:
    s = NormalizeSettings(norm_reward=False, gamma=0.98, clip_obs=5.0)
    assert NormalizeSettings.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="gamma"):
        NormalizeSettings(gamma=0.0)
    with pytest.raises(ValueError, match="clip"):
        NormalizeSettings(clip_obs=0.0)


# --- serialisation ----------------------------------------------------------------------------------


def test_stats_round_trip_through_safetensors_bit_exact() -> None:
    rng = np.random.default_rng(4)
    stats = NormStats.initial((3,))
    stats = NormStats(stats.obs_rms.update(rng.normal(size=(9, 3))), stats.ret_rms.update(rng.normal(size=9)))
    tensors = stats_to_tensors(stats)
    assert sorted(tensors) == [
        "obs_rms.count",
        "obs_rms.mean",
        "obs_rms.var",
        "ret_rms.count",
        "ret_rms.mean",
        "ret_rms.var",
    ]
    assert all(t.dtype == np.float64 for t in tensors.values())
    arrays, _ = decode(encode({**tensors, "pi.0.weight": np.zeros((2, 2), np.float32)}))
    back = stats_from_tensors(arrays)
    for a, b in ((back.obs_rms, stats.obs_rms), (back.ret_rms, stats.ret_rms)):
        assert a.mean.tobytes() == b.mean.tobytes() and a.var.tobytes() == b.var.tobytes()
        assert a.count == b.count
    prefixed = stats_from_tensors(stats_to_tensors(stats, prefix="norm."), prefix="norm.")
    assert prefixed.obs_rms.count == stats.obs_rms.count


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("obs_rms.var", None, "lack tensor 'obs_rms.var'"),
        ("obs_rms.mean", np.zeros(3, np.float32), "must be float64"),
        ("ret_rms.count", np.array([1.0]), "must be a scalar"),
        ("obs_rms.var", np.array([1.0, -1.0, 1.0]), "negative"),
        ("obs_rms.mean", np.array([np.nan, 0.0, 0.0]), "non-finite"),
    ],
)
def test_stats_from_bad_tensors(key: str, value, message: str) -> None:
    tensors = stats_to_tensors(NormStats.initial((3,)))
    if value is None:
        del tensors[key]
    else:
        tensors[key] = value
    with pytest.raises(ValueError, match=message):
        stats_from_tensors(tensors)


def test_begin_shard_checks_the_carry() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        begin_shard((3,), 2, (np.zeros(2), np.zeros((3, 3))))


# --- against Stable-Baselines3 --------------------------------------------------------------------


class _Toy(gym.Env):
    """Deterministic: obs and reward follow a fixed formula, episodes end after 3 + (env % 3) steps."""

    def __init__(self, k: int, dtype: type) -> None:
        self.k = k
        self.dtype = dtype
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), dtype)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0
        self.episode = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t * 1.5 - self.k, 10.0 * math.sin(self.t + self.k + self.episode)], self.dtype)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = float(self.t * (self.k + 1) + action)
        end = self.t >= 3 + self.k % 3
        # Alternate terminations and time-limit truncations: SB3 resets ``ret`` on both.
        return self._obs(), reward, end and self.episode % 2 == 0, end and self.episode % 2 == 1, {}


# One shard over three iterations (carry and merge at each boundary) against one VecNormalize.
# SB3 takes a batch's mean and variance in the observations' dtype (float32 for most envs) before
# merging in float64; this module always computes in float64. Float64 observations match to 1e-12,
# float32 ones to float32 rounding of the batch moments.
@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_matches_sb3_vecnormalize(dtype: type, tol: float) -> None:
    vec_env = pytest.importorskip(
        "stable_baselines3.common.vec_env", reason="stable-baselines3 is not installed (the bench extra)"
    )

    class RawTerminals(vec_env.VecEnvWrapper):
        # Keeps a copy of each terminal observation before VecNormalize normalises it in place.
        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            obs, rew, dones, infos = self.venv.step_wait()
            self.terminals = {
                j: info["terminal_observation"].copy() for j, info in enumerate(infos) if dones[j]
            }
            return obs, rew, dones, infos

    n, gamma = 3, 0.9
    raw = RawTerminals(vec_env.DummyVecEnv([lambda k=k: _Toy(k, dtype) for k in range(n)]))
    venv = vec_env.VecNormalize(raw, gamma=gamma, clip_obs=4.0, clip_reward=3.0)
    s = NormalizeSettings(gamma=gamma, clip_obs=4.0, clip_reward=3.0)
    base = NormStats.initial((2,))
    sb3_obs = venv.reset()
    inc, ours = observe_reset(base, begin_shard((2,), n), venv.get_original_obs(), s)
    np.testing.assert_allclose(ours, sb3_obs, rtol=1e-6, atol=1e-6)
    for t in range(25):
        if t and t % 10 == 0:
            # An iteration boundary: the aggregator merges the increment into the next version's
            # statistics, and the shard's next invocation continues from its stored carry.
            base = merge_increments(base, [inc])
            carry = shard_carry_from_tensors(decode(encode(shard_carry_to_tensors(inc)))[0])
            np.testing.assert_allclose(carry[1], sb3_obs, rtol=1e-6, atol=1e-6)  # SB3's _last_obs
            inc = begin_shard((2,), n, carry)
        actions = np.array([(t + k) % 2 for k in range(n)])
        sb3_obs, sb3_rew, dones, infos = venv.step(actions)
        inc, o, r = observe_step(base, inc, venv.get_original_obs(), venv.get_original_reward(), dones, s)
        np.testing.assert_allclose(o, sb3_obs, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(r, sb3_rew, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(inc.returns, venv.returns, rtol=1e-12)
        view = shard_view(base, inc)
        assert sorted(raw.terminals) == list(np.flatnonzero(dones))
        for j in np.flatnonzero(dones):
            terminal = normalize_obs(raw.terminals[j], view.obs_rms, s.clip_obs, s.epsilon)
            # SB3 normalised the terminal observation in place with the same statistics
            np.testing.assert_allclose(terminal, infos[j]["terminal_observation"], rtol=1e-6, atol=1e-6)
    assert dones.dtype == bool
    view = shard_view(base, inc)
    for ours_rms, theirs in ((view.obs_rms, venv.obs_rms), (view.ret_rms, venv.ret_rms)):
        assert ours_rms.count == pytest.approx(theirs.count, rel=1e-15)
        np.testing.assert_allclose(ours_rms.mean, theirs.mean, rtol=tol)
        np.testing.assert_allclose(ours_rms.var, theirs.var, rtol=tol)
