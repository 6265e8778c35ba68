"""Sweeps through the CLI (``workflows/ppo_sweep.py``) in a child process, and what they leave behind."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py")]


def run_cli(
    args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``ppo_sweep.py ARGS`` to the end, its output captured as text; the caller checks the exit code."""
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _runs(db: Path, where: str = "", args: tuple[Any, ...] = ()) -> list[tuple[str, int]] | None:
    """(status, last committed iteration) of the runs in the metadata store ``db``; None before it exists."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return list(conn.execute(f"SELECT status, last_iteration FROM runs {where}", args))
    except sqlite3.OperationalError:  # the driver is creating the schema
        return None


def meta_row(db: Path, seed: int) -> tuple[str, int] | None:
    """(status, last committed iteration) of the seed's run in the metadata store ``db``, or None."""
    rows = _runs(db, "WHERE run_id LIKE ?", (f"%-s{seed}",))
    return rows[0] if rows else None


def fewest_committed(db: Path, runs: int) -> int:
    """The lowest last committed iteration over the ``runs`` runs in ``db`` (-1 until all exist)."""
    rows = _runs(db) or []
    return min(last for _, last in rows) if len(rows) == runs else -1


def sweep_mlflow_runs(tracking_uri: str) -> tuple[Any, Any, list[Any]]:
    """(MLflow client, the sweep's parent run, its trials' child runs) of the one sweep tracked there."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name("faastraingym")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("ftg.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, parent, children
