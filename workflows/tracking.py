"""MLflow tracking, kept off the training hot path and off the start-up path.

Opening MLflow (importing it and its SQLAlchemy store, ~2 s) happens on the tracker's own thread, so
constructing a :class:`Tracker` returns at once and the caller can warm the worker pool meanwhile; the
first call that needs the store waits for it. Metrics go into a queue and the same thread writes them
in batches; the training loop never waits on the tracking store. Runs are addressed by id through
``MlflowClient`` (thread-safe), so concurrent trials never touch the fluent API's active-run stack.

The queue lives in memory and dies with the process, so it is not where metrics are kept: the driver
stores every iteration's record first, and :meth:`Tracker.log_missing` (run on ``resume`` and at the end
of each trial) logs whatever MLflow lacks of them, without duplicating what it has.

Work that belongs to a finished run (logging its model) can run on a small pool as soon as the run ends
(:meth:`Tracker.on_run_end`, :meth:`Tracker.submit_job`) instead of all at the end of a sweep.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ftg_common.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

_FLUSH: Any = ("flush",)
# Model logging is mostly SQLite and file writes; more threads than this only contend for the GIL with
# the trials still training.
_JOB_WORKERS = 2


def _report_failure(future: Future[Any], run_id: str, name: str) -> None:
    # Whoever waits on the job gets the exception too; this is for the jobs nobody waits on (a resumed
    # trial whose sweep is not finalized in the same command).
    exc = None if future.cancelled() else future.exception()
    if exc is not None:
        log.error("MLflow job %r of run %s failed: %s", name, run_id, exc, exc_info=exc)


class RunRef:
    """The id of an MLflow run that may still be being created on the tracker's job pool.

    Args:
        source: the id itself, a future of ``{key: id}`` (:func:`workflows.sweep_runs.open_sweep_runs`),
            or None (no run).
        key: this run's key in that mapping.
    """

    def __init__(self, source: str | Future[Mapping[str, str]] | None, key: str = "") -> None:
        self._source = source
        self._key = key

    def _resolve(self, future: Future[Mapping[str, str]], timeout: float | None) -> str | None:
        try:
            return future.result(timeout).get(self._key)
        except TimeoutError:
            raise
        except Exception:  # reported by the job's own callback; tracking is lost, training is not
            return None

    def peek(self) -> str | None:
        """The id if the run exists now; None while it is being created (or if creating it failed)."""
        if isinstance(self._source, Future):
            return self._resolve(self._source, None) if self._source.done() else None
        return self._source

    @property
    def pending(self) -> bool:
        """True while the run is still being created."""
        return isinstance(self._source, Future) and not self._source.done()

    def wait(self, timeout: float | None = None) -> str | None:
        """The id once the run exists (None if there is no run or creating it failed).

        Raises:
            TimeoutError: still being created after ``timeout`` seconds.
        """
        if isinstance(self._source, Future):
            return self._resolve(self._source, timeout)
        return self._source


class TrackingUnavailable(RuntimeError):
    """MLflow could not be opened (import, tracking store or experiment)."""


class Tracker:
    """One experiment's runs, params, metrics, artifacts and per-run background jobs.

    Args:
        settings: ``tracking_uri`` (else MLflow's own default) and ``mlflow_experiment``.
        flush_seconds: longest time a queued metric waits before it is written.
        deferred: wait for :meth:`start` (or the first use of the client) before opening MLflow, so a
            caller that is itself starting up (warming worker processes) is not slowed by its import.
    """

    def __init__(self, settings: Settings, flush_seconds: float = 1.0, deferred: bool = False) -> None:
        self._settings = settings
        self._flush_seconds = flush_seconds
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._client: MlflowClient | None = None
        self._experiment_id = ""
        self.mlflow: Any = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._listeners: list[Callable[[str, str], None]] = []
        self._jobs: dict[tuple[str, str], Future[Any]] = {}
        self._jobs_lock = threading.Lock()
        self._job_pool: ThreadPoolExecutor | None = None
        self._go = threading.Event()
        if not deferred:
            self._go.set()
        self._thread = threading.Thread(target=self._run, name="mlflow-writer", daemon=True)
        self._thread.start()

    def start(self) -> None:
        """Begin opening MLflow now (a deferred tracker); a no-op otherwise."""
        self._go.set()

    # --- the connection ----------------------------------------------------------------------------
    def _connect(self) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        if self._settings.tracking_uri:
            mlflow.set_tracking_uri(self._settings.tracking_uri)
        client = MlflowClient()
        name = self._settings.mlflow_experiment
        exp = client.get_experiment_by_name(name)
        if exp is None:
            # The experiment kind makes the MLflow UI open on the training-runs view.
            self._experiment_id = client.create_experiment(
                name, tags={"mlflow.experimentKind": "custom_model_development"}
            )
        else:
            self._experiment_id = exp.experiment_id
        self.mlflow, self._client = mlflow, client

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until MLflow is open.

        Raises:
            TrackingUnavailable: opening it failed, or ``timeout`` passed first.
        """
        self._go.set()
        if not self._ready.wait(timeout):
            raise TrackingUnavailable(f"MLflow did not open within {timeout}s")
        if self._error is not None:
            raise TrackingUnavailable(f"cannot open MLflow tracking: {self._error}") from self._error

    @property
    def client(self) -> MlflowClient:
        """The MLflow client, once MLflow is open."""
        self.wait_ready()
        assert self._client is not None
        return self._client

    @property
    def experiment_id(self) -> str:
        """The experiment's id, once MLflow is open."""
        self.wait_ready()
        return self._experiment_id

    # --- runs --------------------------------------------------------------------------------------
    def start_parent(self, name: str, tags: dict[str, str]) -> str:
        """Create a top-level run (a sweep); returns its id."""
        run_id: str = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        return run_id

    def start_child(self, parent_id: str, name: str, tags: dict[str, str]) -> str:
        """Create a run nested under ``parent_id`` (a trial); returns its id."""
        tags = {**tags, "mlflow.parentRunId": parent_id}
        run_id: str = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        return run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Log params now, values as strings cut to MLflow's length limit."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags now."""
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float | None],
        step: int,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queued; written by the background thread.

        The queue is lost with the process; callers that must not lose rows keep their own record and
        repair from it with :meth:`log_missing`.

        Args:
            run_id: the MLflow run.
            metrics: name -> value (None values skipped).
            step: the rows' step.
            timestamp_ms: the rows' timestamp (epoch ms); now when None. A row logged again with the
                same key, step, value and timestamp is one row to MLflow's SQL store.
        """
        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        for key, value in metrics.items():
            if value is not None:
                self._queue.put((run_id, key, float(value), step, ts))

    def log_missing(self, run_id: str, rows: Sequence[tuple[int, int, Mapping[str, float]]]) -> int:
        """Log every (key, step) of ``rows`` that the run's metric history lacks; idempotent.

        Args:
            run_id: the MLflow run.
            rows: ``(step, timestamp_ms, {key: value})`` per step (one row per key and step wanted).

        Returns:
            How many metric rows were logged.
        """
        from mlflow.entities import Metric

        keys = sorted({k for _, _, metrics in rows for k in metrics})
        missing: list[Metric] = []
        for key in keys:
            have = {m.step for m in self.client.get_metric_history(run_id, key)}
            for step, ts, metrics in rows:
                if key in metrics and step not in have:
                    missing.append(Metric(key, float(metrics[key]), ts, step))
                    have.add(step)
        for i in range(0, len(missing), 900):
            self.client.log_batch(run_id, metrics=missing[i : i + 900])
        return len(missing)

    def log_metrics_once(self, run_id: str, metrics: Mapping[str, float | None], step: int = 0) -> int:
        """Log now those of ``metrics`` the run has no value for yet (None values skipped); idempotent.

        For values logged once per run (a trial's summary, a sweep's results), so finalizing again after
        a crash or a resume adds no second row.

        Returns:
            How many metrics were logged.
        """
        from mlflow.entities import Metric

        have = self.client.get_run(run_id).data.metrics
        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None and k not in have]
        if batch:
            self.client.log_batch(run_id, metrics=batch)
        return len(batch)

    def log_metrics_now(self, run_id: str, metrics: dict[str, float | None], step: int = 0) -> None:
        """Log metrics now (None values skipped), bypassing the queue."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Store ``text`` as the run's artifact ``artifact_file``."""
        self.client.log_text(run_id, text, artifact_file)

    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Copy the file ``local_path`` into the run's artifacts (under the folder ``artifact_path``)."""
        self.client.log_artifact(run_id, str(local_path), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Write the run's queued metrics, mark it terminated, then tell the :meth:`on_run_end` listeners."""
        self.flush()
        self.client.set_terminated(run_id, status=status)
        for listener in list(self._listeners):
            try:
                listener(run_id, status)
            except Exception:  # a listener's bug must not fail the trial that just finished
                log.exception("run-end listener failed for MLflow run %s", run_id)

    def reopen(self, run_id: str) -> None:
        """Mark a terminated run running again (a resumed trial)."""
        self.client.update_run(run_id, status="RUNNING")

    # --- per-run background jobs -------------------------------------------------------------------
    def on_run_end(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(mlflow_run_id, status)`` after every :meth:`end_run`, on the ending thread."""
        self._listeners.append(listener)

    def submit_job(self, run_id: str, name: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on the tracker's job pool, findable later as ``job(run_id, name)``.

        A job already submitted under the same (run, name) is returned instead of starting another.
        """
        with self._jobs_lock:
            existing = self._jobs.get((run_id, name))
            if existing is not None:
                return existing
            if self._job_pool is None:
                self._job_pool = ThreadPoolExecutor(max_workers=_JOB_WORKERS, thread_name_prefix="mlflow-job")
            future = self._job_pool.submit(fn, *args)
            future.add_done_callback(lambda f: _report_failure(f, run_id, name))
            self._jobs[(run_id, name)] = future
            return future

    def job(self, run_id: str, name: str) -> Future[Any] | None:
        """The job submitted as (run_id, name), if any."""
        with self._jobs_lock:
            return self._jobs.get((run_id, name))

    # --- background writer -------------------------------------------------------------------------
    def _run(self) -> None:
        self._go.wait()
        try:
            self._connect()
        except BaseException as exc:  # reported to whoever needs the store (wait_ready)
            self._error = exc
        finally:
            self._ready.set()
        self._drain()

    def _warm_up(self) -> None:
        # Paid once training runs (the caller mostly waits on its workers then), instead of at start-up,
        # where it would compete with the workers' own start, or by the first model logged at the end.
        try:
            from workflows.models import warm_up

            warm_up()
        except Exception:
            log.debug("model-logging warm-up failed; the first model logged pays for it", exc_info=True)

    def _drain(self) -> None:
        pending: dict[str, list[Any]] = {}
        last_write = time.monotonic()
        warmed = self._error is not None
        while True:
            try:
                item = self._queue.get(timeout=self._flush_seconds)
            except queue.Empty:
                self._write(pending)
                last_write = time.monotonic()
                continue
            try:
                if item is None or item is _FLUSH:
                    self._write(pending)
                    last_write = time.monotonic()
                    if item is None:
                        return
                    continue
                pending.setdefault(item[0], []).append(item[1:])
                if not warmed:  # the first metric: an iteration has finished, start-up is over
                    warmed = True
                    self._warm_up()
                if time.monotonic() - last_write > self._flush_seconds:
                    self._write(pending)
                    last_write = time.monotonic()
            finally:
                self._queue.task_done()

    def _write(self, pending: dict[str, list[Any]]) -> None:
        if self._error is not None:  # no store: what was queued is dropped, and flush() still returns
            pending.clear()
            return
        if not pending:
            return
        from mlflow.entities import Metric

        for run_id, items in list(pending.items()):
            metrics = [Metric(key, value, ts, step) for key, value, step, ts in items]
            for i in range(0, len(metrics), 900):
                try:
                    self.client.log_batch(run_id, metrics=metrics[i : i + 900])
                except Exception:  # the writer must outlive a store error, or flush() would never return
                    log.exception("dropped %d metrics of MLflow run %s", len(metrics[i : i + 900]), run_id)
        pending.clear()

    def flush(self) -> None:
        """Block until everything queued so far is written."""
        self._go.set()  # a deferred tracker that was never started would otherwise never drain
        self._queue.put(_FLUSH)
        self._queue.join()

    def close(self) -> None:
        """Wait for the background jobs, write what is queued, and stop the writer thread."""
        with self._jobs_lock:
            pool, self._job_pool = self._job_pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._go.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
