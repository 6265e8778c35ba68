"""Off-policy evaluation: the value of a target policy pi estimated from episodes logged under mu.

Pure numpy. Estimators (the per-episode quantities are computed once; a bootstrap over episodes
reuses them through multiplicity weights):

- ``is``: trajectory importance sampling, mean_i w_i G_i with w_i = prod_t pi(a_t|s_t) / mu(a_t|s_t);
- ``pdis``: per-decision IS, mean_i sum_t gamma^t w_{i,t} r_{i,t} (w_{i,t} the product up to step t);
- ``wis``: weighted IS, sum_i w_i G_i / sum_i w_i;
- ``pdwis``: per-decision weighted IS, sum_t gamma^t sum_i w_{i,t} r_{i,t} / sum_i w_{i,t}, where an
  episode that has ended keeps its last weight (and no reward), so every step normalises over all N;
- ``dr``: doubly robust (Jiang & Li 2016) with a model Q-hat, mean_i sum_t gamma^t
  (w_{i,t} (r_{i,t} - Qhat(s_t, a_t)) + w_{i,t-1} Vhat(s_t)), Vhat(s) = sum_a pi(a|s) Qhat(s, a),
  w_{i,-1} = 1. With an exact model and deterministic transitions and rewards it is exact per episode.

Episode ends: a *terminated* episode has no value after its last step. An episode that did not
terminate (time limit, or cut by the end of the log) adds gamma^L Vhat(s_L) after its L steps, weighted
by its full ratio, when ``v_end`` is given; without it the estimand is the value of the episodes as
logged (the right one when a time limit is part of the task, as CartPole-v1's 500 steps are).

A logged action with mu(a|s) = 0 cannot have been taken by mu: it is reported as
:class:`ZeroBehaviourProbabilityError` naming the episode and step. A weighted estimator whose
normaliser is zero (pi gives zero probability to every logged episode) is reported as undefined
(``defined=False``, value NaN), never divided by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftg_common.errors import BadRequest

__all__ = [
    "ESTIMATORS",
    "LoggedEpisodes",
    "OPEEstimate",
    "ZeroBehaviourProbabilityError",
    "estimate",
    "evaluate",
]

ESTIMATORS = ("is", "pdis", "wis", "pdwis", "dr")


class ZeroBehaviourProbabilityError(BadRequest, ValueError):
    """A logged action has behaviour probability 0 (400): the log is not from the behaviour policy.

    Attributes:
        episode: index of the first such episode.
        step: its step.
    """

    def __init__(self, episode: int, step: int, count: int) -> None:
        super().__init__(
            f"behaviour probability is 0 for {count} logged action(s), first at episode {episode} step "
            f"{step}: importance weights are undefined (was mu logged for the action actually taken?)",
            "behaviour_probs",
        )
        self.episode, self.step = episode, step


@dataclass(frozen=True)
class LoggedEpisodes:
    """N episodes padded to H steps; step t of episode i is real when t < lengths[i].

    Attributes:
        rewards: [N, H] r_t.
        behaviour_probs: [N, H] mu(a_t|s_t) of the logged actions.
        target_probs: [N, H] pi(a_t|s_t) of the logged actions.
        lengths: [N] int, steps of each episode (1..H).
        terminated: [N] bool, the episode reached a terminal state.
        q_taken: [N, H] Qhat(s_t, a_t) (DR only).
        v_target: [N, H] Vhat(s_t) = sum_a pi(a|s_t) Qhat(s_t, a) (DR only).
        v_end: [N] Vhat(s_L) after the last step, used where not terminated (optional).
    """

    rewards: np.ndarray
    behaviour_probs: np.ndarray
    target_probs: np.ndarray
    lengths: np.ndarray
    terminated: np.ndarray
    q_taken: np.ndarray | None = None
    v_target: np.ndarray | None = None
    v_end: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """[N, H] bool, True on real steps."""
        return np.arange(self.rewards.shape[1])[None, :] < self.lengths[:, None]

    def take(self, idx: np.ndarray) -> LoggedEpisodes:
        """Episodes ``idx`` ([K] int), e.g. a bootstrap resample."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return LoggedEpisodes(
            self.rewards[idx],
            self.behaviour_probs[idx],
            self.target_probs[idx],
            self.lengths[idx],
            self.terminated[idx],
            pick(self.q_taken),
            pick(self.v_target),
            pick(self.v_end),
        )


def _check(ep: LoggedEpisodes) -> None:
    n, h = ep.rewards.shape
    shaped: dict[str, np.ndarray] = {"behaviour_probs": ep.behaviour_probs, "target_probs": ep.target_probs}
    for name, model in (("q_taken", ep.q_taken), ("v_target", ep.v_target)):
        if model is not None:
            shaped[name] = model
    for name, arr in shaped.items():
        if arr.shape != (n, h):
            raise BadRequest(f"{name} has shape {arr.shape}, rewards {(n, h)}", name)
    for name, flat in (("lengths", ep.lengths), ("terminated", ep.terminated), ("v_end", ep.v_end)):
        if flat is not None and flat.shape != (n,):
            raise BadRequest(f"{name} has shape {flat.shape}, expected ({n},)", name)
    if n == 0 or np.any(ep.lengths < 1) or np.any(ep.lengths > h):
        raise BadRequest(f"lengths: need at least one episode, each of 1..{h} steps", "lengths")
    mask = ep.mask
    for name in ("behaviour_probs", "target_probs"):
        p = shaped[name][mask]
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
            raise BadRequest(f"{name} must be probabilities in [0, 1]", name)
    zero = (ep.behaviour_probs == 0) & mask
    if zero.any():
        i, t = np.argwhere(zero)[0]
        raise ZeroBehaviourProbabilityError(int(i), int(t), int(zero.sum()))


@dataclass(frozen=True)
class _Terms:
    """Per-episode quantities, over H + 1 columns (the last real column holds the bootstrap).

    w [N, H+1] cumulative ratios (held after the end); rewards_ext [N, H+1]; disc [H+1] gamma^t;
    w_end [N]; ret [N] discounted returns; pdis [N]; dr [N] or None.
    """

    w: np.ndarray
    rewards_ext: np.ndarray
    disc: np.ndarray
    w_end: np.ndarray
    ret: np.ndarray
    pdis: np.ndarray
    dr: np.ndarray | None


def _terms(ep: LoggedEpisodes, gamma: float) -> _Terms:
    n, h = ep.rewards.shape
    mask = ep.mask
    rows = np.arange(n)
    mu = np.where(mask, ep.behaviour_probs, 1.0).astype(np.float64)
    pi = np.where(mask, ep.target_probs, 1.0).astype(np.float64)
    ratio = np.concatenate([pi / mu, np.ones((n, 1))], axis=1)  # [N, H+1], 1 past the end: weight held
    w = np.cumprod(ratio, axis=1)
    boot = np.zeros(n)
    if ep.v_end is not None:
        boot = np.where(ep.terminated, 0.0, ep.v_end.astype(np.float64))
    rewards_ext = np.concatenate([np.where(mask, ep.rewards, 0.0), np.zeros((n, 1))], axis=1)
    rewards_ext[rows, ep.lengths] = boot  # gamma^L Vhat(s_L) enters as a reward at step L
    disc = gamma ** np.arange(h + 1, dtype=np.float64)
    w_end = w[rows, ep.lengths - 1]
    ret = rewards_ext @ disc
    pdis = (w * rewards_ext) @ disc
    dr = None
    if ep.q_taken is not None and ep.v_target is not None:
        q = np.concatenate([np.where(mask, ep.q_taken, 0.0), np.zeros((n, 1))], axis=1)
        v = np.concatenate([np.where(mask, ep.v_target, 0.0), np.zeros((n, 1))], axis=1)
        w_prev = np.concatenate([np.ones((n, 1)), w[:, :-1]], axis=1)
        dr = (w * (rewards_ext - q) + w_prev * v) @ disc
    return _Terms(w, rewards_ext, disc, w_end, ret, pdis, dr)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """The quotient where ``den`` > 0, NaN elsewhere (no division by zero)."""
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _estimates(t: _Terms, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every estimator under episode multiplicities counts [R, N] (ones for the plain estimate): [R] each."""
    n = counts.sum(axis=1)
    out = {
        "is": counts @ (t.w_end * t.ret) / n,
        "pdis": counts @ t.pdis / n,
        "wis": _ratio(counts @ (t.w_end * t.ret), counts @ t.w_end),
    }
    num, den = counts @ (t.w * t.rewards_ext), counts @ t.w  # [R, H+1]
    # A step where every weight is zero has no defined mean; NaN propagates to the sum.
    out["pdwis"] = _ratio(num, den) @ t.disc
    if t.dr is not None:
        out["dr"] = counts @ t.dr / n
    return out


@dataclass(frozen=True)
class OPEEstimate:
    """One estimator's estimate with its percentile-bootstrap confidence interval.

    Attributes:
        name: ``is``, ``pdis``, ``wis``, ``pdwis`` or ``dr``.
        value: the estimate (NaN when undefined).
        ci_low: lower bound of the interval (NaN when undefined).
        ci_high: upper bound.
        defined: False when a weighted estimator's normaliser is zero: pi gives no probability to the
            logged behaviour, so the data say nothing about it.
        ess: effective sample size of the trajectory weights, (sum w)^2 / sum w^2 (0 if all are 0).
    """

    name: str
    value: float
    ci_low: float
    ci_high: float
    defined: bool
    ess: float


def estimate(ep: LoggedEpisodes, gamma: float) -> dict[str, float]:
    """Point estimates of every estimator the data allow (``dr`` needs ``q_taken`` and ``v_target``).

    Raises:
        ZeroBehaviourProbabilityError: a logged action has mu(a|s) = 0.
        BadRequest: inconsistent shapes, or probabilities outside [0, 1].
    """
    _check(ep)
    t = _terms(ep, gamma)
    return {k: float(v[0]) for k, v in _estimates(t, np.ones((1, len(ep.lengths)))).items()}


def evaluate(
    ep: LoggedEpisodes,
    gamma: float,
    rng: np.random.Generator,
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> dict[str, OPEEstimate]:
    """Every estimator with a percentile bootstrap interval over episodes.

    Args:
        ep: the logged episodes.
        gamma: discount of the value being estimated.
        rng: draws the resamples (seed it for a reproducible interval).
        n_resamples: bootstrap resamples.
        confidence: interval coverage.

    Raises:
        ZeroBehaviourProbabilityError: a logged action has mu(a|s) = 0.
        BadRequest: inconsistent shapes, or probabilities outside [0, 1].
    """
    _check(ep)
    t = _terms(ep, gamma)
    n = len(ep.lengths)
    point = _estimates(t, np.ones((1, n)))
    # Multiplicities of n draws with replacement, one row per resample.
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)
    boot = _estimates(t, counts)
    s, s2 = t.w_end.sum(), (t.w_end**2).sum()
    ess = float(s * s / s2) if s2 > 0 else 0.0
    lo_q, hi_q = (1 - confidence) / 2, (1 + confidence) / 2
    out: dict[str, OPEEstimate] = {}
    for name, value in point.items():
        v = float(value[0])
        finite = boot[name][np.isfinite(boot[name])]
        defined = bool(np.isfinite(v))
        low, high = (
            (float(np.quantile(finite, lo_q)), float(np.quantile(finite, hi_q)))
            if finite.size
            else (np.nan, np.nan)
        )
        out[name] = OPEEstimate(
            name, v, low if defined else np.nan, high if defined else np.nan, defined, ess
        )
    return out
