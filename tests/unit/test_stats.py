"""IQM, percentile bootstrap and explained variance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import trim_mean

from ftg_common.algos.stats import bootstrap_ci, explained_variance, iqm


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 20, 101, 1000])
def test_iqm_matches_scipy_trim_mean(n: int) -> None:
    x = np.random.default_rng(n).normal(size=n) * 10
    assert iqm(x) == pytest.approx(trim_mean(x, 0.25), rel=1e-12, abs=1e-12)


def test_iqm_hand_values() -> None:
    # n=8: drop 2 from each end of 1..8 -> mean(3, 4, 5, 6) = 4.5
    assert iqm(np.arange(1, 9)) == 4.5
    # n=5: drop floor(5/4)=1 from each end of [0, 1, 2, 3, 100] -> mean(1, 2, 3) = 2
    assert iqm([100.0, 2.0, 0.0, 3.0, 1.0]) == 2.0
    # 2-D input is flattened
    assert iqm(np.arange(1, 9).reshape(2, 4)) == 4.5
    with pytest.raises(ValueError):
        iqm([])


def test_bootstrap_ci_deterministic_per_seed() -> None:
    x = np.random.default_rng(0).normal(size=15)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


@pytest.mark.parametrize("statistic", [iqm, np.mean, np.median])
def test_bootstrap_ci_contains_statistic(statistic) -> None:
    x = np.random.default_rng(1).normal(loc=5.0, size=30)
    low, high = bootstrap_ci(x, statistic=statistic)
    assert low < float(statistic(x)) < high


def test_bootstrap_vectorised_iqm_matches_generic_path() -> None:
    x = np.random.default_rng(2).normal(size=12)
    fast = bootstrap_ci(x, statistic=iqm, n_resamples=500, seed=9)
    slow = bootstrap_ci(x, statistic=lambda s: iqm(s), n_resamples=500, seed=9)
    assert fast == pytest.approx(slow, rel=1e-12)


def test_bootstrap_ci_narrows_with_more_data() -> None:
    rng = np.random.default_rng(5)
    small = rng.normal(size=10)
    large = rng.normal(size=1000)
    w_small = np.subtract(*bootstrap_ci(small)[::-1])
    w_large = np.subtract(*bootstrap_ci(large)[::-1])
    assert 0 < w_large < w_small / 3


def test_bootstrap_ci_edge_cases() -> None:
    assert bootstrap_ci([4.0]) == (4.0, 4.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], confidence=1.0)


def test_explained_variance_hand_values() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == 1.0
    # predicting the mean explains nothing
    assert explained_variance(np.full(4, 2.5), y) == 0.0
    # residual [-1, 0, -1, 0] has variance 0.25; Var[y] = 1.25 -> 1 - 0.25/1.25 = 0.8
    assert explained_variance(np.array([2.0, 2.0, 4.0, 4.0]), y) == pytest.approx(0.8)
    # predicting -y leaves residual 2y with variance 4*1.25 -> 1 - 5/1.25 = -3
    assert explained_variance(-y, y) == pytest.approx(-3.0)
    assert math.isnan(explained_variance(y, np.ones(4)))
    with pytest.raises(ValueError):
        explained_variance(y, y[:3])
