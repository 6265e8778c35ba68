"""The driver of one run: submits one Workflow per iteration, reads its results, tracks, advances.

Everything it needs to continue lives in the stores (run record, checkpoints, carried env state), so a
killed driver is resumed by starting a new one on the same run id.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ftg_common import layout
from ftg_common.config import RunConfig
from ftg_common.meta.base import MetaStore
from ftg_common.schemas import AggregateResult, EvalResult, UpdateResult
from ftg_common.store.base import ObjectStore
from workflows import metric_names as mn
from workflows.cost import invocation_gb_seconds
from workflows.engines.base import Engine, FunctionCallError
from workflows.iteration import AGGREGATE, EVALUATE, UPDATE

if TYPE_CHECKING:
    from workflows.tracking import Tracker

LEASE_SECONDS = 120.0


class RunFailed(RuntimeError):
    """The run cannot go on: a failed iteration, a lost lease, or a config clashing with the stored one."""


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

    Args:
        cfg: the run's frozen config.
        engine: runs the iteration Workflow and the direct calls, on its gateway.
        store: object store (config, checkpoints).
        meta: metadata store (run record, lease).
        config_name: the sweep configuration the run belongs to (progress and records).
        tracker: MLflow tracker; no per-iteration metrics without it (and ``mlflow_run_id``).
        mlflow_run_id: the MLflow run to log to.
        on_progress: called after every iteration.
        stop: set to stop at the next iteration boundary (the run is then ``interrupted``).
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
        mlflow_run_id: str | None = None,
        on_progress: Callable[[TrialProgress], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.store = store
        self.meta = meta
        self.config_name = config_name or cfg.config_name or ""
        self.tracker = tracker
        self.mlflow_run_id = mlflow_run_id
        self.on_progress = on_progress or (lambda _p: None)
        self.stop = stop or threading.Event()
        self.owner = driver_identity()
        self.trace_id = secrets.token_hex(16)

    # --- set-up ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Freeze the config in the store and create the run record and policy version 0 (idempotent).

        Raises:
            RunFailed: the run id exists with another config, or creating version 0 failed.
        """
        cfg, key = self.cfg, layout.config_key(self.cfg.run_id)
        if self.store.exists(key):
            stored = RunConfig.from_stored(self.store.get_json(key))
            if stored.digest() != cfg.digest():
                raise RunFailed(
                    f"run {cfg.run_id} already exists with a different config ({stored.digest()})"
                )
        else:
            self.store.put_json(key, cfg.to_stored())
        self.meta.create_run(
            cfg.run_id, sweep_id=cfg.sweep_id, extra={"config_name": self.config_name, "seed": cfg.seed}
        )
        if not self.store.exists(layout.ckpt_state_key(cfg.run_id, 0)):
            body = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest(), "mode": "init"}
            headers = {"traceparent": new_traceparent(self.trace_id)}
            try:
                self.engine.call("policy-updater", body, headers=headers)
            except FunctionCallError as exc:
                raise RunFailed(f"run {cfg.run_id}: creating policy version 0 failed: {exc}") from exc

    def parameters(self, iteration: int) -> dict[str, str]:
        """The Workflow parameters of iteration ``iteration``."""
        ppo = self.cfg.ppo
        return {
            "run-id": self.cfg.run_id,
            "iteration": str(iteration),
            "iterations": str(ppo.n_iterations),
            "eval-every": str(ppo.eval_every_iterations),
            "gateway": self.engine.gateway,
            "shards": json.dumps(list(range(ppo.shards))),
            "config-digest": self.cfg.digest(),
            "traceparent": new_traceparent(self.trace_id),
        }

    # --- the loop ----------------------------------------------------------------------------------
    def drive(self) -> RunSummary:
        """Take the run's lease, prepare it, and run every remaining iteration.

        Raises:
            RunFailed: another driver holds the lease, or an iteration failed.
            KeyboardInterrupt: ``stop`` was set (the run is left ``interrupted``, ready to resume).
        """
        cfg = self.cfg
        lease = f"run:{cfg.run_id}"
        if not self.meta.acquire_lease(lease, self.owner, LEASE_SECONDS):
            holder = self.meta.lease_owner(lease)
            if holder and holder_is_dead(holder):
                self.meta.release_lease(lease, holder)
        if not self.meta.acquire_lease(lease, self.owner, LEASE_SECONDS):
            raise RunFailed(f"run {cfg.run_id} is being driven by another process (lease held)")
        try:
            self.prepare()
            return self._loop()
        except BaseException:
            status = "interrupted" if self.stop.is_set() else "failed"
            self.meta.set_status(cfg.run_id, status)
            raise
        finally:
            self.meta.release_lease(f"run:{cfg.run_id}", self.owner)

    def _loop(self) -> RunSummary:
        cfg, ppo = self.cfg, self.cfg.ppo
        record = self.meta.get_run(cfg.run_id)
        summary = RunSummary.from_dict((record.get("extra") or {}).get("summary"))
        n_iter = ppo.n_iterations
        start = int(record["last_iteration"]) + 1
        self.meta.set_status(cfg.run_id, "running")
        recent: list[tuple[float, int]] = []
        renewed = time.monotonic()
        for i in range(start, n_iter):
            if self.stop.is_set():
                self.meta.set_status(cfg.run_id, "interrupted")
                raise KeyboardInterrupt
            if time.monotonic() - renewed > LEASE_SECONDS / 4:
                if not self.meta.acquire_lease(f"run:{cfg.run_id}", self.owner, LEASE_SECONDS):
                    raise RunFailed(f"run {cfg.run_id}: lost its lease to another driver")
                renewed = time.monotonic()
            t0 = time.perf_counter()
            wf = self.engine.run(self.parameters(i))
            elapsed = time.perf_counter() - t0
            if not wf.succeeded:
                raise RunFailed(f"iteration {i} of {cfg.run_id}: workflow {wf.phase}: {wf.message}")
            agg = wf.result(AGGREGATE, AggregateResult)
            upd = wf.result(UPDATE, UpdateResult)
            ev = wf.result_if_succeeded(EVALUATE, EvalResult)
            summary.wall_s += elapsed
            summary.eval_s += sum(n.duration_s or 0.0 for n in wf.http_nodes() if n.template == EVALUATE)
            summary.steps = upd.total_steps
            for node in wf.http_nodes():
                # Billed time is time spent in calls, retries included; not backoff waits.
                summary.gb_s += invocation_gb_seconds(node.template, node.call_s)
                summary.invocations += node.attempts
            if ev is not None:
                self._record_eval(summary, ev)
            self.meta.update_extra(cfg.run_id, {"summary": summary.as_dict()})
            recent.append((elapsed, agg.steps))
            recent = recent[-20:]
            sps = sum(s for _, s in recent) / max(sum(t for t, _ in recent), 1e-9)
            remaining = (n_iter - i - 1) * ppo.rollout_size
            self._track(i, agg, upd, ev, summary, elapsed, sps)
            self.on_progress(
                TrialProgress(
                    run_id=cfg.run_id,
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
                )
            )
        self.meta.set_status(cfg.run_id, "finished")
        self.on_progress(
            TrialProgress(
                run_id=cfg.run_id,
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

    def _record_eval(self, summary: RunSummary, ev: EvalResult) -> None:
        summary.final_return = ev.mean_return
        summary.final_iqm = ev.iqm_return
        summary.evals.append((summary.steps, ev.mean_return))
        threshold = self.cfg.ppo.threshold
        if threshold is not None and summary.threshold_step is None and ev.mean_return >= threshold:
            summary.threshold_step = summary.steps
            summary.threshold_time_s = round(summary.train_s, 4)
            summary.threshold_time_incl_eval_s = round(summary.wall_s, 4)

    def _track(
        self,
        i: int,
        agg: AggregateResult,
        upd: UpdateResult,
        ev: EvalResult | None,
        s: RunSummary,
        elapsed: float,
        sps: float,
    ) -> None:
        if self.tracker is None or self.mlflow_run_id is None:
            return
        metrics: dict[str, float | None] = {
            mn.EPISODE_RETURN: agg.mean_return,
            mn.EPISODES: agg.episodes,
            mn.POLICY_LOSS: upd.pg_loss,
            mn.VALUE_LOSS: upd.value_loss,
            mn.ENTROPY: upd.entropy,
            mn.APPROX_KL: upd.approx_kl,
            mn.CLIP_FRACTION: upd.clip_fraction,
            mn.EXPLAINED_VARIANCE: upd.explained_variance,
            mn.LEARNING_RATE: upd.learning_rate,
            mn.CLIP_RANGE: upd.clip_range,
            mn.ITERATIONS: i + 1,
            mn.ITERATION_S: elapsed,
            mn.STEPS_PER_S: sps,
            mn.WALL_S: s.wall_s,
            mn.COST_GB_S: s.gb_s,
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
        self.tracker.log_metrics(self.mlflow_run_id, metrics, step=s.steps)
