"""Off-policy evaluation on a 2-state MDP whose values are computed exactly.

MDP (deterministic): in s0, action 0 gives r=1 and moves to s1, action 1 gives r=0 and stays; in s1,
action 0 gives r=2 and terminates, action 1 gives r=0.5 and returns to s0. Episodes start in s0 and
are truncated after T steps. Behaviour mu is uniform; the target pi prefers action 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from ftg_common.errors import BadRequest
from ftg_common.ope import LoggedEpisodes, ZeroBehaviourProbabilityError, estimate, evaluate

GAMMA = 0.9
T = 8
MU = np.array([[0.5, 0.5], [0.5, 0.5]])
PI = np.array([[0.8, 0.2], [0.7, 0.3]])
REWARD = np.array([[1.0, 0.0], [2.0, 0.5]])
NEXT = np.array([[1, 0], [-1, 0]])  # -1: terminal


def exact_q(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q^pi [2, 2] and V^pi [2] of the infinite-horizon problem, by a linear solve."""
    p = np.zeros((2, 2))  # state -> state under pi
    for s in range(2):
        for a in range(2):
            if NEXT[s, a] >= 0:
                p[s, NEXT[s, a]] += pi[s, a]
    r_pi = (pi * REWARD).sum(1)
    v = np.linalg.solve(np.eye(2) - GAMMA * p, r_pi)
    q = REWARD + GAMMA * np.where(NEXT >= 0, v[np.clip(NEXT, 0, None)], 0.0)
    return q, v


def truncated_value(pi: np.ndarray, horizon: int) -> float:
    """V^pi(s0) of episodes cut after ``horizon`` steps (finite-horizon dynamic programming)."""
    v = np.zeros(2)
    for _ in range(horizon):
        q = REWARD + GAMMA * np.where(NEXT >= 0, v[np.clip(NEXT, 0, None)], 0.0)
        v = (pi * q).sum(1)
    return float(v[0])


def log_episodes(
    rng: np.random.Generator,
    n: int,
    model: np.ndarray | None = None,
    bootstrap: bool = False,
    horizon: int = T,
) -> LoggedEpisodes:
    """n episodes under mu; ``model`` is Qhat [2, 2] for DR; ``bootstrap`` adds Vhat(s_T) at truncation."""
    rewards, mu, pi = np.zeros((n, horizon)), np.ones((n, horizon)), np.ones((n, horizon))
    q_taken, v_target = np.zeros((n, horizon)), np.zeros((n, horizon))
    lengths, terminated, last_state = np.full(n, horizon), np.zeros(n, bool), np.zeros(n, int)
    s, alive = np.zeros(n, int), np.ones(n, bool)
    for t in range(horizon):
        a = (rng.random(n) < MU[s, 1]).astype(int)
        idx = np.flatnonzero(alive)
        rewards[idx, t], mu[idx, t], pi[idx, t] = REWARD[s, a][idx], MU[s, a][idx], PI[s, a][idx]
        if model is not None:
            q_taken[idx, t] = model[s, a][idx]
            v_target[idx, t] = (PI * model).sum(1)[s][idx]
        nxt = NEXT[s, a]
        ended = alive & (nxt < 0)
        lengths[ended], terminated[ended] = t + 1, True
        alive &= ~ended
        s = np.where(alive, nxt, s)
        last_state = s
    v_end = None
    if bootstrap and model is not None:
        v_end = np.where(terminated, 0.0, (PI * model).sum(1)[last_state])
    return LoggedEpisodes(
        rewards,
        mu,
        pi,
        lengths,
        terminated,
        q_taken if model is not None else None,
        v_target if model is not None else None,
        v_end,
    )


def many_estimates(
    n_sets: int, n_eps: int, model: np.ndarray | None, bootstrap: bool, seed: int = 0, horizon: int = T
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    runs = [estimate(log_episodes(rng, n_eps, model, bootstrap, horizon), GAMMA) for _ in range(n_sets)]
    return {k: np.array([r[k] for r in runs]) for k in runs[0]}


def within_ci(samples: np.ndarray, truth: float, z: float = 4.0) -> bool:
    se = samples.std(ddof=1) / np.sqrt(len(samples))
    return bool(abs(samples.mean() - truth) <= z * se)


# --------------------------------------------------------------------------- hand-computed


def test_a_two_episode_bandit_by_hand() -> None:
    # Episode 0: reward 1, mu 0.5, pi 0.25 (w 0.5). Episode 1: reward 3, mu 0.5, pi 1.0 (w 2).
    ep = LoggedEpisodes(
        rewards=np.array([[1.0], [3.0]]),
        behaviour_probs=np.array([[0.5], [0.5]]),
        target_probs=np.array([[0.25], [1.0]]),
        lengths=np.array([1, 1]),
        terminated=np.array([True, True]),
    )
    est = estimate(ep, gamma=1.0)
    assert est["is"] == pytest.approx((0.5 * 1 + 2 * 3) / 2)
    assert est["pdis"] == pytest.approx(est["is"])
    assert est["wis"] == pytest.approx((0.5 * 1 + 2 * 3) / 2.5)
    assert est["pdwis"] == pytest.approx(est["wis"])
    assert "dr" not in est


def test_a_truncated_episode_bootstraps_with_its_full_weight() -> None:
    # Two steps, rewards 1 and 1, ratios 2 and 0.5, not terminated, Vhat(s_2) = 10, gamma 0.5.
    ep = LoggedEpisodes(
        rewards=np.array([[1.0, 1.0]]),
        behaviour_probs=np.array([[0.5, 0.5]]),
        target_probs=np.array([[1.0, 0.25]]),
        lengths=np.array([2]),
        terminated=np.array([False]),
        v_end=np.array([10.0]),
    )
    est = estimate(ep, gamma=0.5)
    # Trajectory IS: w = 1, G = 1 + 0.5 + 0.25 * 10. Per-decision: 2 * 1 + 0.5 * 1 * 1 + 0.25 * 1 * 10.
    assert est["is"] == pytest.approx(4.0)
    assert est["pdis"] == pytest.approx(2.0 + 0.5 + 2.5)
    terminated = LoggedEpisodes(**{**ep.__dict__, "terminated": np.array([True])})
    assert estimate(terminated, gamma=0.5)["is"] == pytest.approx(1.5)  # no value after termination


# --------------------------------------------------------------------------- statistical properties


def test_is_is_unbiased_for_the_truncated_value() -> None:
    truth = truncated_value(PI, T)
    est = many_estimates(400, 50, model=None, bootstrap=False)
    assert within_ci(est["is"], truth) and within_ci(est["pdis"], truth)


def test_truncated_episodes_bootstrap_to_the_infinite_horizon_value() -> None:
    q, v = exact_q(PI)
    # Cut after 2 steps, many episodes are truncated; the bootstrap Vhat(s_2) completes them.
    assert abs(v[0] - truncated_value(PI, 2)) > 1.0
    exact = many_estimates(400, 50, model=q, bootstrap=True, seed=2, horizon=2)
    assert within_ci(exact["is"], float(v[0])) and within_ci(exact["pdis"], float(v[0]))
    # With a wrong model the completion uses the wrong tail value: the estimators are unbiased for the
    # model-completed value, and DR for the same, whatever the model.
    noisy = q + np.array([[0.7, -0.4], [0.3, 0.9]])
    est = many_estimates(400, 50, model=noisy, bootstrap=True, seed=1, horizon=2)
    completed = _completed_value(noisy, 2)
    assert within_ci(est["is"], completed) and within_ci(est["dr"], completed)


def _completed_value(model: np.ndarray, horizon: int) -> float:
    """E_pi[sum_{t<H} gamma^t r_t + gamma^H Vhat(s_H) 1(not terminated)] with Vhat from ``model``."""
    v = (PI * model).sum(1)  # the tail value at s_H
    for _ in range(horizon):
        q = REWARD + GAMMA * np.where(NEXT >= 0, v[np.clip(NEXT, 0, None)], 0.0)
        v = (PI * q).sum(1)
    return float(v[0])


def test_wis_and_dr_have_lower_variance_than_is() -> None:
    q, _ = exact_q(PI)
    noisy = q + np.array([[0.7, -0.4], [0.3, 0.9]])
    est = many_estimates(300, 50, model=noisy, bootstrap=False, seed=3)
    assert est["wis"].var() < est["is"].var()
    assert est["pdwis"].var() < est["pdis"].var()
    assert est["dr"].var() < est["is"].var()
    # DR without a bootstrap estimates the truncated value too, and stays unbiased with a wrong model.
    assert within_ci(est["dr"], truncated_value(PI, T))


def test_dr_is_exact_when_the_model_is_exact() -> None:
    q, v = exact_q(PI)
    rng = np.random.default_rng(4)
    for _ in range(20):
        ep = log_episodes(rng, 30, model=q, bootstrap=True)
        assert estimate(ep, GAMMA)["dr"] == pytest.approx(v[0], abs=1e-10)


# --------------------------------------------------------------------------- intervals and bad data


def test_bootstrap_intervals_contain_the_estimate_and_are_seeded() -> None:
    q, _ = exact_q(PI)
    ep = log_episodes(np.random.default_rng(5), 200, model=q, bootstrap=True)
    a = evaluate(ep, GAMMA, np.random.default_rng(0), n_resamples=500)
    b = evaluate(ep, GAMMA, np.random.default_rng(0), n_resamples=500)
    assert set(a) == {"is", "pdis", "wis", "pdwis", "dr"}
    for name, e in a.items():
        assert e.defined and e.ci_low - 1e-9 <= e.value <= e.ci_high + 1e-9, name
        assert e == b[name]
        assert 0 < e.ess <= 200
    assert a["dr"].ci_high - a["dr"].ci_low < 1e-9  # exact model, deterministic MDP: no spread at all
    assert a["wis"].ci_high - a["wis"].ci_low < a["is"].ci_high - a["is"].ci_low


def test_zero_behaviour_probability_is_reported_not_divided_by() -> None:
    ep = log_episodes(np.random.default_rng(6), 5)
    mu = ep.behaviour_probs.copy()
    mu[3, 0] = 0.0
    bad = LoggedEpisodes(**{**ep.__dict__, "behaviour_probs": mu})
    with pytest.raises(ZeroBehaviourProbabilityError, match="episode 3 step 0") as err:
        estimate(bad, GAMMA)
    assert err.value.status == 400 and err.value.field == "behaviour_probs"
    # Zeros in padding (after an episode ended) are not logged actions.
    short = int(np.argmin(ep.lengths))
    if ep.lengths[short] < T:
        pad = ep.behaviour_probs.copy()
        pad[short, ep.lengths[short] :] = 0.0
        estimate(LoggedEpisodes(**{**ep.__dict__, "behaviour_probs": pad}), GAMMA)


@pytest.mark.filterwarnings("error")
def test_no_support_under_the_target_is_undefined_not_a_division_by_zero() -> None:
    ep = LoggedEpisodes(
        rewards=np.array([[1.0], [2.0]]),
        behaviour_probs=np.array([[0.5], [0.5]]),
        target_probs=np.array([[0.0], [0.0]]),
        lengths=np.array([1, 1]),
        terminated=np.array([True, True]),
    )
    out = evaluate(ep, 1.0, np.random.default_rng(0), n_resamples=50)
    assert out["is"].value == 0.0 and out["is"].defined
    assert not out["wis"].defined and np.isnan(out["wis"].value) and np.isnan(out["wis"].ci_low)
    assert not out["pdwis"].defined and out["wis"].ess == 0.0


def test_malformed_logs_are_bad_requests_naming_the_field() -> None:
    ep = log_episodes(np.random.default_rng(7), 4)
    with pytest.raises(BadRequest, match="target_probs"):
        estimate(LoggedEpisodes(**{**ep.__dict__, "target_probs": ep.target_probs * 3}), GAMMA)
    with pytest.raises(BadRequest, match="lengths"):
        estimate(LoggedEpisodes(**{**ep.__dict__, "lengths": ep.lengths * 0}), GAMMA)
    with pytest.raises(BadRequest, match="rewards"):
        estimate(LoggedEpisodes(**{**ep.__dict__, "behaviour_probs": ep.behaviour_probs[:, :2]}), GAMMA)
