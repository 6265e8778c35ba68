"""``FaaSColdStart-v0``: pre-warm or release function replicas every control step to avoid cold starts.

One step is ``dt_s`` simulated seconds (30 by default) of the :mod:`simulator` replaying a trace; an
episode is ``episode_steps`` steps (120: one hour) starting at a random time of the week (or
``start_s``). Every setting is a constructor keyword, so ``gym.make(id, **kwargs)`` and a run config's
``env_kwargs`` configure it.

**Observation** (float32, per function, concatenated for several functions):

* ``observation="paper"`` (default), 3 values: CPU utilisation of the function's replicas over the step
  [0, 1], existing replicas at the step end [0, max_replicas], response failure rate of the step
  (failed / responses, 0 with none) [0, 1];
* ``observation="extended"``, 6 values: mean response time of the step's served arrivals, seconds
  [0, queue_timeout + cold_start_max + service_max]; throughput ratio (succeeded / responses, 1 with
  none) [0, 1]; requests that arrived [0, 1e6] (clipped); replicas [0, max_replicas]; CPU utilisation [0, 1];
  memory of the replicas, MB [0, min(max_replicas * memory, memory_budget_mb)].

**Action**: ``Discrete(2 * max_delta + 1)``; action ``a`` starts ``a - max_delta`` replicas when positive
(pre-warm; each takes a cold-start latency to be ready) and releases ``max_delta - a`` replicas with no
request assigned when negative, before the step runs. With several functions, ``MultiDiscrete``.

**Reward** per step, summed over functions::

    r = -(w_cold * cold_starts + w_fail * failed + w_idle * idle_gb_s)

``cold_starts``: requests of the step that waited on a starting replica; ``failed``: responses that timed
out in the step; ``idle_gb_s``: idle-warm memory time of the step in GB * s (MB * s / 1024). With the
defaults (1, 5, 0.05) a cold start costs as much as keeping 1 GB warm and idle for 20 s (a 140 MB
replica, the median memory, for about 146 s), and a failure as much as five cold starts.

``info`` holds the step's ``arrivals``, ``cold_starts``, ``failed``, ``succeeded``, ``idle_mb_s`` and
``cpu_s`` (summed over functions).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from ftg_common.envs.coldstart.arrivals import (
    DAY,
    FAMILIES,
    WEEK,
    ArrivalParams,
    FunctionProfiles,
    sample_profiles,
    service_times,
)
from ftg_common.envs.coldstart.azure_trace import load_azure_counts
from ftg_common.envs.coldstart.simulator import SimConfig, Simulator, Stat
from ftg_common.envs.coldstart.trace import Trace, arrivals_from_counts, synthetic_trace

__all__ = ["FaaSColdStartEnv", "FaaSColdStartMultiEnv"]

OBSERVATIONS = ("paper", "extended")
MAX_REQUESTS_OBS = 1e6
"""The extended observation's request count is clipped to this (a finite bound for the Box)."""


class FaaSColdStartEnv(gym.Env[np.ndarray, Any]):
    """Pre-warming replicas of serverless functions against cold starts, failures and idle memory.

    Args:
        n_functions: functions simulated (1: the single-function env).
        observation: ``"paper"`` (3 values per function) or ``"extended"`` (6); see the module docstring.
        max_delta: largest number of replicas one action starts or releases.
        episode_steps: steps per episode (truncation).
        start_s: absolute start of every episode in seconds from Monday 00:00 (None: random per episode,
            a multiple of ``dt_s`` within the week).
        days: days of the week an episode may start on (0: Monday ... 6: Sunday; None: any). The start
            is then a random multiple of ``dt_s`` within one of them, the day drawn uniformly: training
            on some days and evaluating on the others keeps the evaluation's traces held out. Synthetic
            arrivals only (a trace file is one day: hold days out by file); not with ``start_s``.
        function_seed: seed of the function population draw (None: new functions every episode).
        rate_range_per_min: functions are drawn from the published population among those whose mean
            rate lies in this range (invocations per minute).
        max_service_mean_s: ... and whose mean service time is at most this (seconds).
        rate_per_min: overrides every function's mean rate (None: as drawn).
        family: only functions of this inter-arrival family are drawn (``"timer"``, ``"poisson"``,
            ``"bursty"``; None: any). Bursty by default: the functions whose cold starts a keep-alive
            window does not prevent.
        trace_path: an Azure 2019 invocations CSV (see :mod:`azure_trace`); its per-minute counts replace
            the synthetic arrivals (service times and memory are still drawn).
        trace_rows: rows of that file to replay, one per function (default: the first ``n_functions``).
        w_cold: reward weight of a cold start.
        w_fail: reward weight of a failed response.
        w_idle: reward weight of a GB * s of idle-warm memory.
        arrival_params: overrides of :class:`ArrivalParams` fields.
        **sim: :class:`SimConfig` fields (``dt_s``, ``concurrency``, ``max_replicas``, ``memory_budget_mb``,
            ``queue_timeout_s``, ``keep_alive_s``, ``cold_start_*``, ``replica_cpu``).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        n_functions: int = 1,
        observation: str = "paper",
        max_delta: int = 5,
        episode_steps: int = 120,
        start_s: float | None = None,
        days: list[int] | tuple[int, ...] | None = None,
        function_seed: int | None = 0,
        rate_range_per_min: tuple[float, float] | list[float] = (1.0, 30.0),
        max_service_mean_s: float = 30.0,
        rate_per_min: float | None = None,
        family: str | None = "bursty",
        trace_path: str | None = None,
        trace_rows: list[int] | None = None,
        w_cold: float = 1.0,
        w_fail: float = 5.0,
        w_idle: float = 0.05,
        arrival_params: dict[str, Any] | None = None,
        **sim: Any,
    ) -> None:
        self._check_args(n_functions, observation, max_delta, episode_steps, rate_range_per_min, family)
        self.config = SimConfig(**sim)
        self.params = ArrivalParams(**(arrival_params or {}))
        self.n_functions, self.observation, self.max_delta = n_functions, observation, max_delta
        self.episode_steps, self.start_s = episode_steps, start_s
        self.days = _check_days(days, start_s, trace_path)
        self.function_seed, self.rate_per_min = function_seed, rate_per_min
        self.family = None if family is None else FAMILIES.index(family)
        self.rate_range = (float(rate_range_per_min[0]), float(rate_range_per_min[1]))
        self.max_service_mean_s = max_service_mean_s
        self.weights = (float(w_cold), float(w_fail), float(w_idle))
        self.horizon_s = episode_steps * self.config.dt_s
        self._counts = self._load_counts(trace_path, trace_rows)
        self._profiles = (
            None if function_seed is None else self._draw_functions(np.random.default_rng(function_seed))
        )
        self.observation_space = self._obs_space()
        self.action_space = self._act_space()
        self.sim: Simulator | None = None
        self._episode_profiles = self._profiles
        self._steps = 0

    # --- construction ------------------------------------------------------------------------------
    @staticmethod
    def _check_args(
        n_functions: int,
        observation: str,
        max_delta: int,
        episode_steps: int,
        rate_range: tuple[float, float] | list[float],
        family: str | None,
    ) -> None:
        if not (isinstance(n_functions, int) and n_functions >= 1):
            raise ValueError(f"n_functions must be an integer >= 1, got {n_functions!r}")
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if not (isinstance(max_delta, int) and max_delta >= 1):
            raise ValueError(f"max_delta must be an integer >= 1, got {max_delta!r}")
        if not (isinstance(episode_steps, int) and episode_steps >= 1):
            raise ValueError(f"episode_steps must be an integer >= 1, got {episode_steps!r}")
        if family is not None and family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES} or None, got {family!r}")
        if len(rate_range) != 2 or not 0 < rate_range[0] <= rate_range[1]:
            raise ValueError(
                f"rate_range_per_min must be [low, high] with 0 < low <= high, got {rate_range!r}"
            )

    def _load_counts(self, path: str | None, rows: list[int] | None) -> np.ndarray | None:
        if path is None:
            if rows is not None:
                raise ValueError("trace_rows needs trace_path")
            return None
        table = load_azure_counts(path)
        rows = list(range(self.n_functions)) if rows is None else rows
        if len(rows) != self.n_functions or not all(0 <= r < len(table) for r in rows):
            raise ValueError(f"trace_rows must name {self.n_functions} rows of the {len(table)} in {path}")
        if self.horizon_s > table.counts.shape[1] * 60.0:
            raise ValueError(f"episode_steps * dt_s exceeds the {table.counts.shape[1]} minutes of {path}")
        return table.counts[rows]

    def _draw_functions(self, rng: np.random.Generator) -> FunctionProfiles:
        """``n_functions`` functions of the population within the rate and service ranges."""
        parts: list[FunctionProfiles] = []
        have = 0
        for _ in range(1000):
            pool = sample_profiles(256, rng, self.params)
            mean_s = pool.service_median_s * np.exp(0.5 * pool.service_sigma**2)
            ok = (pool.rate_per_min >= self.rate_range[0]) & (pool.rate_per_min <= self.rate_range[1])
            if self.family is not None:
                ok &= pool.family == self.family
            idx = np.flatnonzero(ok & (mean_s <= self.max_service_mean_s))[: self.n_functions - have]
            parts.append(pool.subset(idx))
            have += idx.size
            if have == self.n_functions:
                break
        else:
            raise ValueError("rate_range_per_min and max_service_mean_s select (almost) no function")
        profiles = FunctionProfiles(
            *(np.concatenate([getattr(p, k) for p in parts]) for k in FunctionProfiles.__dataclass_fields__)
        )
        if self.rate_per_min is not None:
            profiles = replace(profiles, rate_per_min=np.full(self.n_functions, float(self.rate_per_min)))
        return profiles

    def _obs_space(self) -> gym.spaces.Box:
        c, p, f = self.config, self.params, self.n_functions
        reps = float(c.max_replicas)
        if self.observation == "paper":
            high = np.tile(np.array([1.0, reps, 1.0]), (f, 1))
        else:
            # A function's replicas hold at most max_replicas of its size, and never more than the budget.
            mem = np.full(f, p.memory_max_mb) if self._profiles is None else self._profiles.memory_mb
            lat = c.queue_timeout_s + c.cold_start_max_s + p.service_max_s
            high = np.tile(np.array([lat, 1.0, MAX_REQUESTS_OBS, reps, 1.0, 0.0]), (f, 1))
            high[:, 5] = np.minimum(reps * mem, c.memory_budget_mb)
        high32 = high.reshape(-1).astype(np.float32)
        return gym.spaces.Box(np.zeros_like(high32), high32, dtype=np.float32)

    def _act_space(self) -> gym.spaces.Space[Any]:
        return gym.spaces.Discrete(2 * self.max_delta + 1)

    # --- gymnasium API -----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw the episode's functions (unless fixed), trace and start; returns an empty step's obs."""
        super().reset(seed=seed)
        rng = self.np_random
        profiles = self._profiles if self._profiles is not None else self._draw_functions(rng)
        trace = self._trace(profiles, rng)
        self.sim = Simulator(trace, profiles.memory_mb, self.config, rng)
        self._steps = 0
        self._episode_profiles = profiles
        return self._observe(), {"start_s": trace.start_s}

    def _trace(self, profiles: FunctionProfiles, rng: np.random.Generator) -> Trace:
        dt = self.config.dt_s
        if self._counts is not None:
            minutes = int(math.ceil(self.horizon_s / 60.0))
            first = int(rng.integers(0, self._counts.shape[1] - minutes + 1))
            arrivals, services = [], []
            for f in range(self.n_functions):
                a = arrivals_from_counts(self._counts[f, first : first + minutes], rng)
                a = a[a < self.horizon_s]
                arrivals.append(a)
                services.append(
                    service_times(
                        float(profiles.service_median_s[f]),
                        float(profiles.service_sigma[f]),
                        a.size,
                        rng,
                        self.params,
                    )
                )
            return Trace(tuple(arrivals), tuple(services), self.horizon_s, first * 60.0)
        start = self.start_s
        if start is None and self.days is not None:
            day = self.days[int(rng.integers(0, len(self.days)))]
            start = day * DAY + float(rng.integers(0, int(DAY // dt))) * dt
        elif start is None:
            start = float(rng.integers(0, int(WEEK // dt))) * dt
        return synthetic_trace(profiles, start, self.horizon_s, rng, self.params)

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Scale by the action's delta(s), run ``dt_s`` simulated seconds; see the module docstring."""
        sim = self.sim
        if sim is None:
            raise RuntimeError("call reset() before step()")
        m = self.max_delta
        if self.n_functions == 1:
            delta = int(action) - m
            if delta:
                sim.scale(0, delta)
        else:
            for f, a in enumerate(np.asarray(action).reshape(-1).tolist()):
                if a != m:
                    sim.scale(f, int(a) - m)
        sim.step()
        self._steps += 1
        rows = sim.rows
        row = rows[0] if self.n_functions == 1 else [sum(col) for col in zip(*rows, strict=True)]
        cold, failed, idle = row[Stat.COLD_STARTS], row[Stat.FAILED], row[Stat.IDLE_MB_S]
        w_cold, w_fail, w_idle = self.weights
        reward = -(w_cold * cold + w_fail * failed + w_idle * idle / 1024.0)
        info = {
            "arrivals": row[Stat.ARRIVALS],
            "cold_starts": cold,
            "failed": failed,
            "succeeded": row[Stat.SUCCEEDED],
            "idle_mb_s": idle,
            "cpu_s": row[Stat.CPU_S],
        }
        return self._observe(), reward, False, self._steps >= self.episode_steps, info

    def _observe(self) -> np.ndarray:
        assert self.sim is not None
        values: list[float] = []
        paper = self.observation == "paper"
        for row in self.sim.rows:
            responses = row[Stat.SUCCEEDED] + row[Stat.FAILED]
            fail_rate = row[Stat.FAILED] / responses if responses > 0 else 0.0
            if paper:
                values += (row[Stat.CPU_UTIL], row[Stat.REPLICAS], fail_rate)
                continue
            served = row[Stat.SERVED]
            values += (
                row[Stat.LATENCY_SUM_S] / served if served > 0 else 0.0,
                1.0 - fail_rate,
                min(row[Stat.ARRIVALS], MAX_REQUESTS_OBS),
                row[Stat.REPLICAS],
                row[Stat.CPU_UTIL],
                row[Stat.MEMORY_MB],
            )
        # Every value is within its bound by construction (the simulator clips utilisation at 1 and
        # response times are at most timeout + longest service), so no clipping is needed here.
        return np.array(values, dtype=np.float32)

    def run_record(self) -> dict[str, Any]:
        """Every parameter of the env and its generator, and the current episode's functions (JSON-ready)."""
        profiles = self._episode_profiles
        return {
            "sim": self.config.as_dict(),
            "arrivals": self.params.as_dict(),
            "functions": None if profiles is None else profiles.as_dict(),
            "weights": dict(zip(("w_cold", "w_fail", "w_idle"), self.weights, strict=True)),
            "episode_steps": self.episode_steps,
            "days": None if self.days is None else list(self.days),
            "observation": self.observation,
            "max_delta": self.max_delta,
        }


def _check_days(
    days: list[int] | tuple[int, ...] | None, start_s: float | None, trace_path: str | None
) -> tuple[int, ...] | None:
    """``days`` as a sorted tuple of distinct days of the week, or None; refused naming the keyword."""
    if days is None:
        return None
    if start_s is not None or trace_path is not None:
        raise ValueError("days cannot be combined with start_s or trace_path")
    out = tuple(sorted(set(days)))
    if not out or len(out) != len(days) or not all(isinstance(d, int) and 0 <= d <= 6 for d in out):
        raise ValueError(f"days must be distinct integers in 0..6 (0: Monday), got {days!r}")
    return out


class FaaSColdStartMultiEnv(FaaSColdStartEnv):
    """Several functions sharing a memory budget; ``MultiDiscrete`` actions, one delta per function.

    Defaults: 8 functions of any family, a 2048 MB budget for all their replicas; every other argument as
    :class:`FaaSColdStartEnv`.
    """

    def __init__(
        self, n_functions: int = 8, memory_budget_mb: float = 2048.0, family: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(n_functions=n_functions, memory_budget_mb=memory_budget_mb, family=family, **kwargs)

    def _act_space(self) -> gym.spaces.Space[Any]:
        return gym.spaces.MultiDiscrete(np.full(self.n_functions, 2 * self.max_delta + 1))
