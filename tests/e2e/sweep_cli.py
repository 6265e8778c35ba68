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


def meta_row(db: Path, seed: int) -> tuple[str, int] | None:
    """(status, last committed iteration) of the seed's run in the metadata store ``db``, or None."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row: tuple[str, int] | None = conn.execute(
                "SELECT status, last_iteration FROM runs WHERE run_id LIKE ?", (f"%-s{seed}",)
            ).fetchone()
            return row
    except sqlite3.OperationalError:
        return None


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
