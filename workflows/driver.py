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
from typing import Any

from ftg_common import layout
from ftg_common.config import RunConfig
from ftg_common.meta.base import MetaStore
from ftg_common.store.base import ObjectStore
from workflows.cost import invocation_gb_seconds

LEASE_SECONDS = 120.0


class RunFailed(RuntimeError):
    pass


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
        if not d:
            return cls()
        s = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        s.evals = [tuple(e) for e in s.evals]  # type: ignore[misc]
        return s

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def train_s(self) -> float:
        return self.wall_s - self.eval_s


def new_traceparent(trace_id: str | None = None) -> str:
    """W3C trace context header; one trace per run, one parent span per iteration."""
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def driver_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def holder_is_dead(owner: str) -> bool:
    """True when a lease holder ran on this host and its process is gone (a killed driver), so its
    lease need not be waited out. Holders on other hosts are only released by expiry."""
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
    def __init__(
        self,
        cfg: RunConfig,
        *,
        engine: Any,
        compiled: Any,
        store: ObjectStore,
        meta: MetaStore,
        gateway: str,
        config_name: str = "",
        tracker: Any | None = None,
        mlflow_run_id: str | None = None,
        on_progress: Callable[[TrialProgress], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.compiled = compiled
        self.store = store
        self.meta = meta
        self.gateway = gateway
        self.config_name = config_name or cfg.config_name or ""
        self.tracker = tracker
        self.mlflow_run_id = mlflow_run_id
        self.on_progress = on_progress or (lambda _p: None)
        self.stop = stop or threading.Event()
        self.owner = driver_identity()
        self.trace_id = secrets.token_hex(16)

    # --- set-up ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Freeze the config in the store and create the run record and policy version 0 (idempotent)."""
        cfg, key = self.cfg, layout.config_key(self.cfg.run_id)
        if self.store.exists(key):
            stored = RunConfig.from_stored(self.store.get_json(key))
            if stored.digest() != cfg.digest():
                raise RunFailed(f"run {cfg.run_id} already exists with a different config ({stored.digest()})")
        else:
            self.store.put_json(key, cfg.to_stored())
        self.meta.create_run(cfg.run_id, sweep_id=cfg.sweep_id, extra={"config_name": self.config_name, "seed": cfg.seed})
        if not self.store.exists(layout.ckpt_state_key(cfg.run_id, 0)):
            body = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest(), "mode": "init"}
            self._call("policy-updater", body, timeout=300)

    def _call(self, function: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        url = f"{self.gateway}/function/{function}"
        headers = {"Content-Type": "application/json", "traceparent": new_traceparent(self.trace_id)}
        resp = self.engine.invoker.submit(url, "POST", headers, json.dumps(body).encode(), timeout).result(timeout)
        if resp.status != 200:
            raise RunFailed(f"{function} answered {resp.status}: {resp.body[:500]}")
        return json.loads(resp.body)

    def parameters(self, iteration: int) -> dict[str, str]:
        ppo = self.cfg.ppo
        return {
            "run-id": self.cfg.run_id,
            "iteration": str(iteration),
            "iterations": str(ppo.n_iterations),
            "eval-every": str(ppo.eval_every_iterations),
            "gateway": self.gateway,
            "shards": json.dumps(list(range(ppo.shards))),
            "config-digest": self.cfg.digest(),
            "traceparent": new_traceparent(self.trace_id),
        }

    # --- the loop ----------------------------------------------------------------------------------
    def drive(self) -> RunSummary:
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
            wf = self.engine.run(self.compiled, self.parameters(i))
            elapsed = time.perf_counter() - t0
            if wf.phase != "Succeeded":
                raise RunFailed(f"iteration {i} of {cfg.run_id}: workflow {wf.phase}: {wf.message}")
            agg = json.loads(wf.outputs("aggregate"))
            upd = json.loads(wf.outputs("update"))
            ev = self._eval_result(wf)
            eval_s = sum(n.duration_s for n in wf.http_nodes() if n.template == "evaluate")
            summary.wall_s += elapsed
            summary.eval_s += eval_s
            summary.steps = int(upd["total_steps"])
            for node in wf.http_nodes():
                # Billed time is time spent in calls, retries included; not backoff waits.
                summary.gb_s += invocation_gb_seconds(node.template, node.call_s)
                summary.invocations += node.attempts
            if ev is not None:
                summary.final_return = ev["mean_return"]
                summary.final_iqm = ev["iqm_return"]
                summary.evals.append((summary.steps, ev["mean_return"]))
                if ppo.threshold is not None and summary.threshold_step is None and ev["mean_return"] >= ppo.threshold:
                    summary.threshold_step = summary.steps
                    summary.threshold_time_s = round(summary.train_s, 4)
                    summary.threshold_time_incl_eval_s = round(summary.wall_s, 4)
            self.meta.update_extra(cfg.run_id, {"summary": summary.as_dict()})
            recent.append((elapsed, int(agg["steps"])))
            recent = recent[-20:]
            sps = sum(s for _, s in recent) / max(sum(t for t, _ in recent), 1e-9)
            remaining = (n_iter - i - 1) * ppo.rollout_size
            self._track(i, agg, upd, ev, summary, elapsed, sps)
            self.on_progress(
                TrialProgress(
                    run_id=cfg.run_id, config_name=self.config_name, seed=cfg.seed, iteration=i + 1,
                    n_iterations=n_iter, steps=summary.steps, total_steps=n_iter * ppo.rollout_size,
                    train_return=agg.get("mean_return"), eval_return=summary.final_return,
                    steps_per_second=sps, eta_seconds=remaining / sps if sps > 0 else None,
                )
            )
        self.meta.set_status(cfg.run_id, "finished")
        self.on_progress(
            TrialProgress(
                run_id=cfg.run_id, config_name=self.config_name, seed=cfg.seed, iteration=n_iter,
                n_iterations=n_iter, steps=summary.steps, total_steps=n_iter * ppo.rollout_size,
                eval_return=summary.final_return, status="finished", eta_seconds=0.0,
            )
        )
        return summary

    @staticmethod
    def _eval_result(wf: Any) -> dict[str, Any] | None:
        for node in wf.http_nodes():
            if node.template == "evaluate" and node.phase == "Succeeded":
                return json.loads(node.result)
        return None

    def _track(self, i: int, agg: dict, upd: dict, ev: dict | None, s: RunSummary, elapsed: float, sps: float) -> None:
        if self.tracker is None or self.mlflow_run_id is None:
            return
        metrics: dict[str, float | None] = {
            "train/episode_return": agg.get("mean_return"),
            "train/episodes": agg.get("episodes"),
            "loss/policy": upd.get("pg_loss"),
            "loss/value": upd.get("value_loss"),
            "loss/entropy": upd.get("entropy"),
            "ppo/approx_kl": upd.get("approx_kl"),
            "ppo/clip_fraction": upd.get("clip_fraction"),
            "ppo/explained_variance": upd.get("explained_variance"),
            "ppo/learning_rate": upd.get("learning_rate"),
            "ppo/clip_range": upd.get("clip_range"),
            "time/iteration_s": elapsed,
            "time/steps_per_s": sps,
            "time/wall_s": s.wall_s,
            "cost/gb_s": s.gb_s,
            "iteration": i,
        }
        if ev is not None:
            metrics.update({"eval/mean_return": ev["mean_return"], "eval/iqm_return": ev["iqm_return"],
                            "eval/std_return": ev["std_return"], "eval/mean_length": ev["mean_length"]})
        self.tracker.log_metrics(self.mlflow_run_id, metrics, step=s.steps)
