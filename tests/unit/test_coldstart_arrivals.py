"""The synthetic generator reproduces the published Azure Functions 2019 statistics it is built from."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest

from ftg_common.envs.coldstart.arrivals import (
    BURSTY,
    DAY,
    POISSON,
    TIMER,
    WEEK,
    ArrivalParams,
    FunctionProfiles,
    arrival_times,
    burr_quantile,
    lognormal_rate_fit,
    rate_multiplier,
    sample_profiles,
    service_times,
)
from ftg_common.envs.coldstart.trace import synthetic_trace

FLAT = ArrivalParams(flat_share=1.0)  # no diurnal/weekly modulation: a stationary process


@pytest.fixture(scope="module")
def population() -> FunctionProfiles:
    return sample_profiles(40_000, np.random.default_rng(2019))


def test_rate_fit_passes_through_both_published_quantiles() -> None:
    mu, sigma = lognormal_rate_fit(0.45, 0.81)
    # Solved by hand: s = log10(60) / (z(0.81) - z(0.45)) = 1.77815 / 1.00361, mu = -z(0.81) * s.
    assert sigma == pytest.approx(1.7718, abs=1e-3) and mu == pytest.approx(-1.5555, abs=1e-3)
    assert NormalDist(mu, sigma).cdf(np.log10(1 / 60)) == pytest.approx(0.45)
    assert NormalDist(mu, sigma).cdf(0.0) == pytest.approx(0.81)


def test_population_rates_span_orders_of_magnitude_with_the_published_fractions(
    population: FunctionProfiles,
) -> None:
    rate = population.rate_per_min
    assert np.mean(rate <= 1 / 60) == pytest.approx(0.45, abs=0.01)
    assert np.mean(rate <= 1.0) == pytest.approx(0.81, abs=0.01)
    assert np.log10(rate.max() / rate.min()) > 6


def test_population_families_have_the_published_shares_and_cvs(population: FunctionProfiles) -> None:
    fam, cv = population.family, population.cv
    assert np.mean(fam == BURSTY) == pytest.approx(0.40, abs=0.01)
    assert np.mean(fam == TIMER) == pytest.approx(0.15, abs=0.01)
    assert np.all(cv[fam == TIMER] == 0) and np.all(cv[fam == POISSON] == 1) and np.all(cv[fam == BURSTY] > 1)


def test_service_time_means_are_lognormal_with_the_published_log_moments(
    population: FunctionProfiles,
) -> None:
    p = ArrivalParams()
    mean_s = population.service_median_s * np.exp(0.5 * population.service_sigma**2)
    inside = (mean_s > p.service_min_s * 1.01) & (mean_s < p.service_max_s * 0.99)
    logs = np.log(mean_s)
    # The median is untouched by the clipping of the far tails; so is the interquartile range.
    assert np.median(logs) == pytest.approx(-0.38, abs=0.05)
    q25, q75 = np.percentile(logs, [25, 75])
    assert (q75 - q25) / (2 * NormalDist().inv_cdf(0.75)) == pytest.approx(2.36, abs=0.05)
    assert inside.mean() > 0.98


def test_memory_follows_the_burr_fit(population: FunctionProfiles) -> None:
    # Burr XII median, by hand: 107.083 * (2**(1/0.221) - 1)**(1/11.652) = 139.6 MB.
    expected = 107.083 * (2 ** (1 / 0.221) - 1) ** (1 / 11.652)
    assert float(burr_quantile(np.array(0.5), 11.652, 0.221, 107.083)) == pytest.approx(expected)
    assert expected == pytest.approx(139.6, abs=0.1)
    assert np.median(population.memory_mb) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize(("family", "cv"), [(TIMER, 0.0), (POISSON, 1.0), (BURSTY, 2.5)])
def test_inter_arrival_cv_of_each_family(family: int, cv: float) -> None:
    a = arrival_times(20.0, family, cv, 0.0, 3 * DAY, np.random.default_rng(5), FLAT)
    gaps = np.diff(a)
    assert a.size / (3 * 1440) == pytest.approx(20.0, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, abs=0.08 * max(cv, 1.0))


def test_the_rate_multiplier_has_mean_one_a_flat_floor_a_daily_peak_and_quieter_weekends() -> None:
    t = np.arange(0.0, WEEK, 60.0)
    m = rate_multiplier(t)
    assert m.mean() == pytest.approx(1.0, abs=1e-9)
    assert m.min() == pytest.approx(0.5, abs=1e-6)  # the flat share b: the daily cosine reaches 0
    monday = m[: 24 * 60]
    assert np.argmax(monday) == 14 * 60  # 14:00
    assert m[5 * 24 * 60 + 14 * 60] < monday[14 * 60]  # Saturday's peak is lower than Monday's


def test_diurnal_pattern_shows_in_the_arrivals() -> None:
    rng = np.random.default_rng(9)
    peak = arrival_times(30.0, POISSON, 1.0, 13.5 * 3600, 3600.0, rng).size
    trough = arrival_times(30.0, POISSON, 1.0, 1.5 * 3600, 3600.0, rng).size
    # Expected counts: 1800 * m(t) integrated; m(14:00) = 0.5 + 0.5 * 2 / (6.2/7) = 1.629, m(02:00) = 0.5.
    assert peak == pytest.approx(1800 * 1.62, rel=0.08)
    assert trough == pytest.approx(1800 * 0.5, rel=0.12)


def test_arrivals_are_sorted_within_the_window_and_reproducible() -> None:
    a = arrival_times(5.0, BURSTY, 3.0, 1234.0, 1000.0, np.random.default_rng(1))
    b = arrival_times(5.0, BURSTY, 3.0, 1234.0, 1000.0, np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert np.all(np.diff(a) >= 0) and a.min() >= 0 and a.max() < 1000.0


def test_service_times_are_lognormal_around_the_median() -> None:
    s = service_times(2.0, 0.5, 50_000, np.random.default_rng(3))
    assert np.median(s) == pytest.approx(2.0, rel=0.02)
    assert np.log(s).std() == pytest.approx(0.5, rel=0.02)


def test_a_synthetic_trace_holds_every_function() -> None:
    rng = np.random.default_rng(4)
    profiles = sample_profiles(5, rng)
    trace = synthetic_trace(profiles, 0.0, 3600.0, rng)
    assert trace.n_functions == 5 and trace.horizon_s == 3600.0
    assert all(a.size == s.size for a, s in zip(trace.arrivals, trace.services, strict=True))


def test_every_parameter_is_recorded_as_json() -> None:
    record = json.loads(json.dumps(ArrivalParams().as_dict()))
    assert record["memory_burr_c"] == 11.652 and record["service_log_mean"] == -0.38
    assert record["frac_bursty"] == 0.40 and record["log10_rate_sigma"] == pytest.approx(1.7718, abs=1e-3)
    profiles = sample_profiles(3, np.random.default_rng(0)).as_dict()
    assert set(profiles) == {"rate_per_min", "family", "cv", "service_median_s", "service_sigma", "memory_mb"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"flat_share": 1.5}, "flat_share"),
        ({"frac_bursty": 0.9}, "frac_timer"),
        ({"bursty_cv_min": 0.5}, "bursty_cv_min"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"ArrivalParams.{field}"):
        ArrivalParams(**kwargs)
    with pytest.raises(ValueError, match="rate_per_min"):
        arrival_times(0.0, POISSON, 1.0, 0.0, 60.0, np.random.default_rng(0))
