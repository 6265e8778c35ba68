"""The gateway's Prometheus series: OpenFaaS's names, plus cold starts, replicas, queue depth and GB-s.

OpenFaaS's own: ``gateway_function_invocation_total{function_name,code}`` (counter),
``gateway_functions_seconds{function_name,code}`` (histogram), ``gateway_service_count{function_name}``
(replicas) and ``gateway_function_invocation_started{function_name}``. The last is exposed under exactly
that name, as OpenFaaS's Go client does; the Python client would add ``_total`` to a counter, so it is
written by a collector as an untyped series (``rate()`` works on it all the same).

Added here:

* ``gateway_cold_start_seconds{function_name}``: per call that waited for a replica to start, how long;
* ``gateway_replica_start_seconds{function_name}``: per replica, process start to health check answered;
* ``gateway_replicas{function_name,state}``: replicas starting, ready and draining;
* ``gateway_billed_gb_seconds_total{function_name}``: call seconds at a replica x memory limit;
* ``gateway_idle_gb_seconds_total{function_name}``: seconds a ready replica served no call x memory limit;
* ``gateway_queue_depth``: async calls queued, when there is a queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric, UnknownMetricFamily
from prometheus_client.registry import Collector

# Cold starts here run from ~0.2 s (a light handler) to several seconds (torch, or a burst on 2 cores).
COLD_START_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class _LiveSeries(Collector):
    """Series computed at scrape time from the fleet (idle time keeps accruing between calls)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        started = UnknownMetricFamily(
            "gateway_function_invocation_started", "Function invocations started", labels=["function_name"]
        )
        with self.metrics.lock:
            counts = dict(self.metrics.started)
        for name, count in counts.items():
            started.add_metric([name], count)
        yield started
        if self.metrics.idle_sampler is None:
            return
        idle = CounterMetricFamily(
            "gateway_idle_gb_seconds",
            "Seconds ready replicas served no call, times their memory limit in GB",
            labels=["function_name"],
        )
        for name, value in self.metrics.idle_sampler().items():
            idle.add_metric([name], value)
        yield idle


class GatewayMetrics:
    """The gateway's registry and series, and per-function invocation counts for ``/system/functions``."""

    def __init__(self, functions: Iterable[str]) -> None:
        names = list(functions)
        self.registry = CollectorRegistry()
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(names, 0)
        self.started = dict.fromkeys(names, 0)
        # Idle GB-s per function so far, from the fleet: it accrues between calls, so it is read at scrape.
        self.idle_sampler: Callable[[], Mapping[str, float]] | None = None
        r = self.registry
        self.invocations = Counter(
            "gateway_function_invocation", "Function invocations", ["function_name", "code"], registry=r
        )
        self.seconds = Histogram(
            "gateway_functions_seconds", "Function call duration", ["function_name", "code"], registry=r
        )
        self.service_count = Gauge(
            "gateway_service_count", "Replicas per function", ["function_name"], registry=r
        )
        self.replicas = Gauge(
            "gateway_replicas", "Replicas per function and state", ["function_name", "state"], registry=r
        )
        self.cold_starts = Histogram(
            "gateway_cold_start_seconds",
            "Seconds a call waited for a replica to start",
            ["function_name"],
            buckets=COLD_START_BUCKETS,
            registry=r,
        )
        self.replica_starts = Histogram(
            "gateway_replica_start_seconds",
            "Seconds from a replica's process start to its first health check answered",
            ["function_name"],
            buckets=COLD_START_BUCKETS,
            registry=r,
        )
        self.billed = Counter(
            "gateway_billed_gb_seconds",
            "Call seconds at a replica times the function's memory limit in GB",
            ["function_name"],
            registry=r,
        )
        self.queue_depth = Gauge("gateway_queue_depth", "Async calls queued", registry=r)
        r.register(_LiveSeries(self))
        for name in names:
            self.service_count.labels(function_name=name).set(0)
            self.billed.labels(function_name=name)
            for state in ("starting", "ready", "draining"):
                self.replicas.labels(function_name=name, state=state).set(0)

    def call_started(self, function: str) -> None:
        """A call of ``function`` arrived."""
        with self.lock:
            self.started[function] = self.started.get(function, 0) + 1

    def observe(self, function: str, code: int, seconds: float, billed_gb_s: float = 0.0) -> None:
        """Record one invocation of ``function`` that answered ``code`` after ``seconds``."""
        self.invocations.labels(function_name=function, code=str(code)).inc()
        self.seconds.labels(function_name=function, code=str(code)).observe(seconds)
        if billed_gb_s > 0:
            self.billed.labels(function_name=function).inc(billed_gb_s)
        with self.lock:
            self.counts[function] = self.counts.get(function, 0) + 1

    def cold_start(self, function: str, seconds: float) -> None:
        """A call of ``function`` waited ``seconds`` for a replica to start."""
        self.cold_starts.labels(function_name=function).observe(seconds)

    def replica_started(self, function: str, seconds: float) -> None:
        """A replica of ``function`` became ready ``seconds`` after its process started."""
        self.replica_starts.labels(function_name=function).observe(seconds)

    def set_replicas(self, function: str, by_state: Mapping[str, int]) -> None:
        """The replica gauges of ``function``: ``gateway_service_count`` is starting + ready."""
        for state in ("starting", "ready", "draining"):
            self.replicas.labels(function_name=function, state=state).set(by_state.get(state, 0))
        self.service_count.labels(function_name=function).set(
            by_state.get("starting", 0) + by_state.get("ready", 0)
        )

    def invocation_count(self, function: str) -> int:
        """Calls of ``function`` answered so far."""
        with self.lock:
            return self.counts.get(function, 0)
