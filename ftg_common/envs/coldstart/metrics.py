"""What a policy is judged on, accumulated over the steps of a simulation.

:class:`EpisodeMetrics` sums the simulator's per-step accounting (:data:`simulator.STAT_NAMES`) and keeps
the response-time samples; :meth:`EpisodeMetrics.summary` gives the report's figures:

* ``cold_start_rate``: cold starts / arrivals, all functions;
* ``per_function_cold_pct`` and ``p75_function_cold_pct``: each function's cold starts as a percentage of
  its arrivals (functions with no arrival left out) and their 75th percentile;
* ``wasted_memory_mb_s``: idle-warm memory time, MB * s;
* ``throughput``: successful responses; ``failed`` and ``failure_rate``;
* ``cpu_seconds``: the computation load (execution + initialisation);
* ``latency_p50_s`` / ``latency_p99_s``: response times of successful requests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ftg_common.envs.coldstart.simulator import STAT_NAMES, Simulator, Stat

__all__ = ["EpisodeMetrics"]


class EpisodeMetrics:
    """Running totals of one or more simulations of F functions.

    Args:
        n_functions: F.
        keep_latencies: keep every response time (for percentiles); False keeps only their sums.
    """

    def __init__(self, n_functions: int, keep_latencies: bool = True) -> None:
        self.n_functions = n_functions
        self.keep_latencies = keep_latencies
        self.totals = np.zeros((len(STAT_NAMES), n_functions), dtype=np.float64)
        self.steps = 0
        self._latencies: list[float] = []

    def add(self, sim: Simulator) -> None:
        """Add the simulator's last step (call after each :meth:`Simulator.step`)."""
        self.totals += sim.stats
        self.steps += 1
        if self.keep_latencies:
            for lat in sim.latencies:
                self._latencies.extend(lat)

    def merge(self, other: EpisodeMetrics) -> None:
        """Add ``other``'s totals, steps and response times (several episodes' figures as one)."""
        if other.n_functions != self.n_functions:
            raise ValueError(f"other has {other.n_functions} functions, these metrics {self.n_functions}")
        self.totals += other.totals
        self.steps += other.steps
        if self.keep_latencies:
            self._latencies.extend(other._latencies)

    @property
    def latencies(self) -> np.ndarray:
        """Every kept response time, seconds [N]."""
        return np.asarray(self._latencies, dtype=np.float64)

    def per_function_cold_pct(self) -> np.ndarray:
        """Cold starts as a percentage of arrivals, per function with at least one arrival [F'] float64."""
        arrivals = self.totals[Stat.ARRIVALS]
        seen = arrivals > 0
        pct: np.ndarray = 100.0 * self.totals[Stat.COLD_STARTS][seen] / arrivals[seen]
        return pct

    def summary(self) -> dict[str, Any]:
        """The report's figures (see the module docstring), JSON-ready."""
        tot = self.totals
        arrivals = float(tot[Stat.ARRIVALS].sum())
        pct = self.per_function_cold_pct()
        lat = self.latencies
        out: dict[str, Any] = {
            "steps": self.steps,
            "arrivals": arrivals,
            "cold_starts": float(tot[Stat.COLD_STARTS].sum()),
            "cold_start_rate": float(tot[Stat.COLD_STARTS].sum() / arrivals) if arrivals else 0.0,
            "per_function_cold_pct": pct.tolist(),
            "p75_function_cold_pct": float(np.percentile(pct, 75)) if pct.size else 0.0,
            "wasted_memory_mb_s": float(tot[Stat.IDLE_MB_S].sum()),
            "throughput": float(tot[Stat.SUCCEEDED].sum()),
            "failed": float(tot[Stat.FAILED].sum()),
            "failure_rate": float(tot[Stat.FAILED].sum() / arrivals) if arrivals else 0.0,
            "cpu_seconds": float(tot[Stat.CPU_S].sum()),
            "replicas_started": float(tot[Stat.STARTED].sum()),
            "mean_latency_s": float(tot[Stat.LATENCY_SUM_S].sum() / max(tot[Stat.SERVED].sum(), 1.0)),
        }
        if lat.size:
            out["latency_p50_s"], out["latency_p99_s"] = (float(x) for x in np.percentile(lat, [50, 99]))
        return out
