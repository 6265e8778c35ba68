"""What the function runtime spent during a sweep: idle GB-s of warm capacity and cold starts.

Billed GB-s come from the trials themselves (call seconds x memory limit, :mod:`workflows.cost`). What
the calls cannot see is the capacity kept warm between them and the replicas started for them; that is
read from the runtime, once when a sweep's trials start and once when they end, and the difference is
the sweep's:

* **through a gateway** (``FTG_GATEWAY_URL=http(s)://...``): its Prometheus ``/metrics``, the counters
  ``gateway_idle_gb_seconds_total``, ``gateway_billed_gb_seconds_total`` and the histogram
  ``gateway_cold_start_seconds`` (:mod:`workflows.gateway.metrics`). The gateway is shared: calls of
  anything else running on it in the meantime are counted too. A gateway without those series (a stock
  OpenFaaS gateway has no idle GB-s) gives "unknown", never 0;
* **on the embedded warm pool**: each worker's ready seconds minus its busy seconds, times the largest
  memory limit of the functions it serves (any worker serves any function, so it reserves the largest;
  :meth:`~workflows.engines.invokers.PoolInvoker.usage`). The pool is started and warmed before the first
  trial, so it has **no cold starts**: 0;
* **in-process** (``FTG_LOCAL_WORKERS=0``): nothing is kept warm beside the driver: 0 and 0.

Parsing and differencing are pure functions (:func:`parse_metrics`, :meth:`RuntimeCounters.since`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ftg_common import layout

if TYPE_CHECKING:
    from ftg_common.settings import Settings
    from ftg_common.store.base import ObjectStore
    from workflows.cost import SweepCost
    from workflows.engines.base import Engine

__all__ = [
    "RuntimeCounters",
    "SweepRuntime",
    "measure_segment",
    "parse_metrics",
    "runtime_probe",
    "scrape",
    "sweep_cost_of",
]

log = logging.getLogger(__name__)

IDLE = "gateway_idle_gb_seconds_total"
BILLED = "gateway_billed_gb_seconds_total"
COLD_COUNT = "gateway_cold_start_seconds_count"
COLD_SUM = "gateway_cold_start_seconds_sum"
# Family name (as the parser reports it: a counter's without ``_total``) -> the sample names summed.
_SERIES = {
    "gateway_idle_gb_seconds": (IDLE,),
    "gateway_billed_gb_seconds": (BILLED,),
    "gateway_cold_start_seconds": (COLD_COUNT, COLD_SUM),
}


def _since(end: float | None, start: float | None) -> float | None:
    """A counter's increase; an end below the start means a reset (the gateway restarted), as in PromQL."""
    if end is None or start is None:
        return None
    return end - start if end >= start else end


@dataclass(frozen=True)
class RuntimeCounters:
    """Cumulative runtime counters at one moment (or, from :meth:`since`, over an interval).

    None means the runtime does not report that figure (unknown), not zero.

    Attributes:
        idle_gb_s: seconds ready replicas (workers) served no call, times the memory they reserve.
        cold_starts: calls that waited for a replica to start.
        cold_start_s: seconds those calls waited.
        billed_gb_s: call seconds at the replicas times memory, as the runtime counts them.
    """

    idle_gb_s: float | None = 0.0
    cold_starts: float | None = 0.0
    cold_start_s: float | None = 0.0
    billed_gb_s: float | None = None

    def since(self, start: RuntimeCounters) -> RuntimeCounters:
        """What accrued from ``start`` to these counters, field by field."""
        return RuntimeCounters(
            _since(self.idle_gb_s, start.idle_gb_s),
            _since(self.cold_starts, start.cold_starts),
            _since(self.cold_start_s, start.cold_start_s),
            _since(self.billed_gb_s, start.billed_gb_s),
        )

    def plus(self, other: RuntimeCounters) -> RuntimeCounters:
        """Two intervals' counters together (a resumed sweep's segments); unknown stays unknown."""

        def add(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a + b

        return RuntimeCounters(
            add(self.idle_gb_s, other.idle_gb_s),
            add(self.cold_starts, other.cold_starts),
            add(self.cold_start_s, other.cold_start_s),
            add(self.billed_gb_s, other.billed_gb_s),
        )

    def as_dict(self) -> dict[str, float | None]:
        """JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeCounters:
        """Read back what :meth:`as_dict` wrote (unknown keys ignored)."""
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


def parse_metrics(text: str) -> RuntimeCounters:
    """The gateway's counters in a Prometheus text exposition, summed over functions.

    A series family absent from ``text`` is None (the gateway does not report it).

    Raises:
        ValueError: ``text`` is not a Prometheus text exposition.
    """
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        # A family declared with no samples yet (no cold start so far) counts 0, not unknown.
        for name in _SERIES.get(family.name, ()):
            totals.setdefault(name, 0.0)
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += float(sample.value)
    return RuntimeCounters(
        idle_gb_s=totals.get(IDLE),
        cold_starts=totals.get(COLD_COUNT),
        cold_start_s=totals.get(COLD_SUM),
        billed_gb_s=totals.get(BILLED),
    )


def scrape(gateway_url: str, timeout: float = 5.0) -> RuntimeCounters:
    """Read the counters from ``<gateway_url>/metrics``.

    Raises:
        OSError: the gateway did not answer (``urllib.error.URLError`` is one).
        ValueError: the answer is not a Prometheus exposition.
    """
    import urllib.request  # here: the sweep's CLI should not pay for it unless it scrapes

    # Straight to the gateway: a proxy from the environment has no business with a local scrape.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{gateway_url.rstrip('/')}/metrics", timeout=timeout) as resp:
        return parse_metrics(resp.read().decode("utf-8"))


Probe = Callable[[], "RuntimeCounters | None"]


def _scraper(gateway_url: str) -> Probe:
    def probe() -> RuntimeCounters | None:
        try:
            return scrape(gateway_url)
        except (OSError, ValueError) as exc:  # the sweep runs on; its cost report says "unknown"
            log.warning("cannot read the gateway's counters at %s/metrics: %s", gateway_url, exc)
            return None

    return probe


def runtime_probe(settings: Settings, engine: Engine) -> tuple[str, Probe]:
    """Where the runtime's counters come from for this engine, and the function reading them.

    Returns:
        (a short description of the source, a function returning the counters now, or None when they
        cannot be read).
    """
    from workflows.engines.invokers import PoolInvoker, RoutingInvoker

    gateway = engine.gateway
    if gateway.startswith(("http://", "https://")):
        return f"gateway {gateway}", _scraper(gateway)
    invoker = getattr(engine, "invoker", None)
    local = invoker.local if isinstance(invoker, RoutingInvoker) else invoker
    if isinstance(local, PoolInvoker):
        pool = local

        def pool_probe() -> RuntimeCounters:
            usage = pool.usage()
            # Warmed before the first trial: no call waits for a worker to start.
            return RuntimeCounters(usage.idle_gb_s, 0.0, 0.0, None)

        return f"warm pool of {pool.workers}", pool_probe
    return "in-process", lambda: RuntimeCounters(0.0, 0.0, 0.0, None)


@dataclass(frozen=True)
class SweepRuntime:
    """What the runtime spent while a sweep's trials ran, every segment (submit, each resume) added.

    Attributes:
        wall_s: seconds the trials ran.
        counters: the runtime's counters over those seconds; None when a segment's could not be read.
        source: where the counters came from (the last segment's source).
        segments: how many runs of the trials were measured.
    """

    wall_s: float
    counters: RuntimeCounters | None
    source: str
    segments: int = 1

    def plus(self, later: SweepRuntime) -> SweepRuntime:
        """This and a later segment together."""
        both = None
        if self.counters is not None and later.counters is not None:
            both = self.counters.plus(later.counters)
        return SweepRuntime(self.wall_s + later.wall_s, both, later.source, self.segments + later.segments)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        counters = None if self.counters is None else self.counters.as_dict()
        return {"wall_s": self.wall_s, "counters": counters, "source": self.source, "segments": self.segments}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepRuntime:
        """Read back what :meth:`as_dict` wrote."""
        counters = data.get("counters")
        return cls(
            float(data["wall_s"]),
            None if counters is None else RuntimeCounters.from_dict(counters),
            str(data.get("source", "")),
            int(data.get("segments", 1)),
        )


def load_runtime(store: ObjectStore, sweep_id: str) -> SweepRuntime | None:
    """The sweep's runtime record, or None before its trials first ran (or for a sweep made without it)."""
    from ftg_common.errors import CorruptObjectError
    from ftg_common.store.base import KeyNotFoundError

    try:
        return SweepRuntime.from_dict(store.get_json(layout.sweep_runtime_key(sweep_id)))
    except (KeyNotFoundError, CorruptObjectError, KeyError, TypeError, ValueError):
        return None


@contextmanager
def measure_segment(
    store: ObjectStore, sweep_id: str, source: str, probe: Probe, clock: Callable[[], float] = time.monotonic
) -> Iterator[None]:
    """Read the runtime's counters around the block and add the difference to the sweep's record.

    Recorded even when the block raises (failed trials and Ctrl-C still spent what they spent).
    """
    start, t0 = probe(), clock()
    try:
        yield
    finally:
        end, wall = probe(), clock() - t0
        counters = None if start is None or end is None else end.since(start)
        segment = SweepRuntime(wall, counters, source)
        before = load_runtime(store, sweep_id)
        total = segment if before is None else before.plus(segment)
        try:
            store.put_json(layout.sweep_runtime_key(sweep_id), total.as_dict())
        except Exception:  # the trials' results matter more than their cost report
            log.exception("cannot record the runtime counters of sweep %s", sweep_id)


def sweep_cost_of(
    runtime: SweepRuntime | None, billed_gb_s: float, usd_per_gb_s: float, dedicated_usd_per_hour: float
) -> SweepCost | None:
    """The sweep's cost report: billed GB-s from its trials, the rest from its runtime record (or None)."""
    from workflows.cost import sweep_cost

    if runtime is None:
        return None
    c = runtime.counters
    return sweep_cost(
        runtime.wall_s,
        billed_gb_s,
        None if c is None else c.idle_gb_s,
        None if c is None else c.cold_starts,
        usd_per_gb_s,
        dedicated_usd_per_hour,
        runtime.source,
    )
