"""Statistics that decide an A/B experiment between RL configurations (numpy only, no I/O).

The estimators of Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical
Precipice" (NeurIPS 2021), written from the paper's definitions:

- **IQM**: the mean of the middle 50% of all runs' scores (pooled over tasks), robust to the outlier
  seeds RL produces and more efficient than the median at a handful of seeds.
- **Stratified bootstrap**: confidence intervals resample runs (seeds) with replacement *within each
  task* (environment), keeping every task's number of runs, so a task with more seeds never crowds
  out another. Intervals are percentile intervals of the resampled statistic.
- **Probability of improvement** P(X > Y): for each task, the Mann-Whitney probability that a random
  run of X scores above a random run of Y (ties count one half), averaged over tasks; its CI comes
  from a stratified bootstrap of both configurations' runs.
- **Performance profile**: the fraction of runs scoring above each threshold tau, averaged over tasks.
- **Sample efficiency**: the IQM of the evaluation return at fixed fractions of the step budget.

Scores of one configuration are given as any of:

- a 1-D array ``[runs]``: one task;
- a 2-D array ``[runs, tasks]`` (the rliable layout): tasks named ``"0"``, ``"1"``, ...;
- a mapping task name -> 1-D array of its runs' scores (tasks may have different numbers of runs).

Pooling scores over several tasks (IQM, profiles) only makes sense on a common scale; normalise
them per task (e.g. to [random, expert]) first. The probability of improvement is scale-free.

Every function is a pure function of its inputs and of ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple, TypeAlias

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DEFAULT_FRACTIONS",
    "Band",
    "BudgetPoint",
    "Estimate",
    "Profile",
    "Verdict",
    "decide",
    "interpolate_curves",
    "iqm",
    "iqm_band",
    "iqm_rows",
    "iqm_with_ci",
    "pairwise_improvements",
    "performance_profile",
    "probability_of_improvement",
    "sample_efficiency",
    "step_grid",
    "stratified_bootstrap",
    "task_scores",
    "tau_grid",
    "value_at_budget",
    "verdict",
]

Scores: TypeAlias = "ArrayLike | Mapping[str, ArrayLike]"
"""One configuration's final scores: [runs], [runs, tasks] or task -> [runs] (see the module doc)."""

Curve: TypeAlias = "ArrayLike"
"""One seed's evaluations: rows (env_steps, mean_return) in increasing steps, e.g. ``RunSummary.evals``."""

DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
_REPS = 2000


class Estimate(NamedTuple):
    """A point estimate and its confidence interval.

    Attributes:
        value: the statistic on the observed runs.
        low: lower end of the interval.
        high: upper end of the interval.
    """

    value: float
    low: float
    high: float


# --------------------------------------------------------------------------- inputs


def task_scores(scores: Scores) -> dict[str, np.ndarray]:
    """Normalise one configuration's scores to task name -> 1-D float64 array of runs.

    Args:
        scores: [runs], [runs, tasks], or a mapping task -> [runs].

    Returns:
        Task name -> [runs] float64, in the input's task order.

    Raises:
        ValueError: no task, a task with no run, a non-finite score, or an array of more than 2 dims.
    """
    if isinstance(scores, Mapping):
        tasks = {str(k): np.asarray(v, dtype=np.float64).ravel() for k, v in scores.items()}
    else:
        a = np.asarray(scores, dtype=np.float64)
        if a.ndim == 1:
            tasks = {"0": a}
        elif a.ndim == 2:
            tasks = {str(j): a[:, j] for j in range(a.shape[1])}
        else:
            raise ValueError(f"scores must be [runs] or [runs, tasks], got shape {a.shape}")
    if not tasks:
        raise ValueError("scores name no task")
    for name, runs in tasks.items():
        if runs.size == 0:
            raise ValueError(f"task {name!r} has no run")
        if not np.all(np.isfinite(runs)):
            raise ValueError(f"task {name!r} has a non-finite score: {runs.tolist()}")
    return tasks


def _check_reps(reps: int) -> None:
    if reps < 1:
        raise ValueError(f"reps must be positive, got {reps}")


def _check_bootstrap(reps: int, confidence: float) -> None:
    _check_reps(reps)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of resampled statistics [reps, ...]."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha], axis=0)
    return low, high


# --------------------------------------------------------------------------- IQM


def _iqm_cut(n: int) -> tuple[int, int]:
    # scipy.stats.trim_mean(x, 0.25)'s cut, as ftg_common.algos.stats uses for the A/B table, so both
    # agree: drop floor(n/4) values from each end; n < 4 trims nothing.
    return n // 4, n - n // 4


def iqm_rows(a: np.ndarray) -> np.ndarray:
    """IQM of each row.

    Args:
        a: [R, n] finite values, n >= 1.

    Returns:
        [R] float64.
    """
    low, high = _iqm_cut(a.shape[1])
    rows: np.ndarray = np.sort(a, axis=1)[:, low:high].mean(axis=1)
    return rows


def iqm(scores: Scores) -> float:
    """Interquartile mean of every run's score, pooled over tasks.

    For n pooled scores sorted ascending, the mean of those with index in [floor(n/4), n - floor(n/4)).

    Args:
        scores: one configuration's scores (see :func:`task_scores`).

    Returns:
        The IQM.
    """
    pooled = np.concatenate(list(task_scores(scores).values()))
    return float(iqm_rows(pooled[None, :])[0])


# --------------------------------------------------------------------------- stratified bootstrap


def stratified_bootstrap(
    scores: Scores,
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    reps: int = _REPS,
    seed: int = 0,
) -> np.ndarray:
    """The statistic on ``reps`` stratified resamples: runs drawn with replacement within each task.

    Args:
        scores: one configuration's scores (see :func:`task_scores`).
        statistic: maps per-task resamples (one [reps, runs_t] array per task, in task order) to
            [reps, ...] values, vectorised over the resamples.
        reps: number of resamples.
        seed: seed of the resampling generator.

    Returns:
        [reps, ...]: the statistic of every resample.
    """
    _check_reps(reps)
    rng = np.random.default_rng(seed)
    resampled = [x[rng.integers(0, x.size, size=(reps, x.size))] for x in task_scores(scores).values()]
    return np.asarray(statistic(resampled))


def _pooled_iqm(per_task: list[np.ndarray]) -> np.ndarray:
    return iqm_rows(np.concatenate(per_task, axis=1))


def iqm_with_ci(scores: Scores, reps: int = _REPS, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """IQM of the pooled scores with a stratified-bootstrap percentile interval.

    With one run per task every resample equals the sample, so the interval collapses to the IQM.

    Args:
        scores: one configuration's scores (see :func:`task_scores`).
        reps: bootstrap resamples.
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the resampling generator.

    Returns:
        (IQM, low, high).
    """
    _check_bootstrap(reps, confidence)
    stats = stratified_bootstrap(scores, _pooled_iqm, reps, seed)
    low, high = _percentiles(stats, confidence)
    return Estimate(iqm(scores), float(low), float(high))


# --------------------------------------------------------------------------- probability of improvement


def _pair_scores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[n_x, n_y]: 1 where x_i > y_j, 0.5 where they tie, 0 otherwise (the Mann-Whitney kernel)."""
    gt = (x[:, None] > y[None, :]).astype(np.float64)
    eq = (x[:, None] == y[None, :]).astype(np.float64)
    kernel: np.ndarray = gt + 0.5 * eq
    return kernel


def _matched_tasks(x: Scores, y: Scores) -> list[tuple[np.ndarray, np.ndarray]]:
    tx, ty = task_scores(x), task_scores(y)
    if set(tx) != set(ty):
        raise ValueError(f"the two configurations cover different tasks: {sorted(tx)} vs {sorted(ty)}")
    # Sorted, so the estimate and its resamples do not depend on the order tasks were listed in.
    return [(tx[t], ty[t]) for t in sorted(tx)]


def probability_of_improvement(
    x: Scores, y: Scores, reps: int = _REPS, confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """P(X > Y): the probability that a run of X scores above a run of Y, averaged over tasks.

    Per task t with runs x_1..x_n and y_1..y_m,
    P_t = (1 / nm) sum_i sum_j [x_i > y_j] + 0.5 [x_i = y_j] (Mann-Whitney U / nm), and
    P = mean_t P_t. The interval resamples X's and Y's runs independently within each task.

    Args:
        x: scores of configuration X (see :func:`task_scores`).
        y: scores of configuration Y, on the same tasks.
        reps: bootstrap resamples.
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the resampling generator.

    Returns:
        (P, low, high), each in [0, 1]; P(Y > X) is 1 - P with the interval mirrored.

    Raises:
        ValueError: the configurations cover different tasks, or bad scores (see :func:`task_scores`).
    """
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(seed)
    point = 0.0
    stats = np.zeros(reps)
    pairs = _matched_tasks(x, y)
    for xs, ys in pairs:
        kernel = _pair_scores(xs, ys)
        n, m = kernel.shape
        point += float(kernel.mean())
        # A resample of n runs with replacement is a multinomial count of how often each run is drawn;
        # P_t of the resample is then the count-weighted kernel, w_x^T K w_y / nm: no [reps, n, m] array.
        wx = rng.multinomial(n, np.full(n, 1.0 / n), size=reps)
        wy = rng.multinomial(m, np.full(m, 1.0 / m), size=reps)
        stats += np.einsum("ri,ij,rj->r", wx, kernel, wy) / (n * m)
    stats /= len(pairs)
    low, high = _percentiles(stats, confidence)
    return Estimate(point / len(pairs), float(low), float(high))


def pairwise_improvements(
    scores_by_config: Mapping[str, Scores], reps: int = _REPS, confidence: float = 0.95, seed: int = 0
) -> dict[tuple[str, str], Estimate]:
    """P(A > B) for every pair of configurations, A listed before B.

    Args:
        scores_by_config: configuration name -> its scores, all on the same tasks.
        reps: bootstrap resamples.
        confidence: coverage of each interval.
        seed: seed of every pair's resampling (each pair is a separate, reproducible experiment).

    Returns:
        (A, B) -> P(A > B) with its interval, in the order of ``combinations(configs, 2)``.
    """
    return {
        (a, b): probability_of_improvement(scores_by_config[a], scores_by_config[b], reps, confidence, seed)
        for a, b in combinations(scores_by_config, 2)
    }


@dataclass(frozen=True)
class Verdict:
    """The decision on one pair of configurations.

    Attributes:
        x: the first configuration.
        y: the second configuration.
        estimate: P(x > y) with its interval.
        threshold: how far above 0.5 the interval's lower end had to be (see :func:`decide`).
        winner: the configuration that beats the other, or None when the interval leaves it open.
        line: one human-readable line.
    """

    x: str
    y: str
    estimate: Estimate
    threshold: float
    winner: str | None
    line: str

    @property
    def decided(self) -> bool:
        """True when one configuration beats the other at this number of seeds."""
        return self.winner is not None


def decide(x: str, y: str, estimate: Estimate | Sequence[float], threshold: float = 0.5) -> Verdict:
    """Decide a pair from P(x > y) and its interval.

    x beats y when the interval's lower end is above ``threshold``; y beats x when its upper end is
    below ``1 - threshold`` (P(y > x) = 1 - P(x > y)); otherwise there is no decision. The winner's
    probability is reported, so a line always reads "A beats B: P(A > B) [CI]".

    Args:
        x: name of the first configuration.
        y: name of the second configuration.
        estimate: (P(x > y), low, high).
        threshold: in [0.5, 1); 0.5 decides as soon as the interval excludes a coin flip.

    Returns:
        The verdict, e.g. ``zoo beats cleanrl: P = 0.83 [0.61, 0.97]``.
    """
    if not 0.5 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0.5, 1), got {threshold}")
    est = Estimate(*(float(v) for v in estimate))
    p, low, high = est
    if low > threshold:
        return Verdict(x, y, est, threshold, x, f"{x} beats {y}: P = {p:.2f} [{low:.2f}, {high:.2f}]")
    if high < 1.0 - threshold:
        line = f"{y} beats {x}: P = {1 - p:.2f} [{1 - high:.2f}, {1 - low:.2f}]"
        return Verdict(x, y, est, threshold, y, line)
    line = f"{x} vs {y}: no decision at this number of seeds: P = {p:.2f} [{low:.2f}, {high:.2f}]"
    return Verdict(x, y, est, threshold, None, line)


def verdict(x: str, y: str, estimate: Estimate | Sequence[float], threshold: float = 0.5) -> str:
    """The one-line verdict of :func:`decide`."""
    return decide(x, y, estimate, threshold).line


# --------------------------------------------------------------------------- performance profiles


def tau_grid(scores_by_config: Mapping[str, Scores], points: int = 101) -> np.ndarray:
    """Evenly spaced thresholds from the lowest to the highest score of any run of any configuration.

    Returns:
        [points] float64 (a single value repeated when every score is the same).
    """
    if not scores_by_config:
        raise ValueError("tau_grid needs at least one configuration")
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    pooled = np.concatenate(
        [np.concatenate(list(task_scores(s).values())) for s in scores_by_config.values()]
    )
    return np.linspace(pooled.min(), pooled.max(), points)


@dataclass(frozen=True)
class Profile:
    """A performance profile: the fraction of runs with score > tau, with a pointwise interval.

    Attributes:
        taus: [T] thresholds.
        fraction: [T] fraction of runs above each threshold (averaged over tasks).
        low: [T] lower end of the interval.
        high: [T] upper end of the interval.
    """

    taus: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray


def performance_profile(
    scores: Scores, taus: ArrayLike, reps: int = _REPS, confidence: float = 0.95, seed: int = 0
) -> Profile:
    """The run-score distribution: for each tau, mean over tasks of the fraction of runs scoring > tau.

    Args:
        scores: one configuration's scores (see :func:`task_scores`).
        taus: [T] thresholds.
        reps: bootstrap resamples.
        confidence: coverage of the pointwise interval.
        seed: seed of the resampling generator.

    Returns:
        The profile and its stratified-bootstrap interval at every tau.
    """
    _check_bootstrap(reps, confidence)
    grid = np.asarray(taus, dtype=np.float64).ravel()
    if grid.size == 0:
        raise ValueError("performance_profile needs at least one tau")
    tasks = task_scores(scores)
    rng = np.random.default_rng(seed)
    point = np.zeros(grid.size)
    stats = np.zeros((reps, grid.size))
    for runs in tasks.values():
        above = (runs[:, None] > grid[None, :]).astype(np.float64)  # [n, T]
        n = runs.size
        point += above.mean(axis=0)
        # Multinomial counts of each run in a resample (as in probability_of_improvement).
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=reps)
        stats += counts @ above / n
    point /= len(tasks)
    stats /= len(tasks)
    low, high = _percentiles(stats, confidence)
    return Profile(grid, point, low, high)


# --------------------------------------------------------------------------- curves and budgets


def _curve(curve: Curve) -> np.ndarray:
    c = np.asarray(curve, dtype=np.float64)
    if c.size == 0:
        return np.zeros((0, 2))
    if c.ndim != 2 or c.shape[1] != 2:
        raise ValueError(f"a curve is rows of (env_steps, mean_return), got shape {c.shape}")
    if np.any(np.diff(c[:, 0]) < 0):
        raise ValueError("a curve's env_steps must not decrease")
    return c


def value_at_budget(curve: Curve, steps: float) -> float | None:
    """A seed's evaluation return at a step budget: its last evaluation at or before ``steps``.

    Args:
        curve: rows (env_steps, mean_return) in increasing steps.
        steps: the budget point.

    Returns:
        The return, or None when the seed had no evaluation by then.
    """
    c = _curve(curve)
    k = int(np.searchsorted(c[:, 0], steps, side="right"))
    return None if k == 0 else float(c[k - 1, 1])


@dataclass(frozen=True)
class BudgetPoint:
    """IQM of the evaluation return at one fraction of the step budget.

    Attributes:
        fraction: the fraction of the budget.
        steps: the budget point in env steps (``round(fraction * budget)``).
        seeds: how many seeds had an evaluation by then.
        iqm: IQM over those seeds (None when none had).
        low: lower end of its bootstrap interval over seeds.
        high: upper end of its bootstrap interval over seeds.
    """

    fraction: float
    steps: int
    seeds: int
    iqm: float | None
    low: float | None
    high: float | None


def sample_efficiency(
    curves: Sequence[Curve],
    budget: float,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    reps: int = _REPS,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[BudgetPoint]:
    """IQM of the evaluation return over seeds at fixed fractions of the step budget, with CIs.

    Each seed contributes its last evaluation at or before the budget point. Pass as ``budget`` the
    steps a finished trial really reaches (whole rollouts: ``n_iterations * rollout_size``), so the
    100% point is every seed's final evaluation.

    Args:
        curves: one configuration's curves, one per seed (rows (env_steps, mean_return)).
        budget: env steps of the whole budget, > 0.
        fractions: budget fractions in (0, 1].
        reps: bootstrap resamples.
        confidence: coverage of each interval.
        seed: seed of the resampling generator (the same for every fraction).

    Returns:
        One point per fraction, in the given order.
    """
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    bad = [f for f in fractions if not 0.0 < f <= 1.0]
    if bad:
        raise ValueError(f"budget fractions must be in (0, 1], got {bad}")
    _check_bootstrap(reps, confidence)
    points = []
    for f in fractions:
        steps = int(round(f * budget))
        values = [v for c in curves if (v := value_at_budget(c, steps)) is not None]
        if not values:
            points.append(BudgetPoint(float(f), steps, 0, None, None, None))
            continue
        est = iqm_with_ci(np.asarray(values), reps, confidence, seed)
        points.append(BudgetPoint(float(f), steps, len(values), est.value, est.low, est.high))
    return points


def step_grid(curves_by_config: Mapping[str, Sequence[Curve]], points: int = 100) -> np.ndarray:
    """A common grid of env steps for learning curves: from the earliest to the latest evaluation.

    Returns:
        [points] float64 env steps.

    Raises:
        ValueError: no configuration, or no evaluation in any curve.
    """
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    steps = [c[:, 0] for cs in curves_by_config.values() for c in map(_curve, cs) if len(c)]
    if not steps:
        raise ValueError("no configuration has an evaluation to draw")
    all_steps = np.concatenate(steps)
    return np.linspace(all_steps.min(), all_steps.max(), points)


def interpolate_curves(curves: Sequence[Curve], grid: ArrayLike) -> np.ndarray:
    """Each seed's curve linearly interpolated on ``grid``; NaN outside the steps it evaluated.

    NaN rather than extrapolation: a seed that stopped early (or started evaluating late) has no
    evidence there, and holding its last value would draw a plateau it never showed.

    Args:
        curves: one curve per seed.
        grid: [G] env steps.

    Returns:
        [seeds, G] float64.
    """
    g = np.asarray(grid, dtype=np.float64).ravel()
    out = np.full((len(curves), g.size), np.nan)
    for i, curve in enumerate(curves):
        c = _curve(curve)
        if len(c) == 0:
            continue
        inside = (g >= c[0, 0]) & (g <= c[-1, 0])
        out[i, inside] = np.interp(g[inside], c[:, 0], c[:, 1])
    return out


def _nan_iqm(a: np.ndarray) -> np.ndarray:
    """IQM over the last axis ignoring NaN (NaN where a slice has no value): [..., n] -> [...]."""
    s = np.sort(a, axis=-1)  # NaN sort last
    k = np.sum(~np.isnan(s), axis=-1)
    low, high = k // 4, k - k // 4
    # Sums of the kept middle from a cumulative sum with a leading zero: vectorised over slices of
    # different valid counts.
    csum = np.concatenate([np.zeros((*s.shape[:-1], 1)), np.cumsum(np.nan_to_num(s), axis=-1)], axis=-1)
    kept = (
        np.take_along_axis(csum, high[..., None], -1)[..., 0]
        - np.take_along_axis(csum, low[..., None], -1)[..., 0]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        result: np.ndarray = np.where(k > 0, kept / np.maximum(high - low, 1), np.nan)
    return result


@dataclass(frozen=True)
class Band:
    """A learning curve: IQM over seeds at each grid step, with a pointwise bootstrap interval.

    Attributes:
        steps: [G] env steps.
        iqm: [G] IQM over the seeds evaluated there (NaN where none is).
        low: [G] lower end of the interval.
        high: [G] upper end of the interval.
        seeds: [G] how many seeds cover each step.
    """

    steps: np.ndarray
    iqm: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: np.ndarray


def iqm_band(
    curves: Sequence[Curve], grid: ArrayLike, reps: int = _REPS, confidence: float = 0.95, seed: int = 0
) -> Band:
    """IQM learning curve over seeds with a bootstrap band.

    Whole seeds are resampled (not each step independently), so the band reflects seed-to-seed
    variation of entire runs.

    Args:
        curves: one configuration's curves, one per seed.
        grid: [G] env steps (e.g. from :func:`step_grid`).
        reps: bootstrap resamples.
        confidence: coverage of the band.
        seed: seed of the resampling generator.

    Returns:
        The band on ``grid``.
    """
    _check_bootstrap(reps, confidence)
    if len(curves) == 0:
        raise ValueError("iqm_band needs at least one curve")
    values = interpolate_curves(curves, grid)  # [S, G]
    n = values.shape[0]
    covered = np.sum(~np.isnan(values), axis=0)
    point = _nan_iqm(values.T)
    rng = np.random.default_rng(seed)
    resampled = values[rng.integers(0, n, size=(reps, n))]  # [R, S, G]
    stats = _nan_iqm(np.swapaxes(resampled, 1, 2))  # [R, G]
    low = np.full(values.shape[1], np.nan)
    high = np.full(values.shape[1], np.nan)
    alpha = (1.0 - confidence) / 2.0
    for g in np.flatnonzero(covered):
        # A resample can miss every seed covering a step; such resamples carry no value there.
        col = stats[:, g][~np.isnan(stats[:, g])]
        if col.size:
            low[g], high[g] = np.quantile(col, [alpha, 1.0 - alpha])
    return Band(np.asarray(grid, dtype=np.float64).ravel(), point, low, high, covered)
