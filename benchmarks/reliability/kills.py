"""Kills: a sweep killed with SIGKILL at a random point, then resumed, ends as if never killed.

A small real sweep (CartPole-v1, RL-Zoo hyperparameters, two seeds in parallel, tracking on with a
SQLite MLflow store, fresh file store and SQLite metadata store) runs through the CLI once without
interruption. Then, ``20 * scale`` times: the same sweep (same sweep id, ``submit --sweep-id``) starts in
its own process group, which gets SIGKILL at a seeded random point (a random number of committed
iterations over both trials, then at once or after a random fraction of an iteration; some cases land
between an update's commit and the driver's record of it, some in the middle of a Workflow, some after
the trials finished), and ``resume SWEEP_ID`` completes it. Required, per case:

- the sweep completes: ``resume`` exits 0 and every trial is ``finished``;
- every trial's final checkpoint weights are bit-identical to the uninterrupted sweep's;
- the A/B table equals the uninterrupted one in every column that is not a time or a cost (final return
  IQM, CI, mean, reached count, median steps to threshold); wall time, time to threshold and GB-s
  legitimately differ (the killed Workflow's time is lost, the resumed one's is new);
- MLflow holds exactly one row per iteration per per-iteration metric of every trial (no gap, no
  duplicate; an iteration's metrics are those of its stored record) and the same evaluation steps as the
  uninterrupted sweep;
- each trial's summary metrics and the sweep's metrics are logged exactly once.

``run(scale)``: ``KILLS_PER_SCALE * scale`` kills; the kill points come from ``random.Random(SEED)``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.reliability.checks import Check
from benchmarks.reliability.procs import THREAD_ENV, scratch_stores_env
from benchmarks.reliability.sweep_specs import ZOO_CARTPOLE

AREA = "kills"
SEED = 20261201
KILLS_PER_SCALE = 20
SWEEP_ID = "kills-fixed"
ITERATIONS = 24
ROOT = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = {
    "name": "kills",
    "seeds": [0, 1],
    "max_parallel": 2,
    "defaults": {
        "env_id": "CartPole-v1",
        "total_steps": 256 * ITERATIONS,
        "eval_every_steps": 256 * 4,
        "eval_episodes": 5,
        "threshold": 100,
    },
    "configs": {"zoo": ZOO_CARTPOLE},
}
# The A/B table's columns that a crash must not change (the others are times and costs).
STABLE_COLUMNS = (
    "config",
    "seeds",
    "finished",
    "final_iqm",
    "ci_low",
    "ci_high",
    "final_mean",
    "reached",
    "median_steps_to_threshold",
)
SUMMARY_METRICS = ("final_return", "final_iqm", "steps_to_threshold", "invocations")


@dataclass
class Outcome:
    """What a finished sweep left behind, as the checks compare it."""

    statuses: dict[str, str] = field(default_factory=dict)
    weights: dict[str, bytes] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    history_errors: list[str] = field(default_factory=list)
    eval_steps: dict[str, list[int]] = field(default_factory=dict)
    once_errors: list[str] = field(default_factory=list)


def _env(d: Path) -> dict[str, str]:
    return {**scratch_stores_env(d), **THREAD_ENV}


def _cli(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py"), *args]


def _committed(db: Path) -> int:
    """Iterations committed over every trial so far (0 before the metadata store exists)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            (n,) = conn.execute("SELECT COALESCE(SUM(last_iteration + 1), 0) FROM runs").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(n)


def _where(d: Path) -> str:
    """Where a killed sweep stood: a commit without its driver record, or not."""
    with sqlite3.connect(d / "meta.db") as conn:
        rows = conn.execute("SELECT run_id, status, last_iteration FROM runs").fetchall()
    gaps = [
        rid
        for rid, _status, last in rows
        if last >= 0 and not (d / "store" / "runs" / rid / "iter" / f"{last:06d}" / "metrics.json").exists()
    ]
    if gaps:
        return "commit-without-record"
    if all(status == "finished" for _rid, status, _last in rows):
        return "after-training"
    return "between-or-inside-workflows"


def _outcome(d: Path) -> Outcome:
    """Read a finished sweep's stores and MLflow."""
    from mlflow.tracking import MlflowClient

    from ftg_common import layout
    from ftg_common.settings import Settings
    from workflows.compare import rows_as_dicts
    from workflows.driver import IterationRecord
    from workflows.sweep import comparison, open_services

    out = Outcome()
    settings = Settings(
        engine="local", store_url=f"file://{d}/store", meta_url=f"sqlite:///{d}/meta.db", local_workers=0
    )
    services = open_services(settings, tracking=False, warm=False)
    try:
        _trials, table = comparison(services, SWEEP_ID)
        out.table = [{k: r[k] for k in STABLE_COLUMNS} for r in rows_as_dicts(table)]
        runs = services.meta.list_runs(SWEEP_ID)
        client = MlflowClient(tracking_uri=f"sqlite:///{d}/mlflow.db")
        for rec in runs:
            rid = rec["run_id"]
            out.statuses[rid] = rec["status"]
            version = int(rec["version"])
            path = d / "store" / "runs" / rid / "ckpt" / f"{version:06d}" / "weights.safetensors"
            out.weights[rid] = path.read_bytes() if path.exists() else b""
            child = (rec.get("extra") or {}).get("mlflow_run_id")
            if not child:
                out.history_errors.append(f"{rid}: no MLflow run")
                continue
            records = [
                IterationRecord.from_dict(services.store.get_json(layout.metrics_key(rid, i)))
                for i in range(int(rec["last_iteration"]) + 1)
            ]
            keys = sorted({k for r in records for k in r.metrics})
            for key in keys:
                got = sorted(m.step for m in client.get_metric_history(child, key))
                want = sorted(r.steps for r in records if key in r.metrics)
                if got != want:
                    out.history_errors.append(f"{rid} {key}: steps {got} != records' {want}")
            out.eval_steps[rid] = sorted(m.step for m in client.get_metric_history(child, "eval/mean_return"))
            for key in SUMMARY_METRICS:
                n = len(client.get_metric_history(child, key))
                # steps_to_threshold is absent when the trial never reached the threshold
                if n > 1 or (n == 0 and key != "steps_to_threshold"):
                    out.once_errors.append(f"{rid} {key}: {n} rows")
        experiments = [e.experiment_id for e in client.search_experiments()]
        parents = client.search_runs(
            experiments, filter_string=f"tags.`ftg.sweep_id` = '{SWEEP_ID}' and tags.`ftg.kind` = 'sweep'"
        )
        if len(parents) != 1:
            out.once_errors.append(f"sweep: {len(parents)} parent runs")
        parent = parents[0].info.run_id if parents else ""
        for row in table:
            for suffix in ("final_iqm", "reached"):
                n = len(client.get_metric_history(parent, f"{row.config}.{suffix}"))
                if n != 1:
                    out.once_errors.append(f"sweep {row.config}.{suffix}: {n} rows")
    finally:
        services.close()
    return out


def _submit(d: Path, sweep_file: Path) -> subprocess.Popen[bytes]:
    d.mkdir(parents=True)
    log = (d / "submit.log").open("wb")
    return subprocess.Popen(
        _cli("submit", "--config", str(sweep_file), "--sweep-id", SWEEP_ID),
        env=_env(d),
        cwd=d,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: driver and warm workers die together
    )


def _kill_at(proc: subprocess.Popen[bytes], db: Path, target: int, delay: float, timeout: float) -> bool:
    """SIGKILL the process group once ``target`` iterations are committed (+ ``delay`` s).

    Returns:
        False when the sweep ended by itself first.
    """
    deadline = time.monotonic() + timeout
    while _committed(db) < target:
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sweep did not commit {target} iterations within {timeout:.0f}s")
        time.sleep(0.002)
    if delay:
        time.sleep(delay)
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return True


def run(scale: int = 1) -> list[Check]:
    """Kill and resume the sweep ``KILLS_PER_SCALE * scale`` times; one :class:`Check` per requirement."""
    return run_kills(KILLS_PER_SCALE * scale)


def run_kills(kills: int, points: list[tuple[int, float]] | None = None) -> list[Check]:
    """Kill and resume the sweep ``kills`` times (or once per given ``(committed, delay_s)`` point)."""
    rng = random.Random(SEED)
    total = ITERATIONS * len(SPEC["seeds"])
    notes_where: dict[str, int] = {}
    completes = Check(
        AREA,
        "kill -9 at a random point, then resume: the sweep completes",
        notes="resume exits 0 and every trial is finished",
    )
    weights = Check(
        AREA,
        "final weights bit-identical to the uninterrupted sweep's",
        notes="every trial's last checkpoint weights, byte for byte",
    )
    table = Check(
        AREA,
        "A/B table equal to the uninterrupted sweep's (non-time columns)",
        notes="final IQM, CI, mean, reached, median steps to threshold equal; wall time, time "
        "to threshold and GB-s legitimately differ",
    )
    history = Check(
        AREA,
        "MLflow per-iteration history complete, no duplicates",
        notes="one row per iteration per metric of every trial, as its stored record says; "
        "evaluation steps equal the uninterrupted sweep's",
    )
    once = Check(
        AREA,
        "run summary and sweep metrics logged exactly once",
        notes="each trial's summary metrics and the sweep's per-config metrics: one row each",
    )
    with tempfile.TemporaryDirectory(prefix="ftg-kills-") as tmp:
        base = Path(tmp)
        sweep_file = base / "kills.yaml"
        sweep_file.write_text(json.dumps(SPEC))
        ref_dir = base / "ref"
        proc = _submit(ref_dir, sweep_file)
        if proc.wait(timeout=900) != 0:
            raise RuntimeError(f"the uninterrupted sweep failed:\n{(ref_dir / 'submit.log').read_text()}")
        ref = _outcome(ref_dir)
        if ref.history_errors or ref.once_errors:
            raise RuntimeError(
                f"the uninterrupted sweep's tracking is wrong: {ref.history_errors + ref.once_errors}"
            )
        cases = points or [
            (rng.randint(1, total), rng.random() * 0.3 if rng.random() < 0.5 else 0.0) for _ in range(kills)
        ]
        for n, (target, delay) in enumerate(cases):
            d = base / f"kill-{n:03d}"
            case = f"kill {n} at {target} committed + {delay:.3f}s"
            proc = _submit(d, sweep_file)
            killed = _kill_at(proc, d / "meta.db", target, delay, timeout=600)
            where = _where(d) if killed else "never (it finished first)"
            notes_where[where] = notes_where.get(where, 0) + 1
            case += f" ({where})"
            res = subprocess.run(
                _cli("resume", SWEEP_ID), env=_env(d), cwd=d, capture_output=True, text=True, timeout=900
            )
            got = _outcome(d)
            done = res.returncode == 0 and all(s == "finished" for s in got.statuses.values())
            completes.record(done, f"{case}: exit {res.returncode}: {res.stderr[-400:]}")
            weights.record(
                sorted(got.weights.items()) == sorted(ref.weights.items()) and all(got.weights.values()),
                f"{case}: weights differ",
            )
            table.record(got.table == ref.table, f"{case}: {got.table} != {ref.table}")
            history.record(
                not got.history_errors and got.eval_steps == ref.eval_steps,
                f"{case}: {got.history_errors[:3]} eval steps {got.eval_steps} vs {ref.eval_steps}",
            )
            once.record(not got.once_errors, f"{case}: {got.once_errors[:3]}")
    table.notes += "; uninterrupted: " + ", ".join(
        f"{r['config']} final IQM {r['final_iqm']:.1f}, reached {r['reached']}/{r['seeds']}, "
        f"median steps to threshold {r['median_steps_to_threshold']}"
        for r in ref.table
    )
    where_text = ", ".join(f"{k}: {v}" for k, v in sorted(notes_where.items()))
    completes.notes += f"; where the kills landed: {where_text}"
    return [completes, weights, table, history, once]


if __name__ == "__main__":
    for c in run(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        print(f"{c.name:70s} {c.passed}/{c.tried} {'ok' if c.ok else 'FAILED'} {c.failures[:2]}")
