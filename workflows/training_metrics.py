"""Training progress as Prometheus metrics, served by the driver (``submit --metrics-port``).

Fed by the same per-iteration :class:`~workflows.driver.TrialProgress` the progress display gets, so it
costs the training loop a few dictionary updates per iteration. Labelled by trial (``run_id``) and sweep
configuration (``config``), so one dashboard shows an A/B sweep's arms side by side:

- ``ftg_env_steps`` (gauge): environment steps taken so far;
- ``ftg_env_steps_per_second`` (gauge): recent collection + update throughput;
- ``ftg_iterations_total`` (counter) and ``ftg_iteration_seconds`` (histogram): DAG iterations and
  their wall time;
- ``ftg_episode_return`` and ``ftg_eval_return`` (gauges): mean training-episode return of the last
  iteration, and the last evaluation's mean return;
- ``ftg_trials`` (gauge, by ``status``): trials running and finished.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from workflows.driver import TrialProgress

_ITERATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class TrainingMetrics:
    """A progress observer that keeps the metrics above in its own registry.

    Args:
        registry: where the metrics live (a new one when omitted, so two drivers in one process, or a
            test, do not collide in the global registry).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ("run_id", "config")
        r = self.registry
        self.steps = Gauge("ftg_env_steps", "Environment steps taken", labels, registry=r)
        self.sps = Gauge(
            "ftg_env_steps_per_second", "Recent environment steps per second", labels, registry=r
        )
        self.iterations = Counter("ftg_iterations", "DAG iterations completed", labels, registry=r)
        self.iteration_s = Histogram(
            "ftg_iteration_seconds",
            "Wall time of one DAG iteration",
            ("config",),
            registry=r,
            buckets=_ITERATION_BUCKETS,
        )
        self.train_return = Gauge("ftg_episode_return", "Mean training-episode return", labels, registry=r)
        self.eval_return = Gauge("ftg_eval_return", "Mean return of the last evaluation", labels, registry=r)
        self.trials = Gauge("ftg_trials", "Trials by status", ("status",), registry=r)
        self._status: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: Any = None

    def __call__(self, p: TrialProgress) -> None:
        """Record one trial's progress (called after each of its iterations and when it ends)."""
        key = (p.run_id, p.config_name)
        self.steps.labels(*key).set(p.steps)
        if p.steps_per_second is not None:
            self.sps.labels(*key).set(p.steps_per_second)
        if p.train_return is not None:
            self.train_return.labels(*key).set(p.train_return)
        if p.eval_return is not None:
            self.eval_return.labels(*key).set(p.eval_return)
        if p.iteration_s is not None:
            self.iterations.labels(*key).inc()
            self.iteration_s.labels(p.config_name).observe(p.iteration_s)
        with self._lock:
            before = self._status.get(p.run_id)
            if before != p.status:
                if before is not None:
                    self.trials.labels(before).dec()
                self.trials.labels(p.status).inc()
                self._status[p.run_id] = p.status

    def serve(self, port: int, addr: str = "127.0.0.1") -> TrainingMetrics:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread (port 0: any free port); returns self."""
        self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
        return self

    @property
    def port(self) -> int:
        """The port being served (after :meth:`serve`)."""
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
