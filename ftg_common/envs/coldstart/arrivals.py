"""Synthetic invocation traces with the statistics published for Azure Functions in 2019.

Shahrad et al., "Serverless in the Wild" (USENIX ATC'20), characterise a day-long trace of Azure
Functions. The generator reproduces the figures the cold-start literature relies on:

* **Rates over many orders of magnitude.** ``log10`` of an app's mean rate (invocations per minute) is
  normal, with its mean and spread solved so that 45% of apps are invoked at most once an hour and
  81% at most once a minute (:func:`lognormal_rate_fit`).
* **Inter-arrival families.** Timer-like apps (CV 0, a fixed period with a random phase), Poisson
  apps (CV 1) and bursty apps (CV > 1, about 40% of apps): gamma renewal processes whose shape is
  ``1 / CV**2``, so the coefficient of variation is exact by construction.
* **Diurnal + weekly pattern on a flat baseline.** The rate of every non-timer app is multiplied by
  ``m(t) = b + (1 - b) * p(t)`` where ``b`` (0.5) is the flat share and ``p`` a day-and-week shape of
  mean 1; arrivals are drawn in operational time (unit mean rate) and mapped through the inverse of
  the cumulative multiplier, which keeps each family's CV in operational time.
* **Service times** lognormal per invocation around a per-function mean; the per-function mean is
  itself lognormal with log-mean -0.38 and sigma 2.36 (seconds), the published fit.
* **Memory** per app from the published Burr XII fit (c 11.652, k 0.221, lambda 107.083 MB).

Everything is numpy only. :class:`ArrivalParams` holds every parameter and :meth:`ArrivalParams.as_dict`
is what a run records next to its results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = [
    "BURSTY",
    "FAMILIES",
    "POISSON",
    "TIMER",
    "ArrivalParams",
    "FunctionProfiles",
    "arrival_times",
    "burr_quantile",
    "lognormal_rate_fit",
    "rate_multiplier",
    "sample_profiles",
    "service_times",
]

TIMER, POISSON, BURSTY = 0, 1, 2
FAMILIES = ("timer", "poisson", "bursty")
MINUTE, HOUR, DAY, WEEK = 60.0, 3600.0, 86_400.0, 604_800.0


@dataclass(frozen=True)
class ArrivalParams:
    """Every parameter of the synthetic generator (defaults: the published Azure 2019 figures).

    Attributes:
        frac_at_most_hourly: share of apps whose mean rate is at most 1 per hour (0.45).
        frac_at_most_per_minute: share of apps whose mean rate is at most 1 per minute (0.81).
        rate_min_per_min: rates are clipped below to this (invocations per minute).
        rate_max_per_min: rates are clipped above to this (invocations per minute).
        frac_timer: share of apps with periodic (CV 0) arrivals.
        frac_bursty: share of apps with CV > 1 (0.40).
        bursty_cv_min: smallest CV of a bursty app (CV is log-uniform between min and max).
        bursty_cv_max: largest CV of a bursty app.
        flat_share: ``b``, the flat share of the rate of a non-timer app (0.5).
        diurnal_amplitude: relative amplitude of the daily cosine of ``p`` (1.0: peak twice the mean).
        diurnal_peak_hour: hour of the daily peak (local time of the trace).
        weekend_factor: ``p`` on Saturday and Sunday relative to a weekday before renormalising.
        service_log_mean: log-mean of the per-function mean service time, log-seconds (-0.38).
        service_log_sigma: log-sigma of the per-function mean service time (2.36).
        service_within_sigma: log-sigma of one function's invocations around its own median.
        service_min_s: service times are clipped below to this (seconds).
        service_max_s: service times are clipped above to this (seconds; 600: a 10-minute timeout).
        memory_burr_c: Burr XII ``c`` of the memory of an app (11.652).
        memory_burr_k: Burr XII ``k`` (0.221).
        memory_burr_lambda_mb: Burr XII scale, MB (107.083).
        memory_min_mb: memory is clipped below to this (MB).
        memory_max_mb: memory is clipped above to this (MB).
    """

    frac_at_most_hourly: float = 0.45
    frac_at_most_per_minute: float = 0.81
    rate_min_per_min: float = 1.0 / (7 * 24 * 60)
    rate_max_per_min: float = 10_000.0
    frac_timer: float = 0.15
    frac_bursty: float = 0.40
    bursty_cv_min: float = 1.5
    bursty_cv_max: float = 6.0
    flat_share: float = 0.5
    diurnal_amplitude: float = 1.0
    diurnal_peak_hour: float = 14.0
    weekend_factor: float = 0.6
    service_log_mean: float = -0.38
    service_log_sigma: float = 2.36
    service_within_sigma: float = 0.5
    service_min_s: float = 0.001
    service_max_s: float = 600.0
    memory_burr_c: float = 11.652
    memory_burr_k: float = 0.221
    memory_burr_lambda_mb: float = 107.083
    memory_min_mb: float = 32.0
    memory_max_mb: float = 4096.0

    def __post_init__(self) -> None:
        checks = {
            "frac_at_most_hourly": 0 < self.frac_at_most_hourly < self.frac_at_most_per_minute,
            "frac_at_most_per_minute": self.frac_at_most_per_minute < 1,
            "rate_min_per_min": 0 < self.rate_min_per_min < self.rate_max_per_min,
            "frac_timer": self.frac_timer >= 0 and self.frac_timer + self.frac_bursty <= 1,
            "frac_bursty": 0 <= self.frac_bursty <= 1,
            "bursty_cv_min": 1 < self.bursty_cv_min <= self.bursty_cv_max,
            "flat_share": 0 <= self.flat_share <= 1,
            "diurnal_amplitude": 0 <= self.diurnal_amplitude <= 1,
            "weekend_factor": self.weekend_factor > 0,
            "service_log_sigma": self.service_log_sigma >= 0 and self.service_within_sigma >= 0,
            "service_min_s": 0 < self.service_min_s < self.service_max_s,
            "memory_burr_c": min(self.memory_burr_c, self.memory_burr_k, self.memory_burr_lambda_mb) > 0,
            "memory_min_mb": 0 < self.memory_min_mb < self.memory_max_mb,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"ArrivalParams.{name} is out of range: {getattr(self, name)!r}")

    def as_dict(self) -> dict[str, Any]:
        """Every parameter, plus the fitted rate distribution, as JSON-ready values (recorded with a run)."""
        mu, sigma = lognormal_rate_fit(self.frac_at_most_hourly, self.frac_at_most_per_minute)
        return {**asdict(self), "log10_rate_mu": mu, "log10_rate_sigma": sigma}


@dataclass(frozen=True)
class FunctionProfiles:
    """F functions' arrival and resource parameters (arrays of shape [F]).

    Attributes:
        rate_per_min: mean invocation rate, per minute.
        family: TIMER, POISSON or BURSTY.
        cv: coefficient of variation of the inter-arrival times in operational time.
        service_median_s: median of the function's service time, seconds.
        service_sigma: log-sigma of its service times.
        memory_mb: memory of one replica, MB.
    """

    rate_per_min: np.ndarray
    family: np.ndarray
    cv: np.ndarray
    service_median_s: np.ndarray
    service_sigma: np.ndarray
    memory_mb: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.rate_per_min)
        for name in ("family", "cv", "service_median_s", "service_sigma", "memory_mb"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FunctionProfiles.{name} has {len(getattr(self, name))} entries, not {n}")
        if n and (np.any(self.rate_per_min <= 0) or np.any(self.memory_mb <= 0)):
            raise ValueError("FunctionProfiles.rate_per_min and memory_mb must be positive")

    def __len__(self) -> int:
        return len(self.rate_per_min)

    def subset(self, index: np.ndarray) -> FunctionProfiles:
        """The profiles at ``index`` (an index or boolean array)."""
        return FunctionProfiles(*(np.asarray(getattr(self, k))[index] for k in self.__dataclass_fields__))

    def as_dict(self) -> dict[str, list[float]]:
        """JSON-ready lists (recorded with a run)."""
        return {k: np.asarray(getattr(self, k)).tolist() for k in self.__dataclass_fields__}


def lognormal_rate_fit(frac_hourly: float, frac_minute: float) -> tuple[float, float]:
    """Mean and sigma of ``log10(rate per minute)`` through two published quantiles.

    Solves ``Phi((log10(1/60) - mu) / s) = frac_hourly`` and ``Phi((0 - mu) / s) = frac_minute``.
    For 0.45 and 0.81: mu = -1.555, s = 1.772 (a median app is invoked about once every 36 minutes).
    """
    z_h, z_m = NormalDist().inv_cdf(frac_hourly), NormalDist().inv_cdf(frac_minute)
    x_h = float(np.log10(1.0 / 60.0))
    sigma = -x_h / (z_m - z_h)
    return -z_m * sigma, sigma


def burr_quantile(q: np.ndarray, c: float, k: float, lam: float) -> np.ndarray:
    """Burr XII quantile: ``lam * ((1 - q)**(-1/k) - 1)**(1/c)`` for q in [0, 1) (any shape)."""
    return lam * ((1.0 - np.asarray(q, dtype=np.float64)) ** (-1.0 / k) - 1.0) ** (1.0 / c)


def sample_profiles(
    n: int, rng: np.random.Generator, params: ArrivalParams | None = None
) -> FunctionProfiles:
    """Draw ``n`` functions from the published population (see the module docstring)."""
    p = params or ArrivalParams()
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    mu, sigma = lognormal_rate_fit(p.frac_at_most_hourly, p.frac_at_most_per_minute)
    rate = np.clip(10.0 ** rng.normal(mu, sigma, n), p.rate_min_per_min, p.rate_max_per_min)
    u = rng.random(n)
    family = np.where(u < p.frac_timer, TIMER, np.where(u < p.frac_timer + p.frac_bursty, BURSTY, POISSON))
    log_cv = rng.uniform(np.log(p.bursty_cv_min), np.log(p.bursty_cv_max), n)
    cv = np.select([family == TIMER, family == BURSTY], [0.0, np.exp(log_cv)], 1.0)
    mean_s = np.exp(rng.normal(p.service_log_mean, p.service_log_sigma, n))
    # The published fit is of each function's *mean*; its invocations spread around a median such
    # that their mean is that value.
    median_s = np.clip(mean_s * np.exp(-0.5 * p.service_within_sigma**2), p.service_min_s, p.service_max_s)
    memory = burr_quantile(rng.random(n), p.memory_burr_c, p.memory_burr_k, p.memory_burr_lambda_mb)
    return FunctionProfiles(
        rate_per_min=rate,
        family=family.astype(np.int64),
        cv=cv,
        service_median_s=median_s,
        service_sigma=np.full(n, p.service_within_sigma),
        memory_mb=np.clip(memory, p.memory_min_mb, p.memory_max_mb),
    )


def rate_multiplier(t: np.ndarray, params: ArrivalParams | None = None) -> np.ndarray:
    """``m(t) = b + (1 - b) * p(t)``: the rate multiplier at absolute times ``t`` (seconds, any shape).

    ``t = 0`` is Monday 00:00. ``p`` is a daily cosine peaking at ``diurnal_peak_hour`` times a weekend
    factor, normalised to mean 1 over a week, so ``m`` has mean 1 over a week; with amplitude 1 its
    floor is the flat share ``b``.
    """
    p = params or ArrivalParams()
    t = np.asarray(t, dtype=np.float64)
    daily = 1.0 + p.diurnal_amplitude * np.cos(2.0 * np.pi * (t / DAY - p.diurnal_peak_hour / 24.0))
    weekend = (t % WEEK) >= 5 * DAY
    weekly = np.where(weekend, p.weekend_factor, 1.0) / ((5.0 + 2.0 * p.weekend_factor) / 7.0)
    return p.flat_share + (1.0 - p.flat_share) * daily * weekly


def _gaps(n: int, family: int, cv: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` inter-event gaps of a unit-rate renewal process of the given family (operational time)."""
    if family == TIMER:
        return np.ones(n)
    if family == POISSON:
        return rng.exponential(1.0, n)
    shape = 1.0 / (cv * cv)
    return rng.gamma(shape, 1.0 / shape, n)


def arrival_times(
    rate_per_min: float,
    family: int,
    cv: float,
    start_s: float,
    duration_s: float,
    rng: np.random.Generator,
    params: ArrivalParams | None = None,
    resolution_s: float = 60.0,
) -> np.ndarray:
    """Arrival times in ``[start_s, start_s + duration_s)``, relative to ``start_s`` (seconds, sorted [N]).

    Non-timer families follow the diurnal/weekly multiplier (:func:`rate_multiplier`), through the
    inverse of its integral sampled every ``resolution_s``; timers keep their period.

    Raises:
        ValueError: a non-positive rate or duration, or an unknown family (naming the argument).
    """
    if rate_per_min <= 0:
        raise ValueError(f"rate_per_min must be positive, got {rate_per_min}")
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if family not in (TIMER, POISSON, BURSTY):
        raise ValueError(f"family must be one of {FAMILIES} (0, 1, 2), got {family}")
    rate_s = rate_per_min / MINUTE
    grid = np.append(np.arange(0.0, duration_s, resolution_s), duration_s)
    if family == TIMER:
        cumulative = grid * rate_s
    else:
        # Trapezoids of the multiplier: cumulative[i] is the expected number of arrivals by grid[i].
        m = rate_multiplier(start_s + grid, params) * rate_s
        cumulative = np.concatenate(([0.0], np.cumsum(0.5 * (m[1:] + m[:-1]) * np.diff(grid))))
    total = float(cumulative[-1])
    # Enough unit-rate events to pass the end with overwhelming probability; topped up if not.
    want = int(total + 10.0 * np.sqrt(total + 1.0) * max(cv, 1.0) + 10)
    gaps = _gaps(want, family, cv, rng)
    # A random phase: the trace does not begin on an arrival (for a timer, a uniform offset in its
    # period; for the others the first gap scaled by a uniform fraction, near a forward recurrence time).
    gaps[0] *= rng.random()
    ops = np.cumsum(gaps)
    while ops[-1] < total:
        ops = np.concatenate((ops, ops[-1] + np.cumsum(_gaps(want, family, cv, rng))))
    times: np.ndarray = np.interp(ops[ops < total], cumulative, grid)
    # The end of the grid is duration_s itself; the float mapping must not reach it.
    return times[times < duration_s]


def service_times(
    median_s: float, sigma: float, n: int, rng: np.random.Generator, params: ArrivalParams | None = None
) -> np.ndarray:
    """``n`` lognormal service times (seconds) around ``median_s``, clipped to the params' bounds."""
    p = params or ArrivalParams()
    return np.clip(median_s * np.exp(sigma * rng.standard_normal(n)), p.service_min_s, p.service_max_s)
