"""MLflow tracking, kept off the training hot path.

Metrics go into a queue and a background thread writes them in batches; the training loop never waits
on the tracking store. Runs are addressed by id through ``MlflowClient`` (thread-safe), so concurrent
trials never touch the fluent API's active-run stack.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from ftg_common.settings import Settings

_FLUSH: Any = ("flush",)


class Tracker:
    def __init__(self, settings: Settings, flush_seconds: float = 1.0) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        if settings.tracking_uri:
            mlflow.set_tracking_uri(settings.tracking_uri)
        self.mlflow = mlflow
        self.client = MlflowClient()
        exp = self.client.get_experiment_by_name(settings.mlflow_experiment)
        if exp is None:
            # The experiment kind makes the MLflow UI open on the training-runs view.
            self.experiment_id = self.client.create_experiment(
                settings.mlflow_experiment, tags={"mlflow.experimentKind": "custom_model_development"}
            )
        else:
            self.experiment_id = exp.experiment_id
        self._queue: queue.Queue[Any] = queue.Queue()
        self._flush_seconds = flush_seconds
        self._thread = threading.Thread(target=self._drain, name="mlflow-writer", daemon=True)
        self._thread.start()

    # --- runs --------------------------------------------------------------------------------------
    def start_parent(self, name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def start_child(self, parent_id: str, name: str, tags: dict[str, str]) -> str:
        tags = {**tags, "mlflow.parentRunId": parent_id}
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, run_id: str, metrics: dict[str, float | None], step: int) -> None:
        """Queued; written by the background thread."""
        for key, value in metrics.items():
            if value is not None:
                self._queue.put((run_id, key, float(value), step))

    def log_metrics_now(self, run_id: str, metrics: dict[str, float | None], step: int = 0) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.flush()
        self.client.set_terminated(run_id, status=status)

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    # --- background writer -------------------------------------------------------------------------
    def _drain(self) -> None:
        from mlflow.entities import Metric

        pending: dict[str, list[Metric]] = {}
        last_write = time.monotonic()
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
                run_id, key, value, step = item
                pending.setdefault(run_id, []).append(Metric(key, value, int(time.time() * 1000), step))
                if time.monotonic() - last_write > self._flush_seconds:
                    self._write(pending)
                    last_write = time.monotonic()
            finally:
                self._queue.task_done()

    def _write(self, pending: dict[str, list[Any]]) -> None:
        for run_id, metrics in list(pending.items()):
            for i in range(0, len(metrics), 900):
                self.client.log_batch(run_id, metrics=metrics[i : i + 900])
        pending.clear()

    def flush(self) -> None:
        """Block until everything queued so far is written."""
        self._queue.put(_FLUSH)
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
