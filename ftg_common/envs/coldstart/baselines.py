"""The baseline scaling policies the report compares a trained policy with (numpy only).

Each is a :class:`~ftg_common.envs.coldstart.controller.Controller`: ``reset(sim)`` before the first step,
``act(sim)`` after every step, acting through the simulator's ``scale``, ``set_keep_alive`` and
``set_windows``.

* :class:`OnDemand`: replicas start only when a request finds none free and leave as soon as they are
  idle (keep-alive 0, no pre-warming), as a scale-from-zero platform without a keep-alive does.
* :class:`FixedKeepAlive`: a replica stays ``keep_alive_s`` after going idle (AWS Lambda about 10
  minutes, Azure Functions 20: :data:`AWS_KEEP_ALIVE_S`, :data:`AZURE_KEEP_ALIVE_S`).
* :class:`HybridHistogram`: the hybrid histogram policy of Shahrad et al., *Serverless in the Wild*
  (USENIX ATC'20): per function, a histogram of idle times (4 h range, 1-minute bins); the 5th
  percentile minus a 10% margin is the pre-warm window, the 99th plus 10% bounds the keep-alive; a fixed
  keep-alive of the histogram's range when the histogram is not representative (see
  :func:`histogram_windows`).
* :class:`HorizontalPodAutoscaler`: Kubernetes' HPA rule on CPU utilisation: ``desired = ceil(current *
  utilisation / target)`` outside a 10% tolerance, scale-up at once, scale-down to the highest
  recommendation of the last 5 minutes (its stabilisation window); replicas never expire on their own.

The pure functions (:func:`idle_histogram`, :func:`histogram_windows`, :func:`hpa_desired`) hold the math.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ftg_common.envs.coldstart.simulator import Simulator, Stat

__all__ = [
    "AWS_KEEP_ALIVE_S",
    "AZURE_KEEP_ALIVE_S",
    "FixedKeepAlive",
    "HistogramConfig",
    "HorizontalPodAutoscaler",
    "HybridHistogram",
    "OnDemand",
    "Windows",
    "histogram_windows",
    "hpa_desired",
    "idle_histogram",
]

AWS_KEEP_ALIVE_S = 600.0
"""AWS Lambda's keep-alive, as ATC'20 reports it (10 minutes)."""
AZURE_KEEP_ALIVE_S = 1200.0
"""Azure Functions' keep-alive, as ATC'20 reports it (20 minutes)."""


class FixedKeepAlive:
    """Every replica stays ``keep_alive_s`` seconds after going idle; no pre-warming.

    Args:
        keep_alive_s: the idle window, seconds (>= 0; inf: never expire).
    """

    def __init__(self, keep_alive_s: float) -> None:
        if not keep_alive_s >= 0:
            raise ValueError(f"keep_alive_s must be >= 0, got {keep_alive_s!r}")
        self.keep_alive_s = float(keep_alive_s)

    def reset(self, sim: Simulator) -> None:
        """Set every function's window (no pre-warm window)."""
        for f in range(sim.n_functions):
            sim.set_windows(f, self.keep_alive_s, 0.0)

    def act(self, sim: Simulator) -> None:
        """Nothing: the simulator expires replicas at their window."""


class OnDemand(FixedKeepAlive):
    """Scale on demand, never pre-warm, release a replica as soon as it is idle (keep-alive 0)."""

    def __init__(self) -> None:
        super().__init__(0.0)


# --- hybrid histogram (ATC'20) ---------------------------------------------------------------------


@dataclass(frozen=True)
class HistogramConfig:
    """Parameters of the hybrid histogram policy; defaults from ATC'20.

    Attributes:
        range_s: the histogram's range, seconds (4 hours); longer idle times are out of bounds (OOB).
        bin_s: a bin's width, seconds (1 minute).
        head: percentile of the pre-warm window (5th).
        tail: percentile of the keep-alive window (99th).
        margin: the pre-warm window is cut and the keep-alive window stretched by this fraction (10%).
        cv_threshold: the histogram is representative when the coefficient of variation of its bin counts
            is at least this (2: a histogram with a clear peak; a flat one has CV near 0).
        oob_threshold: at this fraction of OOB idle times or more the histogram is not used. ATC'20 then
            forecasts the next idle time with ARIMA; this implementation falls back to the fixed
            keep-alive instead (the report's functions are invoked every few minutes, far from OOB).
        min_samples: fewer in-range idle times than this: not representative (the paper gives no
            number; a histogram of a handful of samples says little).
        fallback_keep_alive_s: the keep-alive when not representative (None: ``range_s``, as ATC'20's
            standard keep-alive fallback), with no pre-warming.
    """

    range_s: float = 4 * 3600.0
    bin_s: float = 60.0
    head: float = 5.0
    tail: float = 99.0
    margin: float = 0.10
    cv_threshold: float = 2.0
    oob_threshold: float = 0.5
    min_samples: int = 10
    fallback_keep_alive_s: float | None = None

    def __post_init__(self) -> None:
        checks = {
            "range_s": self.range_s > 0,
            "bin_s": 0 < self.bin_s <= self.range_s,
            "head": 0 <= self.head <= self.tail,
            "tail": self.head <= self.tail <= 100,
            "margin": 0 <= self.margin < 1,
            "cv_threshold": self.cv_threshold >= 0,
            "oob_threshold": 0 < self.oob_threshold <= 1,
            "min_samples": self.min_samples >= 1,
            "fallback_keep_alive_s": self.fallback_keep_alive_s is None or self.fallback_keep_alive_s >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"HistogramConfig.{name} is out of range: {getattr(self, name)!r}")

    @property
    def n_bins(self) -> int:
        """Bins of the histogram (240 by default)."""
        return int(math.ceil(self.range_s / self.bin_s - 1e-9))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (recorded with the report)."""
        return asdict(self)


@dataclass(frozen=True)
class Windows:
    """What :func:`histogram_windows` decides for one function.

    Attributes:
        keep_alive_s: the keep-alive window, seconds.
        prewarm_s: the pre-warm window, seconds (0: keep loaded after execution).
        representative: whether the histogram decided them (False: the fallback did).
        cv: the coefficient of variation of the bin counts (0 for an empty histogram).
    """

    keep_alive_s: float
    prewarm_s: float
    representative: bool
    cv: float


def idle_histogram(
    idle_times_s: Sequence[float] | np.ndarray, config: HistogramConfig
) -> tuple[np.ndarray, int]:
    """Bin idle times: ``floor(t / bin_s)`` for ``t < range_s``, the rest counted as out of bounds.

    Args:
        idle_times_s: idle times, seconds [N] (>= 0).
        config: the bins.

    Returns:
        (counts [n_bins] int64, out-of-bounds count).
    """
    t = np.asarray(idle_times_s, dtype=np.float64).reshape(-1)
    if np.any(t < 0) or np.any(np.isnan(t)):
        raise ValueError("idle_times_s must be >= 0")
    inside = t[t < config.range_s]
    idx = np.minimum((inside // config.bin_s).astype(np.int64), config.n_bins - 1)
    return np.bincount(idx, minlength=config.n_bins).astype(np.int64), int(t.size - inside.size)


def _percentile_bin(counts: np.ndarray, pct: float) -> int:
    """The first bin whose cumulative share of the counts reaches ``pct`` percent."""
    cum = np.cumsum(counts) / counts.sum()
    return int(np.searchsorted(cum, pct / 100.0 - 1e-12, side="left"))


def histogram_windows(counts: np.ndarray, oob: int, config: HistogramConfig) -> Windows:
    """The hybrid policy's windows from an idle-time histogram (ATC'20, section 4.2).

    Representative (at least ``min_samples`` in range, OOB share below ``oob_threshold``, CV of the bin
    counts >= ``cv_threshold``; CV = population std / mean over all ``n_bins`` bins):

    * pre-warm = lower edge of the ``head`` percentile's bin * (1 - margin);
    * keep-alive = upper edge of the ``tail`` percentile's bin * (1 + margin) - pre-warm: the replica
      pre-warmed at the pre-warm window stays until the tail, as in the paper's figure of the policy (the
      simulator counts a pre-warmed replica's keep-alive from when it is ready). With a pre-warm window
      of 0 the replica stays loaded after execution for the whole window.

    Otherwise: no pre-warming and ``fallback_keep_alive_s`` (the range by default).

    Args:
        counts: in-range bin counts [n_bins].
        oob: idle times beyond the range.
        config: the policy's parameters.
    """
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if c.shape != (config.n_bins,):
        raise ValueError(f"counts must have {config.n_bins} bins, got shape {c.shape}")
    n = float(c.sum())
    cv = float(c.std() / c.mean()) if n > 0 else 0.0
    oob_share = oob / (n + oob) if n + oob > 0 else 0.0
    if n < config.min_samples or oob_share >= config.oob_threshold or cv < config.cv_threshold:
        fallback = config.range_s if config.fallback_keep_alive_s is None else config.fallback_keep_alive_s
        return Windows(fallback, 0.0, False, cv)
    prewarm = _percentile_bin(c, config.head) * config.bin_s * (1.0 - config.margin)
    tail_edge = (_percentile_bin(c, config.tail) + 1) * config.bin_s * (1.0 + config.margin)
    return Windows(tail_edge - prewarm, prewarm, True, cv)


class HybridHistogram:
    """ATC'20's hybrid histogram policy, one histogram per function, updated after every step.

    Each step's idle times (``sim.idle_times[f]``) enter the function's histogram; the windows of
    :func:`histogram_windows` are applied through ``sim.set_windows`` when they change. The histogram
    starts empty at ``reset`` (the fallback keep-alive until it is representative), unless
    ``keep_history``: then a reset keeps the histograms of the previous simulations of as many functions,
    as a platform keeps an application's histogram from day to day (ATC'20 tracks it over days).

    Args:
        config: the policy's parameters.
        keep_history: keep the histograms across resets.
    """

    def __init__(self, config: HistogramConfig | None = None, keep_history: bool = False) -> None:
        self.config = config or HistogramConfig()
        self.keep_history = keep_history
        self.counts: list[np.ndarray] = []
        self.oob: list[int] = []
        self.windows: list[Windows] = []

    def reset(self, sim: Simulator) -> None:
        """Empty histograms (unless kept); the windows they give."""
        n = sim.n_functions
        if not (self.keep_history and len(self.counts) == n):
            self.counts = [np.zeros(self.config.n_bins, dtype=np.int64) for _ in range(n)]
            self.oob = [0] * n
        self.windows = []
        for f in range(n):
            w = histogram_windows(self.counts[f], self.oob[f], self.config)
            self.windows.append(w)
            sim.set_windows(f, w.keep_alive_s, w.prewarm_s)

    def act(self, sim: Simulator) -> None:
        """Add the step's idle times; re-apply the windows of any function whose windows changed."""
        for f, samples in enumerate(sim.idle_times):
            if not samples:
                continue
            counts, oob = idle_histogram(samples, self.config)
            self.counts[f] += counts
            self.oob[f] += oob
            w = histogram_windows(self.counts[f], self.oob[f], self.config)
            old = self.windows[f]
            if (w.keep_alive_s, w.prewarm_s) != (old.keep_alive_s, old.prewarm_s):
                sim.set_windows(f, w.keep_alive_s, w.prewarm_s)
            self.windows[f] = w


# --- HPA-like CPU threshold ------------------------------------------------------------------------


def hpa_desired(
    current: int, utilisation: float, target: float, tolerance: float, min_replicas: int, max_replicas: int
) -> int:
    """Kubernetes HPA's replica count: ``ceil(current * utilisation / target)`` within the bounds.

    No change while ``|utilisation / target - 1| <= tolerance``; with no replica, ``min_replicas``.

    Args:
        current: replicas now.
        utilisation: their average CPU utilisation in [0, 1].
        target: the target utilisation in (0, 1].
        tolerance: the dead band around the target (0.1 in Kubernetes).
        min_replicas: the floor.
        max_replicas: the ceiling.
    """
    if current <= 0:
        desired = min_replicas
    elif abs(utilisation / target - 1.0) <= tolerance:
        desired = current
    else:
        desired = math.ceil(current * utilisation / target - 1e-9)
    return max(min_replicas, min(max_replicas, desired))


class HorizontalPodAutoscaler:
    """A CPU-threshold autoscaler as Kubernetes' HPA: scale up at once, scale down after stabilisation.

    Every step it reads the function's CPU utilisation (``sim.rows[f][Stat.CPU_UTIL]``) and replicas,
    computes :func:`hpa_desired`, pre-warms up to it when higher, and otherwise releases idle replicas
    down to the highest recommendation of the last ``stabilisation_s`` seconds (this step's included).
    Replicas never expire on their own (keep-alive infinite): only the autoscaler removes them. The
    simulator still starts a replica when a request finds every slot taken (the platform's own scale-out).

    Args:
        target: target CPU utilisation in (0, 1].
        stabilisation_s: the scale-down stabilisation window, seconds (300 in Kubernetes).
        tolerance: the dead band around the target.
        min_replicas: replicas kept at least (1, a Deployment's default); started at ``reset``.
    """

    def __init__(
        self,
        target: float = 0.5,
        stabilisation_s: float = 300.0,
        tolerance: float = 0.1,
        min_replicas: int = 1,
    ) -> None:
        if not 0 < target <= 1:
            raise ValueError(f"target must be in (0, 1], got {target!r}")
        if not stabilisation_s >= 0:
            raise ValueError(f"stabilisation_s must be >= 0, got {stabilisation_s!r}")
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
        if min_replicas < 0:
            raise ValueError(f"min_replicas must be >= 0, got {min_replicas!r}")
        self.target, self.stabilisation_s = float(target), float(stabilisation_s)
        self.tolerance, self.min_replicas = float(tolerance), int(min_replicas)
        self._history: list[deque[int]] = []

    def reset(self, sim: Simulator) -> None:
        """Replicas never expire; start ``min_replicas`` per function; empty recommendation history."""
        window = max(1, math.ceil(self.stabilisation_s / sim.config.dt_s - 1e-9))
        self._history = [deque(maxlen=window) for _ in range(sim.n_functions)]
        for f in range(sim.n_functions):
            sim.set_windows(f, math.inf, 0.0)
            sim.scale(f, self.min_replicas - sim.replicas(f))

    def act(self, sim: Simulator) -> None:
        """Scale every function towards its (stabilised) recommendation."""
        for f in range(sim.n_functions):
            current = sim.replicas(f)
            desired = hpa_desired(
                current,
                sim.rows[f][Stat.CPU_UTIL],
                self.target,
                self.tolerance,
                self.min_replicas,
                sim.config.max_replicas,
            )
            history = self._history[f]
            history.append(desired)
            # Kubernetes' rule: up to the latest recommendation, down no lower than the window's highest.
            goal = desired if desired > current else min(current, max(history))
            if goal != current:
                sim.scale(f, goal - current)
