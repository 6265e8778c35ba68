"""Discrete-event simulation of function replicas serving a trace, advanced one control step at a time.

Simulated time only: nothing sleeps. Each function has replicas that go through

    starting (cold) -> idle-warm <-> busy -> expired (or released by the controller)

* A replica is **starting** for its cold-start latency (lognormal, clipped, default median 1.87 s within
  0.5-7 s), then **warm**. It has ``concurrency`` slots; a slot runs one request at a time.
* A request arriving at ``a`` goes to the slot that can start it first: ``max(a, ready, slot free)``.
  When every slot of every replica (starting ones included) has work assigned at ``a`` and the function
  may grow (``max_replicas`` and the shared ``memory_budget_mb``), a new replica starts at ``a`` and the
  request takes it when that is earlier (a concurrency-based autoscaler's scale-out). A request served
  by a replica that was still starting when it arrived is a **cold start**.
* The gateway queues a request for at most ``queue_timeout_s``: one that cannot start by then is a
  **failed** response (counted when it times out); the others succeed at start + service time.
* A replica whose slots are all free expires ``keep_alive_s[f]`` after the later of its ready time and
  its last request's end: idle for exactly the window, it is gone at the window (a request arriving at
  that instant finds it expired).
* The controller acts at step boundaries: :meth:`Simulator.scale` starts (pre-warms) or releases idle
  replicas, :meth:`Simulator.set_keep_alive` changes a function's idle window, and
  :meth:`Simulator.set_windows` sets the hybrid policy's pre-warm and keep-alive windows (ATC'20): with a
  pre-warm window, replicas are unloaded when idle and one is started again that long after the
  function's last completion, the simulator scheduling it exactly within the step.

Accounting per step and function (rows of :attr:`Simulator.stats`, see :data:`STAT_NAMES`), all exact:
replica-seconds warm and starting, slot-seconds busy, idle-warm memory ``memory_mb * (warm_s -
busy_slot_s / concurrency)`` (for concurrency 1, the MB-seconds of replicas that are warm and serving
nothing), CPU-seconds (execution at ``replica_cpu / concurrency`` per running request plus
initialisation at ``replica_cpu``) and the CPU utilisation an autoscaler would see.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ftg_common.envs.coldstart.trace import Trace

__all__ = ["STAT_NAMES", "SimConfig", "Simulator", "Stat"]


@dataclass(frozen=True)
class SimConfig:
    """Platform parameters of a simulation.

    Attributes:
        dt_s: control step, seconds (30, as a typical autoscaler period).
        concurrency: requests a replica runs at once.
        max_replicas: replicas per function at most.
        memory_budget_mb: memory of all replicas of all functions at most (MB; inf: no budget).
        queue_timeout_s: longest wait at the gateway before a request fails, seconds.
        keep_alive_s: default idle window of a replica before it expires, seconds (inf: never).
        cold_start_median_s: median cold-start latency, seconds.
        cold_start_sigma: log-sigma of the cold-start latency.
        cold_start_min_s: cold-start latencies are clipped below to this.
        cold_start_max_s: cold-start latencies are clipped above to this.
        replica_cpu: cores of one replica (its CPU-seconds per second when fully busy or starting).
    """

    dt_s: float = 30.0
    concurrency: int = 1
    max_replicas: int = 20
    memory_budget_mb: float = math.inf
    queue_timeout_s: float = 30.0
    keep_alive_s: float = 600.0
    cold_start_median_s: float = 1.87
    cold_start_sigma: float = 0.67
    cold_start_min_s: float = 0.5
    cold_start_max_s: float = 7.0
    replica_cpu: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "dt_s": self.dt_s > 0,
            "concurrency": self.concurrency >= 1,
            "max_replicas": self.max_replicas >= 1,
            "memory_budget_mb": self.memory_budget_mb > 0,
            "queue_timeout_s": self.queue_timeout_s >= 0,
            "keep_alive_s": self.keep_alive_s >= 0,
            "cold_start_median_s": self.cold_start_median_s > 0,
            "cold_start_sigma": self.cold_start_sigma >= 0,
            "cold_start_min_s": 0 < self.cold_start_min_s <= self.cold_start_max_s,
            "replica_cpu": self.replica_cpu > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"SimConfig.{name} is out of range: {getattr(self, name)!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (recorded with a run)."""
        return asdict(self)


class Stat:
    """Row indices of :attr:`Simulator.stats` (one row per quantity, one column per function)."""

    ARRIVALS = 0  # requests that arrived in the step
    COLD_STARTS = 1  # of those, requests that waited on a starting replica
    FAILED = 2  # requests that timed out in the step
    SUCCEEDED = 3  # requests that completed in the step
    WARM_S = 4  # replica-seconds warm (ready) in the step
    INIT_S = 5  # replica-seconds starting in the step
    BUSY_SLOT_S = 6  # slot-seconds running requests in the step
    IDLE_MB_S = 7  # idle-warm memory time, MB * s
    CPU_S = 8  # CPU-seconds: execution + initialisation
    CPU_UTIL = 9  # CPU_S / (replica_cpu * (WARM_S + INIT_S)), 0 with no replica
    REPLICAS = 10  # replicas existing at the step end (starting + warm)
    WARM_REPLICAS = 11  # of those, warm
    MEMORY_MB = 12  # memory of the existing replicas at the step end
    IN_FLIGHT = 13  # requests queued or running at the step end
    LATENCY_SUM_S = 14  # sum of the response times of the step's arrivals that will succeed
    SERVED = 15  # number of those (LATENCY_SUM_S / SERVED is their mean latency)
    STARTED = 16  # replicas started in the step (cold starts of replicas, pre-warms included)
    EXPIRED = 17  # replicas that expired or were released in the step


STAT_NAMES: tuple[str, ...] = tuple(
    n.lower() for n in sorted((n for n in vars(Stat) if n.isupper()), key=lambda n: getattr(Stat, n))
)
"""The rows of :attr:`Simulator.stats`, lower-case, in order."""
N_STATS = len(STAT_NAMES)


class _Replica:
    """One replica: when it was started, when it is ready, when each slot is free."""

    __slots__ = ("born", "ready", "free", "last", "idle_from", "expires")

    def __init__(self, born: float, ready: float, concurrency: int, keep_alive: float) -> None:
        self.born = born
        self.ready = ready
        self.free = [-math.inf] * concurrency
        self.last = -math.inf  # the latest end of a request assigned to it
        self.idle_from = ready  # max(ready, last): its keep-alive window runs from here
        self.expires = ready + keep_alive  # when it expires unless given work before


class Simulator:
    """Replays ``trace`` on replicas of F functions, one control step per :meth:`step`.

    Args:
        trace: the invocations.
        memory_mb: memory of one replica of each function, MB [F].
        config: the platform parameters.
        rng: draws the cold-start latencies (the only randomness beyond the trace).

    Attributes:
        t: the current simulated time (the start of the next step), seconds.
        rows: the last step's accounting as Python floats, per function (``rows[f][Stat.X]``); the
            same as :attr:`stats` (an array) and cheaper to read value by value.
        latencies: per function, the response times (s) of the last step's arrivals that will succeed.
        idle_times: per function, the idle times (s) that ended in the last step: the time from the
            function's last completion to an arrival finding nothing of it running.
        cold_flags: per function, for each of the last step's arrivals, whether it was a cold start.
    """

    def __init__(
        self, trace: Trace, memory_mb: np.ndarray, config: SimConfig, rng: np.random.Generator
    ) -> None:
        n = trace.n_functions
        mem = np.asarray(memory_mb, dtype=np.float64).reshape(-1)
        if mem.shape != (n,) or np.any(mem <= 0):
            raise ValueError(f"memory_mb must be {n} positive values, got {memory_mb!r}")
        if np.any(mem > config.memory_budget_mb):
            raise ValueError("memory_mb: a replica is larger than memory_budget_mb")
        self.trace, self.config, self.rng = trace, config, rng
        self.n_functions = n
        self.memory_mb = mem
        self._mem = mem.tolist()
        self._ka = [
            float(config.keep_alive_s)
        ] * n  # window of a replica never used, and (no pre-warm) of any
        self._pw = [0.0] * n  # pre-warm window; > 0: a replica that has run something expires when idle
        self._prewarm_at = [math.inf] * n  # when the function's next pre-warm is due
        self._timeout = float(config.queue_timeout_s)
        self._cold_count = [0] * n
        self.t = 0.0
        self._stats: np.ndarray | None = None
        self._totals: list[list[float]] = [[0.0] * N_STATS for _ in range(n)]
        self.latencies: list[list[float]] = [[] for _ in range(n)]
        self.idle_times: list[list[float]] = [[] for _ in range(n)]
        self.cold_flags: list[list[bool]] = [[] for _ in range(n)]
        self._arr = [a.tolist() for a in trace.arrivals]
        self._svc = [s.tolist() for s in trace.services]
        self._next = [0] * n
        self._reps: list[list[_Replica]] = [[] for _ in range(n)]
        self._pending: list[list[tuple[float, float]]] = [[] for _ in range(n)]  # (start, end) to succeed
        self._timeouts: list[list[float]] = [[] for _ in range(n)]  # when queued requests time out
        self._last_end = [-math.inf] * n
        self._used_mb = 0.0
        self._cold: list[float] = []
        self._dead_acc = [[0.0, 0.0, 0] for _ in range(n)]  # warm_s, init_s, count of replicas gone
        self._started = [0] * n
        self._arrived = [0] * n
        self.rows: list[list[float]] = [[0.0] * N_STATS for _ in range(n)]

    # --- queries -----------------------------------------------------------------------------------
    def replicas(self, f: int) -> int:
        """Replicas of function ``f`` existing now (starting + warm)."""
        return len(self._reps[f])

    def warm_replicas(self, f: int) -> int:
        """Replicas of function ``f`` warm now."""
        t = self.t
        return sum(1 for r in self._reps[f] if r.ready <= t)

    def idle_replicas(self, f: int) -> int:
        """Replicas of function ``f`` warm and running nothing now."""
        t = self.t
        return sum(1 for r in self._reps[f] if r.ready <= t and r.last <= t)

    def last_completion(self, f: int) -> float:
        """End time of function ``f``'s latest assigned request (-inf before its first)."""
        return self._last_end[f]

    @property
    def used_memory_mb(self) -> float:
        """Memory of every existing replica, MB."""
        return self._used_mb

    @property
    def done(self) -> bool:
        """True once the trace's horizon is reached."""
        return self.t >= self.trace.horizon_s - 1e-9

    def conservation(self) -> np.ndarray:
        """Per function, all time: arrived - succeeded - failed - in flight (zero: nothing lost), [F]."""
        tot = self.totals
        in_flight = np.array([len(p) + len(q) for p, q in zip(self._pending, self._timeouts, strict=True)])
        lost: np.ndarray = tot[Stat.ARRIVALS] - tot[Stat.SUCCEEDED] - tot[Stat.FAILED] - in_flight
        return lost

    @property
    def keep_alive_s(self) -> np.ndarray:
        """Each function's keep-alive window now, seconds [F] (a copy: see :meth:`set_windows`)."""
        return np.array(self._ka)

    @property
    def prewarm_s(self) -> np.ndarray:
        """Each function's pre-warm window now, seconds [F] (0: none; see :meth:`set_windows`)."""
        return np.array(self._pw)

    # --- controller actions ------------------------------------------------------------------------
    def set_keep_alive(self, f: int, seconds: float) -> None:
        """Function ``f``'s keep-alive window becomes ``seconds`` (inf: never); see :meth:`set_windows`."""
        self.set_windows(f, seconds, self._pw[f])

    def set_windows(self, f: int, keep_alive_s: float, prewarm_s: float = 0.0) -> None:
        """Set function ``f``'s keep-alive and pre-warm windows, from now on (the hybrid policy's two knobs).

        With ``prewarm_s == 0``, a replica expires ``keep_alive_s`` after it last went idle. With
        ``prewarm_s > 0`` (Shahrad et al., ATC'20): a replica that has run a request expires as soon as it
        is idle; ``prewarm_s`` after the function's last completion one replica is started if the function
        has none (a pre-warm due before now is skipped), and a replica that never ran anything expires
        ``keep_alive_s`` after it is ready. Replicas already past their new expiry expire now.

        Raises:
            ValueError: a negative or NaN window (naming it).
        """
        if not keep_alive_s >= 0:
            raise ValueError(f"keep_alive_s must be >= 0 (or inf), got {keep_alive_s!r}")
        if not (prewarm_s >= 0 and math.isfinite(prewarm_s)):
            raise ValueError(f"prewarm_s must be finite and >= 0, got {prewarm_s!r}")
        self._ka[f], self._pw[f] = float(keep_alive_s), float(prewarm_s)
        used = self._used_window(f)
        for r in self._reps[f]:
            r.expires = r.ready + keep_alive_s if r.last == -math.inf else r.idle_from + used
        due = self._last_end[f] + prewarm_s
        self._prewarm_at[f] = due if prewarm_s > 0 and due >= self.t else math.inf
        self._expire(f, self.t)

    def _used_window(self, f: int) -> float:
        """How long a replica that has run a request stays after going idle."""
        return 0.0 if self._pw[f] > 0 else self._ka[f]

    def scale(self, f: int, delta: int) -> int:
        """Start ``delta`` replicas (pre-warm) or release ``-delta`` idle ones of function ``f``, now.

        Starting stops at ``max_replicas`` and the memory budget; releasing takes replicas with no
        request assigned, the warm ones that would expire first, then starting ones.

        Returns:
            The change actually made (positive: started, negative: released).
        """
        if delta > 0:
            made = 0
            for _ in range(delta):
                if self._spawn(f, self.t) is None:
                    break
                made += 1
            return made
        if delta < 0:
            t = self.t
            free = [r for r in self._reps[f] if r.last <= t]
            free.sort(key=lambda r: (r.ready > t, r.expires))
            gone = free[:-delta]
            for r in gone:
                self._kill(f, r, t)
            return -len(gone)
        return 0

    # --- simulation --------------------------------------------------------------------------------
    def _cold_latency(self) -> float:
        if not self._cold:
            c = self.config
            draws = c.cold_start_median_s * np.exp(c.cold_start_sigma * self.rng.standard_normal(256))
            self._cold = np.clip(draws, c.cold_start_min_s, c.cold_start_max_s)[::-1].tolist()
        return self._cold.pop()

    def _spawn(self, f: int, at: float) -> _Replica | None:
        reps = self._reps[f]
        mem = self._mem[f]
        if len(reps) >= self.config.max_replicas:
            return None
        if self._used_mb + mem > self.config.memory_budget_mb + 1e-9:
            # Other functions' replicas may have expired since their last event: free their memory first.
            for g in range(self.n_functions):
                self._expire(g, at)
            if self._used_mb + mem > self.config.memory_budget_mb + 1e-9:
                return None
        r = _Replica(at, at + self._cold_latency(), self.config.concurrency, self._ka[f])
        reps.append(r)
        self._used_mb += mem
        self._started[f] += 1
        return r

    def _kill(self, f: int, r: _Replica, death: float) -> None:
        """Remove ``r`` at ``death`` (not before the current step's start) and keep its step accounting."""
        t0 = self.t
        death = max(death, t0)
        acc = self._dead_acc[f]
        acc[0] += max(0.0, death - max(r.ready, t0))
        acc[1] += max(0.0, min(r.ready, death) - max(r.born, t0))
        acc[2] += 1
        self._reps[f].remove(r)
        self._used_mb -= self._mem[f]

    def _expire(self, f: int, now: float) -> None:
        """Remove function ``f``'s replicas whose keep-alive ended at or before ``now``."""
        reps = self._reps[f]
        # Most calls find nothing to expire: one pass without allocating decides that.
        for r in reps:
            if r.expires <= now:
                break
        else:
            return
        for r in [r for r in reps if r.expires <= now]:
            self._kill(f, r, r.expires)

    def _prewarm(self, f: int) -> None:
        """Start function ``f``'s due pre-warm replica (at its due time) unless one exists already."""
        at = self._prewarm_at[f]
        self._prewarm_at[f] = math.inf
        self._expire(f, at)
        if not self._reps[f]:
            self._spawn(f, at)

    def _best_slot(self, f: int, a: float) -> tuple[float, _Replica | None, int, bool]:
        """The slot of function ``f`` that can start a request arriving at ``a`` first.

        Returns:
            (its start time (inf: none), its replica, its index, whether any slot has nothing assigned
            from ``a`` on, its replica warm or starting).
        """
        best, best_r, best_k = math.inf, None, 0
        unoccupied = False
        for r in self._reps[f]:
            base = r.ready if r.ready > a else a
            if r.last <= a:  # nothing assigned to any slot: slot 0 is as good as any
                unoccupied = True
                if base < best:
                    best, best_r, best_k = base, r, 0
                    if base == a:  # warm and idle: nothing can start it earlier
                        break
                continue
            for k, fr in enumerate(r.free):
                if fr <= a:
                    unoccupied = True
                start = fr if fr > base else base
                if start < best:
                    best, best_r, best_k = start, r, k
            if best == a:
                break
        return best, best_r, best_k, unoccupied

    def _request(self, f: int, a: float, service: float) -> None:
        """Route one request arriving at ``a``: pick a slot, maybe start a replica, queue or fail it."""
        self._expire(f, a)
        best, best_r, best_k, unoccupied = self._best_slot(f, a)
        if not unoccupied:
            # Every slot has work queued: scale out, as a concurrency-based autoscaler does.
            new = self._spawn(f, a)
            if new is not None and new.ready < best:
                best, best_r, best_k = new.ready, new, 0
        if best_r is None or best - a > self._timeout:
            self._timeouts[f].append(a + self._timeout)
            self.cold_flags[f].append(False)
            return
        end = best + service
        best_r.free[best_k] = end
        if end > best_r.last:
            best_r.last = end
            if end > best_r.idle_from:
                best_r.idle_from = end
        best_r.expires = best_r.idle_from + self._used_window(f)
        last = self._last_end[f]
        if a > last > -math.inf:
            self.idle_times[f].append(a - last)
        if end > last:
            self._last_end[f] = end
            if self._pw[f] > 0:
                self._prewarm_at[f] = end + self._pw[f]
        self._pending[f].append((best, end))
        self.latencies[f].append(end - a)
        if best_r.ready > a:
            self._cold_count[f] += 1
            self.cold_flags[f].append(True)
        else:
            self.cold_flags[f].append(False)

    def step(self) -> None:
        """Advance one control step: serve, expire idle replicas, account (:attr:`rows`, :attr:`stats`)."""
        t0 = self.t
        t1 = t0 + self.config.dt_s
        n = self.n_functions
        for f in range(n):
            self.latencies[f] = []
            self.idle_times[f] = []
            self.cold_flags[f] = []
        if n > 1 and math.isfinite(self.config.memory_budget_mb):
            self._serve_merged(t1)
        else:
            for f in range(n):
                self._serve(f, t1)
        rows, totals = self.rows, self._totals
        for f in range(n):
            self._expire(f, t1)
            row = rows[f] = self._account(f, t0, t1)
            # Python floats: cheaper than numpy for a handful of values at every step.
            totals[f] = [a + b for a, b in zip(totals[f], row, strict=True)]
        self._stats = None
        self.t = t1
        # Releases and pre-warms made before the next step belong to it.
        for f in range(n):
            self._dead_acc[f] = [0.0, 0.0, 0]
            self._started[f] = 0

    @property
    def stats(self) -> np.ndarray:
        """The last step's accounting, float64 [N_STATS, F] (rows: :class:`Stat`; a fresh copy)."""
        if self._stats is None:
            self._stats = np.array(self.rows, dtype=np.float64).T.copy()
        return self._stats.copy()

    @property
    def totals(self) -> np.ndarray:
        """The sum of every step's :attr:`stats`, float64 [N_STATS, F] (levels such as REPLICAS too)."""
        return np.array(self._totals, dtype=np.float64).T.copy()

    def _serve(self, f: int, t1: float) -> None:
        """Route function ``f``'s arrivals before ``t1``, and its pre-warms due before ``t1``."""
        arr, svc, i = self._arr[f], self._svc[f], self._next[f]
        due = self._prewarm_at
        n, j = len(arr), i
        while j < n and arr[j] < t1:
            if due[f] <= arr[j]:
                self._prewarm(f)
            self._request(f, arr[j], svc[j])
            j += 1
        if due[f] < t1:
            self._prewarm(f)
        self._next[f] = j
        self._arrived[f] = j - i

    def _serve_merged(self, t1: float) -> None:
        """Route all functions' arrivals and pre-warms before ``t1`` in time order (they share the budget)."""
        events: list[tuple[float, int, int]] = []
        for f in range(self.n_functions):
            arr, i = self._arr[f], self._next[f]
            j = bisect_left(arr, t1, lo=i)
            events.extend((arr[k], f, k) for k in range(i, j))
            self._next[f] = j
            self._arrived[f] = j - i
        events.sort()
        due = self._prewarm_at
        for a, f, k in events:
            if min(due) <= a:
                self._prewarms_until(a)
            self._request(f, a, self._svc[f][k])
        self._prewarms_until(t1, inclusive=False)

    def _prewarms_until(self, t: float, inclusive: bool = True) -> None:
        """Start the pre-warms due at or before ``t`` (before, unless ``inclusive``), in time order."""
        due = self._prewarm_at
        while True:
            at = min(due)
            if at > t or (at == t and not inclusive):
                return
            self._prewarm(due.index(at))

    def _account(self, f: int, t0: float, t1: float) -> list[float]:
        """Function ``f``'s accounting of the step [t0, t1), in :class:`Stat` order."""
        c = self.config
        warm_s, init_s, gone = self._dead_acc[f]
        dt = t1 - t0
        warm_now = 0
        for r in self._reps[f]:
            ready = r.ready
            if ready <= t0:  # the common case: warm the whole step
                warm_s += dt
                warm_now += 1
                continue
            if ready < t1:
                warm_s += t1 - ready
                warm_now += 1
            born = r.born if r.born > t0 else t0
            init_s += (ready if ready < t1 else t1) - born
        busy = 0.0
        keep: list[tuple[float, float]] = []
        for st, en in self._pending[f]:
            lo = st if st > t0 else t0
            hi = en if en < t1 else t1
            if hi > lo:
                busy += hi - lo
            if en > t1:
                keep.append((st, en))
        done = len(self._pending[f]) - len(keep)
        self._pending[f] = keep
        timeouts = self._timeouts[f]
        failed = 0
        if timeouts:
            left = [x for x in timeouts if x > t1]
            failed = len(timeouts) - len(left)
            self._timeouts[f] = left
        lat = self.latencies[f]
        n_reps = len(self._reps[f])
        busy_replica_s = busy / c.concurrency
        cpu_s = c.replica_cpu * (busy_replica_s + init_s)
        alive_s = warm_s + init_s
        idle_s = warm_s - busy_replica_s
        util = cpu_s / (c.replica_cpu * alive_s) if alive_s > 0 else 0.0
        cold = self._cold_count[f]
        self._cold_count[f] = 0
        return [
            float(self._arrived[f]),
            float(cold),
            float(failed),
            float(done),
            warm_s,
            init_s,
            busy,
            (idle_s if idle_s > 0 else 0.0) * self._mem[f],
            cpu_s,
            util if util < 1.0 else 1.0,
            float(n_reps),
            float(warm_now),
            n_reps * self._mem[f],
            float(len(keep) + len(self._timeouts[f])),
            sum(lat),
            float(len(lat)),
            float(self._started[f]),
            float(gone),
        ]
