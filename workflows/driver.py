"""The driver of one run: submits one Workflow per iteration (or per K on Argo), reads results, tracks.

Everything it needs to continue lives in the stores (run record, checkpoints, carried env state), so a
killed driver is resumed by starting a new one on the same run id.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ftg_common import catalog, layout, tracing
from ftg_common.catalog import AGGREGATE, EVALUATE, UPDATE
from ftg_common.config import RunConfig
from ftg_common.errors import CorruptObjectError
from ftg_common.meta.base import MetaStore
from ftg_common.schemas import AggregateResult, AppendResult, EvalResult, UpdateResult
from ftg_common.store.base import KeyNotFoundError, ObjectStore
from workflows import metric_names as mn
from workflows.cost import invocation_gb_seconds
from workflows.engines.base import Engine, FunctionCallError, WorkflowRun
from workflows.tracking import RunRef

if TYPE_CHECKING:
    from workflows.tracking import Tracker

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_SECONDS = 120.0
# Waits between attempts of a store or metadata call that failed transiently: bounded, about 15 s in all.
RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
# Exception classes (by module.name, anywhere in the MRO) that mean "no answer", not a wrong answer.
_TRANSIENT_CLASSES = frozenset(
    {
        "redis.exceptions.ConnectionError",
        "redis.exceptions.TimeoutError",
        "botocore.exceptions.ConnectionError",  # endpoint unreachable, connect timeout
        "botocore.exceptions.HTTPClientError",  # read timeout, connection closed mid-response
    }
)
_TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling", "503", "500"}
)


class RunFailed(RuntimeError):
    """The run cannot go on: a failed iteration, a lost lease, or a config clashing with the stored one."""


def is_transient(exc: BaseException) -> bool:
    """True for a store or metadata error worth retrying: no answer came (connection, timeout, busy).

    A missing key, a corrupt object or any other answer is not transient: retrying reads the same.
    """
    if isinstance(exc, KeyNotFoundError | CorruptObjectError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text
    names = {f"{c.__module__}.{c.__name__}" for c in type(exc).__mro__}
    if names & _TRANSIENT_CLASSES:
        return True
    response = getattr(exc, "response", None)  # botocore ClientError: throttling and 5xx answers
    if "botocore.exceptions.ClientError" in names and isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in _TRANSIENT_S3_CODES or (isinstance(status, int) and status >= 500)
    return False


def describe_call_error(exc: FunctionCallError) -> str:
    """A function's error answer for a person: its ``error`` and the ``key`` at fault when it names one."""
    try:
        body = json.loads(exc.body)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        text = f"{exc.function} answered {exc.status}: {body['error']}"
        if body.get("key"):
            text += f" (key {body['key']})"
        return text
    return str(exc)


def _failed_node_errors(wf: WorkflowRun) -> str:
    """The error answers of a Workflow's failed nodes, each with the key it names (if any)."""
    found = []
    for node in wf.failed_nodes():
        try:
            body = json.loads(node.result or "")
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("error"):
            key = f" (key {body['key']})" if body.get("key") else ""
            found.append(f"{node.name}: {body['error']}{key}")
    return "; ".join(found)


@dataclass(frozen=True)
class IterationRecord:
    """The driver's record of one committed iteration (``layout.metrics_key``), the source of truth.

    The run's :class:`RunSummary` and its MLflow history are functions of these records, so they can
    be rebuilt after any crash.

    Attributes:
        iteration: the iteration.
        steps: environment steps of the run after it (the MLflow step).
        time_ms: when it was recorded (epoch ms); the timestamp of its MLflow rows.
        elapsed_s: wall time of its Workflow (of the recovery, for a recovered record).
        eval_s: part of ``elapsed_s`` spent evaluating.
        gb_s: serverless cost of its calls.
        invocations: function calls it made, retries included.
        metrics: the per-iteration MLflow metrics, by name (undefined ones left out).
        recovered: rebuilt by ``resume`` from the committed objects (its time and cost are not the
            original Workflow's).
    """

    iteration: int
    steps: int
    time_ms: int
    elapsed_s: float
    eval_s: float
    gb_s: float
    invocations: int
    metrics: dict[str, float]
    recovered: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IterationRecord:
        """Read a stored record."""
        return cls(
            iteration=int(d["iteration"]),
            steps=int(d["steps"]),
            time_ms=int(d["time_ms"]),
            elapsed_s=float(d["elapsed_s"]),
            eval_s=float(d["eval_s"]),
            gb_s=float(d["gb_s"]),
            invocations=int(d["invocations"]),
            metrics={str(k): float(v) for k, v in d["metrics"].items()},
            recovered=bool(d.get("recovered", False)),
        )

    def as_dict(self) -> dict[str, Any]:
        """The record as stored (JSON-ready)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def eval_return(self) -> float | None:
        """Mean return of the evaluation after this iteration, if there was one."""
        return self.metrics.get(mn.EVAL_MEAN_RETURN)


@dataclass
class TrialProgress:
    """What the progress display and the tracker learn after every iteration."""

    run_id: str
    config_name: str
    seed: int
    iteration: int
    n_iterations: int
    steps: int
    total_steps: int
    status: str = "running"
    train_return: float | None = None
    eval_return: float | None = None
    steps_per_second: float | None = None
    eta_seconds: float | None = None
    message: str = ""
    iteration_s: float | None = None  # wall time of the iteration just completed


@dataclass
class RunSummary:
    """Accumulated per run, persisted in the run record's ``extra.summary`` after every iteration."""

    wall_s: float = 0.0
    eval_s: float = 0.0
    gb_s: float = 0.0
    invocations: int = 0
    steps: int = 0
    threshold_step: int | None = None
    threshold_time_s: float | None = None
    threshold_time_incl_eval_s: float | None = None
    final_return: float | None = None
    final_iqm: float | None = None
    evals: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RunSummary:
        """Read a summary back from the run record (empty for a run that has none yet)."""
        if not d:
            return cls()
        s = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        s.evals = [tuple(e) for e in s.evals]  # type: ignore[misc]
        return s

    def as_dict(self) -> dict[str, Any]:
        """The summary as the run record stores it (JSON-ready)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def train_s(self) -> float:
        """Wall time spent outside evaluation."""
        return self.wall_s - self.eval_s

    def add(self, r: IterationRecord, threshold: float | None) -> RunSummary:
        """Fold in the record of the iteration after the last one folded in; returns self."""
        self.wall_s += r.elapsed_s
        self.eval_s += r.eval_s
        self.gb_s += r.gb_s
        self.invocations += r.invocations
        self.steps = r.steps
        ret = r.eval_return
        if ret is None:
            return self
        self.final_return = ret
        self.final_iqm = r.metrics.get(mn.EVAL_IQM_RETURN)
        self.evals.append((r.steps, ret))
        if threshold is not None and self.threshold_step is None and ret >= threshold:
            self.threshold_step = r.steps
            self.threshold_time_s = round(self.train_s, 4)
            self.threshold_time_incl_eval_s = round(self.wall_s, 4)
        return self


SUMMARY_EVERY_S = 1.0
"""Longest time between writes of a running trial's summary to its run record."""


def summarize(records: Sequence[IterationRecord], threshold: float | None) -> RunSummary:
    """The run summary of its iteration records: a pure function, so a crash cannot skew it.

    Args:
        records: the run's committed iterations' records (any order; each iteration once).
        threshold: the evaluation return that counts as solved, or None.
    """
    s = RunSummary()
    for r in sorted(records, key=lambda r: r.iteration):
        s.add(r, threshold)
    return s


def eval_due(iteration: int, eval_every: int, n_iterations: int) -> bool:
    """Whether the iteration Workflow evaluates after ``iteration`` (``workflows.iteration.EVAL_WHEN``)."""
    return (iteration + 1) % eval_every == 0 or iteration + 1 == n_iterations


def new_traceparent(trace_id: str | None = None) -> str:
    """W3C trace context header; one trace per run, one parent span per iteration."""
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def driver_identity() -> str:
    """``host:pid:thread``: who holds a run's lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def holder_is_dead(owner: str) -> bool:
    """True when a lease holder ran on this host and its process is gone (a killed driver).

    Such a lease need not be waited out. Holders on other hosts are only released by expiry.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RunDriver:
    """Drives one run to its last iteration, one Workflow per iteration, on any :class:`Engine`.

    An engine that chains iterations (:class:`ChainingEngine`, Argo with ``iterations_per_workflow``
    K > 1) runs K per Workflow; each is committed as it finishes, so a Workflow that dies mid-chain
    leaves every finished iteration recorded, and the next ``drive`` resumes after the last committed one.

    Every committed iteration gets a record in the object store (:class:`IterationRecord`) before the
    run record's summary is updated or anything reaches MLflow; the summary is recomputed from those
    records and MLflow is repaired from them (:meth:`reconcile`), so a crash at any point loses nothing.

    Args:
        cfg: the run's frozen config.
        engine: runs the iteration Workflow and the direct calls, on its gateway.
        store: object store (config, checkpoints, iteration records).
        meta: metadata store (run record, lease).
        config_name: the sweep configuration the run belongs to (progress and records).
        tracker: MLflow tracker; no per-iteration metrics without it (and ``mlflow_run_id``).
        mlflow_run_id: the MLflow run to log to: its id, or a :class:`RunRef` to a run still being
            created (the metrics of iterations that end before it exists are logged once it does).
        on_progress: called after every iteration.
        stop: set to stop at the next iteration boundary (the run is then ``interrupted``).
        retry_delays: waits between attempts of a store or metadata call that failed transiently.
        sleep: waits out those delays (tests pass a recorder).
    """

    def __init__(
        self,
        cfg: RunConfig,
        *,
        engine: Engine,
        store: ObjectStore,
        meta: MetaStore,
        config_name: str = "",
        tracker: Tracker | None = None,
        mlflow_run_id: str | RunRef | None = None,
        on_progress: Callable[[TrialProgress], None] | None = None,
        stop: threading.Event | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.store = store
        self.meta = meta
        self.config_name = config_name or cfg.config_name or ""
        self.tracker = tracker
        self.mlflow_run = mlflow_run_id if isinstance(mlflow_run_id, RunRef) else RunRef(mlflow_run_id)
        self._unlogged: list[tuple[Mapping[str, float | None], int, int]] = []
        self.on_progress = on_progress or (lambda _p: None)
        self.stop = stop or threading.Event()
        self.owner = driver_identity()
        self.trace_id = secrets.token_hex(16)
        self.retry_delays = tuple(retry_delays)
        self._sleep = sleep

    # --- store and metadata calls ------------------------------------------------------------------
    def _io(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, retried with backoff while it fails transiently (:func:`is_transient`).

        Raises:
            RunFailed: it still failed transiently after every retry.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(*args)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt > len(self.retry_delays):
                    raise RunFailed(
                        f"run {self.cfg.run_id}: {what} failed {attempt} times over "
                        f"{time.monotonic() - started:.1f}s ({type(exc).__name__}: {exc}); the object or "
                        "metadata store is unreachable. Everything committed is kept: `resume` once it is "
                        "back"
                    ) from exc
                delay = self.retry_delays[attempt - 1]
                log.warning(
                    "run %s: %s failed (%s: %s); retry %d/%d in %.1fs",
                    self.cfg.run_id,
                    what,
                    type(exc).__name__,
                    exc,
                    attempt,
                    len(self.retry_delays),
                    delay,
                )
                self._sleep(delay)

    def _call(self, function: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        headers = {"traceparent": new_traceparent(self.trace_id)}
        try:
            return self.engine.call(function, body, headers=headers)
        except FunctionCallError as exc:
            raise RunFailed(f"run {self.cfg.run_id}: {what} failed: {describe_call_error(exc)}") from exc

    # --- set-up ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Freeze the config in the store and create the run record and policy version 0 (idempotent).

        Raises:
            RunFailed: the run id exists with another config, or creating version 0 failed.
        """
        cfg, key = self.cfg, layout.config_key(self.cfg.run_id)
        if self._io(f"checking {key}", self.store.exists, key):
            stored = RunConfig.from_stored(self._io(f"reading {key}", self.store.get_json, key))
            if stored.digest() != cfg.digest():
                raise RunFailed(
                    f"run {cfg.run_id} already exists with a different config ({stored.digest()})"
                )
        else:
            self._io(f"writing {key}", self.store.put_json, key, cfg.to_stored())
        extra = {"config_name": self.config_name, "seed": cfg.seed, "algo": cfg.algo}
        self._io("creating the run record", self.meta.create_run, cfg.run_id, cfg.sweep_id, extra)
        state = layout.ckpt_state_key(cfg.run_id, 0)
        if not self._io(f"checking {state}", self.store.exists, state):
            body = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest(), "mode": "init"}
            self._call("policy-updater", body, "creating policy version 0")

    def parameters(self, iteration: int) -> dict[str, str]:
        """The Workflow parameters of iteration ``iteration``."""
        hp = self.cfg.hparams
        return {
            "run-id": self.cfg.run_id,
            "iteration": str(iteration),
            "iterations": str(hp.n_iterations),
            "eval-every": str(hp.eval_every_iterations),
            "gateway": self.engine.gateway,
            "shards": json.dumps(list(range(hp.shards))),
            "config-digest": self.cfg.digest(),
            # The iteration span's header when tracing is on: the steps and functions join its trace.
            "traceparent": tracing.current_traceparent() or new_traceparent(self.trace_id),
        }

    # --- the loop ----------------------------------------------------------------------------------
    def drive(self) -> RunSummary:
        """Take the run's lease, prepare it, reconcile what a crash left, and run every remaining iteration.

        Raises:
            RunFailed: another driver holds the lease, an iteration failed, a stored object the run needs
                is missing or corrupt (the message names its key), or the stores stayed unreachable.
            KeyboardInterrupt: ``stop`` was set (the run is left ``interrupted``, ready to resume).
        """
        cfg = self.cfg
        lease = f"run:{cfg.run_id}"
        if not self._io("taking the run's lease", self.meta.acquire_lease, lease, self.owner, LEASE_SECONDS):
            holder = self._io("reading the lease", self.meta.lease_owner, lease)
            if holder and holder_is_dead(holder):
                self._io("releasing a dead driver's lease", self.meta.release_lease, lease, holder)
        if not self._io("taking the run's lease", self.meta.acquire_lease, lease, self.owner, LEASE_SECONDS):
            raise RunFailed(f"run {cfg.run_id} is being driven by another process (lease held)")
        try:
            self.prepare()
            return self._loop()
        except KeyNotFoundError as exc:
            self._mark_stopped()
            raise RunFailed(
                f"run {cfg.run_id}: stored object {exc.key} is missing (object store {self.store.url}); "
                f"`verify {cfg.run_id}` lists every damaged object"
            ) from exc
        except CorruptObjectError as exc:
            self._mark_stopped()
            raise RunFailed(
                f"run {cfg.run_id}: stored object {exc.key} is corrupt: {exc.reason}; "
                f"`verify {cfg.run_id}` lists every damaged object"
            ) from exc
        except BaseException:
            self._mark_stopped()
            raise
        finally:
            try:
                self.meta.release_lease(lease, self.owner)
            except Exception:  # an unreachable store must not hide why the run stopped; the lease expires
                log.warning("run %s: could not release its lease", cfg.run_id, exc_info=True)

    def _mark_stopped(self) -> None:
        status = "interrupted" if self.stop.is_set() else "failed"
        try:
            self.meta.set_status(self.cfg.run_id, status)
        except Exception:  # the metadata store may be what failed; the original error matters more
            log.warning("run %s: could not mark it %s", self.cfg.run_id, status, exc_info=True)

    def reconcile(self) -> list[IterationRecord]:
        """Make the stored state whole after a crash, and MLflow match it; idempotent.

        Every committed iteration without a record gets one, rebuilt from its committed objects (its
        ``update.json``, its trajectories, and its evaluation, run now if it was due and never ran);
        the run record's summary is recomputed from the records; MLflow gets every record's metrics it
        lacks (see :meth:`repair_tracking`).

        Returns:
            The records of every committed iteration, in order.
        """
        rid = self.cfg.run_id
        record = self._io("reading the run record", self.meta.get_run, rid)
        records: list[IterationRecord] = []
        for i in range(int(record["last_iteration"]) + 1):
            key = layout.metrics_key(rid, i)
            try:
                records.append(
                    IterationRecord.from_dict(self._io(f"reading {key}", self.store.get_json, key))
                )
            except KeyNotFoundError:
                rec = self._recover(i, records)
                self._io(f"writing {key}", self.store.put_json, key, rec.as_dict())
                records.append(rec)
        summary = summarize(records, self.cfg.hparams.threshold)
        self._io("writing the run summary", self.meta.update_extra, rid, {"summary": summary.as_dict()})
        self.repair_tracking(records)
        return records

    @property
    def mlflow_run_id(self) -> str | None:
        """The trial's MLflow run id; None without one, or while it is still being created."""
        return self.mlflow_run.peek()

    def _log_metrics(self, metrics: Mapping[str, float | None], step: int, time_ms: int) -> None:
        """Queue one iteration's metrics for MLflow; kept until the run exists if it does not yet."""
        if self.tracker is None:
            return
        if self.mlflow_run.pending:
            self._unlogged.append((metrics, step, time_ms))
            return
        mlflow_id = self.mlflow_run.peek()
        if mlflow_id is None:
            self._unlogged.clear()  # no run, or creating it failed: the stored records still have it all
            return
        for earlier, earlier_step, earlier_ms in self._unlogged:
            self.tracker.log_metrics(mlflow_id, earlier, step=earlier_step, timestamp_ms=earlier_ms)
        self._unlogged.clear()
        self.tracker.log_metrics(mlflow_id, metrics, step=step, timestamp_ms=time_ms)

    def repair_tracking(self, records: Sequence[IterationRecord]) -> int:
        """Log to MLflow every per-iteration metric of ``records`` its history lacks; never duplicates.

        Returns:
            Rows logged (0 without a tracker, or when MLflow cannot be reached: the next ``resume``
            repairs it then).
        """
        if self.tracker is None or not records:
            return 0
        rows = [(r.steps, r.time_ms, r.metrics) for r in records]
        try:
            mlflow_id = self.mlflow_run.wait()
            if mlflow_id is None:
                return 0
            self.tracker.flush()
            added = self.tracker.log_missing(mlflow_id, rows)
        except Exception:
            log.warning("run %s: MLflow not repaired; `resume` repairs it", self.cfg.run_id, exc_info=True)
            return 0
        if added:
            log.info("run %s: %d MLflow metric rows restored from the stored records", self.cfg.run_id, added)
        return added

    def _recover(self, i: int, earlier: Sequence[IterationRecord]) -> IterationRecord:
        """The record of committed iteration ``i`` whose driver died before writing it."""
        from ftg_common.batch import read_trajectories, rollout_summary

        cfg, ppo = self.cfg, self.cfg.hparams
        rid = cfg.run_id
        t0 = time.perf_counter()
        ukey = layout.update_key(rid, i)
        upd = UpdateResult.model_validate(self._io(f"reading {ukey}", self.store.get_json, ukey))
        keys = [layout.traj_key(rid, i, k) for k in range(ppo.shards)]
        rollout = rollout_summary(
            self._io(f"reading iteration {i}'s trajectories", read_trajectories, self.store, keys, i)
        )
        ev, eval_s, gb_s, calls = None, 0.0, 0.0, 0
        if eval_due(i, ppo.eval_every_iterations, ppo.n_iterations):
            ekey = layout.eval_key(rid, i)
            if self._io(f"checking {ekey}", self.store.exists, ekey):
                stored = self._io(f"reading {ekey}", self.store.get_json, ekey)
                ev = EvalResult.model_validate(
                    {k: v for k, v in stored.items() if k in EvalResult.model_fields}
                )
            else:  # the crash came between the update's commit and its evaluation: run it now
                e0 = time.perf_counter()
                body = {"run_id": rid, "iteration": i, "config_digest": cfg.digest()}
                evaluator = next(f.name for f in catalog.FUNCTIONS if f.step == EVALUATE)
                ev = EvalResult.model_validate(self._call(evaluator, body, f"evaluating iteration {i}"))
                eval_s = time.perf_counter() - e0
                gb_s, calls = invocation_gb_seconds(EVALUATE, eval_s), 1
        prior = summarize(earlier, ppo.threshold)
        elapsed = time.perf_counter() - t0
        metrics = _iteration_metrics(
            i, rollout.episodes, rollout.mean_return, upd, ev, elapsed=elapsed, gb_s=gb_s, before=prior
        )
        log.info("run %s: iteration %d's record rebuilt from its committed objects", rid, i)
        return IterationRecord(
            i, upd.total_steps, int(time.time() * 1000), elapsed, eval_s, gb_s, calls, metrics, recovered=True
        )

    def _loop(self) -> RunSummary:
        cfg, ppo = self.cfg, self.cfg.hparams
        rid = cfg.run_id
        records = self.reconcile()
        n_iter = ppo.n_iterations
        start = len(records)
        self._io("marking the run running", self.meta.set_status, rid, "running")
        now = time.monotonic()
        state = _LoopState(summarize(records, ppo.threshold), records, renewed=now, summary_written=now)
        k = self.engine.iterations_per_workflow if isinstance(self.engine, ChainingEngine) else 1
        for first in range(start, n_iter, k):
            self._boundary(state)
            self._run_workflow(range(first, min(first + k, n_iter)), state)
        summary = state.summary
        # Whatever the writer thread dropped (a tracking-store error) is logged again now.
        self.repair_tracking(records)
        self._io("marking the run finished", self.meta.set_status, rid, "finished")
        self.on_progress(
            TrialProgress(
                run_id=rid,
                config_name=self.config_name,
                seed=cfg.seed,
                iteration=n_iter,
                n_iterations=n_iter,
                steps=summary.steps,
                total_steps=n_iter * ppo.rollout_size,
                eval_return=summary.final_return,
                status="finished",
                eta_seconds=0.0,
            )
        )
        return summary

    def _boundary(self, state: _LoopState) -> None:
        """Between iterations: stop if asked (the run is left ``interrupted``), renew the lease when due.

        Raises:
            KeyboardInterrupt: ``stop`` is set.
            RunFailed: another driver took the lease.
        """
        rid = self.cfg.run_id
        if self.stop.is_set():
            self._io(
                "writing the run summary", self.meta.update_extra, rid, {"summary": state.summary.as_dict()}
            )
            self._io("marking the run interrupted", self.meta.set_status, rid, "interrupted")
            raise KeyboardInterrupt
        if time.monotonic() - state.renewed > LEASE_SECONDS / 4:
            lease = f"run:{rid}"
            if not self._io("renewing the lease", self.meta.acquire_lease, lease, self.owner, LEASE_SECONDS):
                raise RunFailed(f"run {rid}: lost its lease to another driver")
            state.renewed = time.monotonic()

    def _run_workflow(self, iterations: range, state: _LoopState) -> None:
        """Run ``iterations`` in one Workflow and commit each as it finishes.

        One iteration is timed here. A chain's iterations come from the engine one by one, each timed by
        its share of the Workflow (:func:`workflows.engines.argo.chain_runs`); between them the driver
        stops if asked, which ends the Workflow (the engine terminates one it stops following).
        """
        rid = self.cfg.run_id
        first, last = iterations[0], iterations[-1]
        if first == last:
            t0 = time.perf_counter()
            with tracing.span("iteration", root=True, attributes={"ftg.run_id": rid, "ftg.iteration": first}):
                wf = self.engine.run(self.parameters(first))
            self._commit(first, wf, time.perf_counter() - t0, state)
            return
        assert isinstance(self.engine, ChainingEngine)
        attributes: dict[str, str | int] = {
            "ftg.run_id": rid,
            "ftg.iteration": first,
            "ftg.last_iteration": last,
        }
        done = first - 1
        with tracing.span("iterations", root=True, attributes=attributes):
            params = [self.parameters(i) for i in iterations]
            with closing(self.engine.run_iterations(params)) as runs:
                for wf in runs:
                    done = int(wf.parameters["iteration"])
                    self._commit(done, wf, wf.duration_s, state)
                    if done != last:
                        self._boundary(state)
        if done != last:
            raise RunFailed(f"iterations {first}-{last} of {rid}: the workflow ended after iteration {done}")

    def _commit(self, i: int, wf: WorkflowRun, elapsed: float, state: _LoopState) -> None:
        """Record iteration ``i`` from its finished run: its record, the summary, MLflow, progress.

        Raises:
            RunFailed: the iteration's Workflow did not succeed (the message names its failed steps).
        """
        cfg, ppo = self.cfg, self.cfg.hparams
        rid, n_iter = cfg.run_id, ppo.n_iterations
        if not wf.succeeded:
            detail = _failed_node_errors(wf)
            raise RunFailed(
                f"iteration {i} of {rid}: workflow {wf.phase}: {wf.message}"
                + (f" [{detail}]" if detail else "")
            )
        agg: AggregateResult | AppendResult = (
            wf.result(AGGREGATE, AppendResult) if cfg.off_policy else wf.result(AGGREGATE, AggregateResult)
        )
        upd = wf.result(UPDATE, UpdateResult)
        ev = wf.result_if_succeeded(EVALUATE, EvalResult)
        nodes = wf.http_nodes()
        eval_s = sum(n.duration_s or 0.0 for n in nodes if n.template == EVALUATE)
        # Billed time is time spent in calls, retries included; not backoff waits.
        gb_s = sum(invocation_gb_seconds(n.template, n.call_s) for n in nodes)
        calls = sum(n.attempts for n in nodes)
        state.recent = [*state.recent[-19:], (elapsed, agg.steps)]
        sps = sum(s for _, s in state.recent) / max(sum(t for t, _ in state.recent), 1e-9)
        summary = state.summary
        metrics = _iteration_metrics(
            i, agg.episodes, agg.mean_return, upd, ev, elapsed=elapsed, sps=sps, gb_s=gb_s, before=summary
        )
        rec = IterationRecord(
            i, upd.total_steps, int(time.time() * 1000), elapsed, eval_s, gb_s, calls, metrics
        )
        # The record first: the summary and MLflow are rebuilt from it if a crash comes in between.
        key = layout.metrics_key(rid, i)
        self._io(f"writing {key}", self.store.put_json, key, rec.as_dict())
        state.records.append(rec)
        # Records arrive in iteration order here, so folding the new one in equals summarize(records).
        summary.add(rec, ppo.threshold)
        # The summary is for `status` and the table; the records above are what a crash keeps. So it
        # is written after an evaluation, at the end, and at most every SUMMARY_EVERY_S in between.
        if ev is not None or i + 1 == n_iter or time.monotonic() - state.summary_written >= SUMMARY_EVERY_S:
            self._io("writing the run summary", self.meta.update_extra, rid, {"summary": summary.as_dict()})
            state.summary_written = time.monotonic()
        self._log_metrics(metrics, rec.steps, rec.time_ms)
        remaining = (n_iter - i - 1) * ppo.rollout_size
        self.on_progress(
            TrialProgress(
                run_id=rid,
                config_name=self.config_name,
                seed=cfg.seed,
                iteration=i + 1,
                n_iterations=n_iter,
                steps=summary.steps,
                total_steps=n_iter * ppo.rollout_size,
                train_return=agg.mean_return,
                eval_return=summary.final_return,
                steps_per_second=sps,
                eta_seconds=remaining / sps if sps > 0 else None,
                iteration_s=elapsed,
            )
        )


@dataclass
class _LoopState:
    """What the loop carries from one iteration to the next."""

    summary: RunSummary
    records: list[IterationRecord]
    renewed: float  # when the lease was last renewed (monotonic)
    summary_written: float  # when the summary was last written (monotonic)
    recent: list[tuple[float, int]] = field(default_factory=list)  # (seconds, steps), last 20 iterations


@runtime_checkable
class ChainingEngine(Protocol):
    """An engine that can run several consecutive iterations in one Workflow (Argo)."""

    iterations_per_workflow: int

    def run_iterations(self, parameters: Sequence[Mapping[str, str]]) -> Generator[WorkflowRun, None, None]:
        """Run consecutive iterations; yield each one's run in order as it finishes (close: stop them)."""
        ...


def _iteration_metrics(
    i: int,
    episodes: int,
    mean_return: float | None,
    upd: UpdateResult,
    ev: EvalResult | None,
    *,
    elapsed: float,
    gb_s: float,
    before: RunSummary,
    sps: float = 0.0,
) -> dict[str, float]:
    """The MLflow metrics of iteration ``i`` (undefined ones left out).

    ``elapsed`` and ``gb_s`` are this iteration's; the run's totals add them to those of ``before``, the
    summary of the iterations before ``i``. ``sps`` is 0.0 where it was not measured (a rebuilt record).
    """
    metrics: dict[str, float | int | None] = {
        mn.EPISODE_RETURN: mean_return,
        mn.EPISODES: episodes,
        mn.POLICY_LOSS: upd.pg_loss,
        mn.VALUE_LOSS: upd.value_loss,
        mn.ENTROPY: upd.entropy,
        mn.APPROX_KL: upd.approx_kl,
        mn.CLIP_FRACTION: upd.clip_fraction,
        mn.EXPLAINED_VARIANCE: upd.explained_variance,
        mn.LEARNING_RATE: upd.learning_rate,
        mn.CLIP_RANGE: upd.clip_range,
        mn.TD_LOSS: upd.td_loss,
        mn.Q_MEAN: upd.q_mean,
        mn.GRAD_NORM: upd.grad_norm,
        mn.REPLAY_CHUNKS_READ: upd.replay_chunks_read,
        mn.ITERATIONS: i + 1,
        mn.ITERATION_S: elapsed,
        mn.STEPS_PER_S: sps,
        mn.WALL_S: before.wall_s + elapsed,
        mn.COST_GB_S: before.gb_s + gb_s,
    }
    if ev is not None:
        metrics.update(
            {
                mn.EVAL_MEAN_RETURN: ev.mean_return,
                mn.EVAL_IQM_RETURN: ev.iqm_return,
                mn.EVAL_STD_RETURN: ev.std_return,
                mn.EVAL_MEAN_LENGTH: ev.mean_length,
            }
        )
        for name, est in (ev.ope or {}).items():
            if name in mn.OPE_REPORTED:
                metrics[f"{mn.OPE_PREFIX}{name}"] = est.value
                metrics[f"{mn.OPE_PREFIX}{name}_ci_low"] = est.ci_low
                metrics[f"{mn.OPE_PREFIX}{name}_ci_high"] = est.ci_high
    return {k: float(v) for k, v in metrics.items() if v is not None}
