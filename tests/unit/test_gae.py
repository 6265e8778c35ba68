"""GAE and discounted returns against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from ftg_common.algos.gae import compute_gae, discounted_returns

GAMMA = 0.5
LAM = 0.5  # gamma * lambda = 0.25


def col(*xs: float) -> np.ndarray:
    """[T, 1] float32 column."""
    return np.array(xs, dtype=np.float32)[:, None]


def flags(t: int, at: int | None = None) -> np.ndarray:
    f = np.zeros((t, 1), dtype=bool)
    if at is not None:
        f[at, 0] = True
    return f


# Shared small rollout: T=3, N=1.
R = col(1.0, 2.0, 3.0)
V = col(0.5, 1.0, 2.0)
LAST = np.array([4.0], dtype=np.float32)
NO_TRUNC_V = np.zeros((3, 1), dtype=np.float32)


def test_no_episode_end_bootstraps_from_last_values() -> None:
    # delta_0 = 1 + 0.5*V1 - V0 = 1 + 0.5*1 - 0.5 = 1.0
    # delta_1 = 2 + 0.5*V2 - V1 = 2 + 0.5*2 - 1   = 2.0
    # delta_2 = 3 + 0.5*last - V2 = 3 + 0.5*4 - 2 = 3.0
    # A_2 = 3.0; A_1 = 2 + 0.25*3 = 2.75; A_0 = 1 + 0.25*2.75 = 1.6875
    # returns = A + V = 2.1875, 3.75, 5.0
    adv, ret = compute_gae(R, V, flags(3), flags(3), NO_TRUNC_V, LAST, gamma=GAMMA, gae_lambda=LAM)
    np.testing.assert_allclose(adv[:, 0], [1.6875, 2.75, 3.0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [2.1875, 3.75, 5.0], rtol=0, atol=1e-6)
    assert adv.dtype == np.float32 and ret.dtype == np.float32


def test_termination_mid_rollout_no_bootstrap_no_leakage() -> None:
    # terminated at t=1, so V2 belongs to the next episode and must not be used at t=1.
    # delta_0 = 1 + 0.5*1 - 0.5 = 1.0
    # delta_1 = 2 + 0       - 1 = 1.0
    # delta_2 = 3 + 0.5*4   - 2 = 3.0
    # A_2 = 3.0; A_1 = 1.0 (nothing carried across the boundary); A_0 = 1 + 0.25*1 = 1.25
    # returns = 1.75, 2.0, 5.0
    adv, ret = compute_gae(R, V, flags(3, 1), flags(3), NO_TRUNC_V, LAST, gamma=GAMMA, gae_lambda=LAM)
    np.testing.assert_allclose(adv[:, 0], [1.25, 1.0, 3.0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [1.75, 2.0, 5.0], rtol=0, atol=1e-6)


def test_truncation_mid_rollout_bootstraps_from_trunc_values() -> None:
    # truncated at t=1 with V(final obs) = 6; junk trunc values elsewhere must be ignored.
    # delta_0 = 1 + 0.5*1 - 0.5 = 1.0
    # delta_1 = 2 + 0.5*6 - 1   = 4.0
    # delta_2 = 3 + 0.5*4 - 2   = 3.0
    # A_2 = 3.0; A_1 = 4.0 (no leakage); A_0 = 1 + 0.25*4 = 2.0
    # returns = 2.5, 5.0, 5.0
    tv = col(100.0, 6.0, -100.0)
    adv, ret = compute_gae(R, V, flags(3), flags(3, 1), tv, LAST, gamma=GAMMA, gae_lambda=LAM)
    np.testing.assert_allclose(adv[:, 0], [2.0, 4.0, 3.0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [2.5, 5.0, 5.0], rtol=0, atol=1e-6)


def test_terminated_and_truncated_together_means_terminal() -> None:
    # Both flags at t=1: no bootstrap at all, same as pure termination.
    tv = col(0.0, 6.0, 0.0)
    adv, _ = compute_gae(R, V, flags(3, 1), flags(3, 1), tv, LAST, gamma=GAMMA, gae_lambda=LAM)
    np.testing.assert_allclose(adv[:, 0], [1.25, 1.0, 3.0], rtol=0, atol=1e-6)


def test_termination_on_last_step_ignores_last_values() -> None:
    # T=2, r=[1,1], V=[0,0], terminated at t=1, last_values=99 (the next episode's start).
    # delta_1 = 1; delta_0 = 1 + 0.5*0 - 0 = 1; A_1 = 1; A_0 = 1 + 0.25*1 = 1.25
    adv, _ = compute_gae(
        col(1.0, 1.0),
        col(0.0, 0.0),
        flags(2, 1),
        flags(2),
        np.zeros((2, 1), np.float32),
        np.array([99.0], np.float32),
        gamma=GAMMA,
        gae_lambda=LAM,
    )
    np.testing.assert_allclose(adv[:, 0], [1.25, 1.0], rtol=0, atol=1e-6)


def test_discounted_returns_hand_values() -> None:
    # R_2 = 3 + 0.5*4 = 5; R_1 = 2 + 0.5*5 = 4.5; R_0 = 1 + 0.5*4.5 = 3.25
    ret = discounted_returns(R, flags(3), flags(3), NO_TRUNC_V, LAST, gamma=GAMMA)
    np.testing.assert_allclose(ret[:, 0], [3.25, 4.5, 5.0], rtol=0, atol=1e-6)
    # terminated at t=1: R_1 = 2; R_0 = 1 + 0.5*2 = 2
    ret = discounted_returns(R, flags(3, 1), flags(3), NO_TRUNC_V, LAST, gamma=GAMMA)
    np.testing.assert_allclose(ret[:, 0], [2.0, 2.0, 5.0], rtol=0, atol=1e-6)
    # truncated at t=1 with V(final)=6: R_1 = 2 + 0.5*6 = 5; R_0 = 1 + 0.5*5 = 3.5
    ret = discounted_returns(R, flags(3), flags(3, 1), col(0.0, 6.0, 0.0), LAST, gamma=GAMMA)
    np.testing.assert_allclose(ret[:, 0], [3.5, 5.0, 5.0], rtol=0, atol=1e-6)


def _random_rollout(seed: int, t: int = 40, n: int = 5):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(t, n)).astype(np.float32)
    values = rng.normal(size=(t, n)).astype(np.float32)
    terminated = rng.random((t, n)) < 0.1
    truncated = rng.random((t, n)) < 0.1
    trunc_values = rng.normal(size=(t, n)).astype(np.float32)
    last_values = rng.normal(size=n).astype(np.float32)
    return rewards, values, terminated, truncated, trunc_values, last_values


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lambda_one_equals_discounted_returns_minus_values(seed: int) -> None:
    r, v, te, tr, tv, lv = _random_rollout(seed)
    adv, ret = compute_gae(r, v, te, tr, tv, lv, gamma=0.99, gae_lambda=1.0)
    mc = discounted_returns(r, te, tr, tv, lv, gamma=0.99)
    np.testing.assert_allclose(ret, mc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, mc - v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_lambda_zero_is_one_step_td(seed: int) -> None:
    r, v, te, tr, tv, lv = _random_rollout(seed)
    nxt = np.concatenate([v[1:], lv[None]], axis=0)
    nxt = np.where(tr, tv, nxt)
    nxt = np.where(te, 0.0, nxt)
    td = r + 0.9 * nxt - v
    adv, ret = compute_gae(r, v, te, tr, tv, lv, gamma=0.9, gae_lambda=0.0)
    np.testing.assert_allclose(adv, td, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ret, td + v, rtol=1e-6, atol=1e-6)


def test_envs_are_independent() -> None:
    r, v, te, tr, tv, lv = _random_rollout(7, t=25, n=4)
    adv, ret = compute_gae(r, v, te, tr, tv, lv, gamma=0.99, gae_lambda=0.95)
    for j in range(4):
        s = slice(j, j + 1)
        a1, r1 = compute_gae(
            r[:, s], v[:, s], te[:, s], tr[:, s], tv[:, s], lv[s], gamma=0.99, gae_lambda=0.95
        )
        np.testing.assert_array_equal(adv[:, s], a1)
        np.testing.assert_array_equal(ret[:, s], r1)


def test_shape_errors() -> None:
    r, v, te, tr, tv, lv = _random_rollout(0, t=5, n=3)
    with pytest.raises(ValueError, match="values"):
        compute_gae(r, v[:, :2], te, tr, tv, lv, gamma=0.99, gae_lambda=0.95)
    with pytest.raises(ValueError, match="last_values"):
        compute_gae(r, v, te, tr, tv, lv[:2], gamma=0.99, gae_lambda=0.95)
    with pytest.raises(ValueError, match="terminated"):
        compute_gae(r, v, te[:4], tr, tv, lv, gamma=0.99, gae_lambda=0.95)
    with pytest.raises(ValueError, match="rewards"):
        compute_gae(r[:, 0], v, te, tr, tv, lv, gamma=0.99, gae_lambda=0.95)
    with pytest.raises(ValueError, match="trunc_values"):
        discounted_returns(r, te, tr, tv.T, lv, gamma=0.99)
    with pytest.raises(ValueError, match="at least one step"):
        compute_gae(r[:0], v[:0], te[:0], tr[:0], tv[:0], lv, gamma=0.99, gae_lambda=0.95)
