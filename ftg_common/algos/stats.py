"""Summary statistics for training diagnostics and A/B comparisons (numpy only).

IQM and percentile-bootstrap intervals follow the recommendations of Agarwal et al. (2021),
"Deep RL at the Edge of the Statistical Precipice" (the rliable library).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["bootstrap_ci", "explained_variance", "iqm"]


def _iqm_cuts(n: int) -> tuple[int, int]:
    # Same cut as scipy.stats.trim_mean(x, 0.25): drop floor(n/4) from each end, so the kept
    # indices of the sorted sample are [floor(n/4), n - floor(n/4)) = [floor(n/4), ceil(3n/4)).
    low = n // 4
    return low, n - low


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the sorted, flattened sample.

    For n values sorted ascending, averages the elements with index in [floor(n/4), n - floor(n/4)).
    This equals `scipy.stats.trim_mean(x, 0.25)`, the definition rliable uses. For n < 4 nothing is
    trimmed and the IQM is the plain mean.

    Args:
        x: any shape, flattened; must be non-empty.

    Returns:
        The IQM as a Python float.
    """
    a = np.sort(np.asarray(x, dtype=np.float64).ravel())
    if a.size == 0:
        raise ValueError("iqm of an empty sample is undefined")
    low, high = _iqm_cuts(a.size)
    return float(a[low:high].mean())


def _iqm_rows(a: np.ndarray) -> np.ndarray:
    """IQM of each row of a [R, n] array: [R]."""
    low, high = _iqm_cuts(a.shape[1])
    rows: np.ndarray = np.sort(a, axis=1)[:, low:high].mean(axis=1)
    return rows


def bootstrap_ci(
    samples: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic` over a 1-D sample.

    Each resample draws n values with replacement; the interval is the (1-c)/2 and (1+c)/2
    quantiles (numpy's default linear interpolation) of the resampled statistics. The result is a
    pure function of (samples, statistic, n_resamples, confidence, seed).

    Args:
        samples: [n] (flattened), e.g. the final return of each seed; must be non-empty.
        statistic: maps a [n] sample to a scalar.
        n_resamples: number of bootstrap resamples.
        confidence: coverage in (0, 1).
        seed: seed of the resampling generator.

    Returns:
        (low, high) as Python floats.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one sample")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(seed)
    resampled = x[rng.integers(0, x.size, size=(n_resamples, x.size))]
    # IQM and mean vectorise over rows; any other statistic is applied one resample at a time.
    if statistic is iqm:
        stats = _iqm_rows(resampled)
    elif statistic is np.mean:
        stats = resampled.mean(axis=1)
    else:
        stats = np.array([float(statistic(row)) for row in resampled])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def explained_variance(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    """1 - Var[y_true - y_pred] / Var[y_true], computed over all elements.

    1 is a perfect critic, 0 is no better than predicting the mean, negative is worse than that.
    Returns nan when y_true is constant, where the ratio is undefined.

    Args:
        y_pred: predicted values, any shape.
        y_true: targets (e.g. GAE returns), same shape as y_pred.
    """
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.float64)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"shape mismatch: y_pred {y_pred.shape} vs y_true {y_true.shape}")
    var_y = np.var(y_true)
    if var_y == 0:
        return float("nan")
    return float(1.0 - np.var(y_true - y_pred) / var_y)
