"""An invocation trace: per function, sorted arrival times and the service time of each invocation.

The simulator replays a :class:`Trace`; where it comes from (the synthetic generator or the Azure
per-minute counts) is decided here, numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftg_common.envs.coldstart.arrivals import ArrivalParams, FunctionProfiles, arrival_times, service_times

__all__ = ["Trace", "arrivals_from_counts", "synthetic_trace"]


@dataclass(frozen=True)
class Trace:
    """F functions' invocations over ``[0, horizon_s)``.

    Attributes:
        arrivals: per function, arrival times in seconds from the trace start, sorted ([N_f] each).
        services: per function, the service time of each of those invocations, seconds ([N_f] each).
        horizon_s: the trace's length, seconds.
        start_s: absolute time of the trace start (seconds from Monday 00:00), for the record.
    """

    arrivals: tuple[np.ndarray, ...]
    services: tuple[np.ndarray, ...]
    horizon_s: float
    start_s: float = 0.0

    def __post_init__(self) -> None:
        if len(self.arrivals) != len(self.services):
            raise ValueError(
                f"Trace.services has {len(self.services)} functions, arrivals {len(self.arrivals)}"
            )
        if self.horizon_s <= 0:
            raise ValueError(f"Trace.horizon_s must be positive, got {self.horizon_s}")
        for f, (a, s) in enumerate(zip(self.arrivals, self.services, strict=True)):
            if a.shape != s.shape or a.ndim != 1:
                raise ValueError(f"Trace function {f}: arrivals {a.shape} and services {s.shape} differ")
            if a.size and (a[0] < 0 or a[-1] >= self.horizon_s or np.any(np.diff(a) < 0)):
                raise ValueError(f"Trace function {f}: arrivals must be sorted within [0, horizon_s)")
            if s.size and np.any(s <= 0):
                raise ValueError(f"Trace function {f}: services must be positive")

    @property
    def n_functions(self) -> int:
        """F."""
        return len(self.arrivals)

    def counts(self) -> np.ndarray:
        """Invocations per function, [F] int64."""
        return np.array([a.size for a in self.arrivals], dtype=np.int64)


def synthetic_trace(
    profiles: FunctionProfiles,
    start_s: float,
    duration_s: float,
    rng: np.random.Generator,
    params: ArrivalParams | None = None,
) -> Trace:
    """Draw every function's arrivals and service times over ``[start_s, start_s + duration_s)``."""
    arrivals, services = [], []
    for f in range(len(profiles)):
        a = arrival_times(
            float(profiles.rate_per_min[f]),
            int(profiles.family[f]),
            float(profiles.cv[f]),
            start_s,
            duration_s,
            rng,
            params,
        )
        arrivals.append(a)
        services.append(
            service_times(
                float(profiles.service_median_s[f]), float(profiles.service_sigma[f]), a.size, rng, params
            )
        )
    return Trace(tuple(arrivals), tuple(services), float(duration_s), float(start_s))


def arrivals_from_counts(counts: np.ndarray, rng: np.random.Generator, minute_s: float = 60.0) -> np.ndarray:
    """Arrival times from per-minute counts [M]: each minute's arrivals uniform within it (sorted [sum])."""
    counts = np.asarray(counts)
    if counts.ndim != 1 or np.any(counts < 0):
        raise ValueError("counts must be a 1-D array of non-negative per-minute invocation counts")
    minute = np.repeat(np.arange(counts.size, dtype=np.float64), counts.astype(np.int64))
    return np.sort((minute + rng.random(minute.size)) * minute_s)
