"""Run a sweep through the CLI twice, once to the end and once killed with SIGKILL and resumed.

For tests that compare the two runs' final objects bit for bit. Each sweep gets its own state
directory (file store, SQLite metadata), one seed and no tracking.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftg_common.tensorio import decode
from tests.e2e.test_resume import ROOT, _meta_row

CLI = [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py")]


@dataclass(frozen=True)
class SweepDir:
    """The state directory of one sweep run by the CLI."""

    root: Path

    def environ(self) -> dict[str, str]:
        """The CLI's environment: this directory's stores, two warm workers."""
        return {
            **os.environ,
            "FTG_STORE_URL": f"file://{self.root}/store",
            "FTG_META_URL": f"sqlite:///{self.root}/meta.db",
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.root}/mlflow.db",
            "FTG_LOCAL_WORKERS": "2",
        }

    def run_dir(self, seed: int) -> Path:
        """The object-store folder of the seed's run."""
        (found,) = [p for p in (self.root / "store" / "runs").iterdir() if p.name.endswith(f"-s{seed}")]
        return found

    def row(self, seed: int) -> tuple[str, int] | None:
        """(status, last committed iteration) of the seed's run, None before it exists."""
        return _meta_row(self.root / "meta.db", seed)

    def version_bytes(self, seed: int, version: int) -> dict[str, bytes]:
        """A version's checkpoint files by name, and its policy file's arrays (the file names its run)."""
        run = self.run_dir(seed)
        ckpt = run / "ckpt" / f"{version:06d}"
        files = {p.name: p.read_bytes() for p in sorted(ckpt.iterdir())}
        files["policy"] = _arrays(run / "policy" / f"{version:06d}.safetensors")
        return files

    def replay_arrays(self, seed: int) -> dict[str, bytes]:
        """Every replay chunk's arrays (chunk objects name their run, so not their bytes)."""
        return {p.name: _arrays(p) for p in sorted((self.run_dir(seed) / "replay").iterdir())}


def _arrays(path: Path) -> bytes:
    """The arrays of a safetensors file, in name order, without its metadata."""
    return b"".join(v.tobytes() for _, v in sorted(decode(path.read_bytes())[0].items()))


def _submit(sweep_file: Path, d: SweepDir) -> list[str]:
    d.root.mkdir()
    return [*CLI, "submit", "--config", str(sweep_file), "--no-tracking"]


def straight_and_killed(
    tmp_path: Path, spec: dict[str, Any], seed: int, kill_after: int
) -> tuple[SweepDir, SweepDir, tuple[str, int] | None]:
    """The sweep ``spec`` (one seed) run to the end, and killed once ``kill_after`` iterations committed.

    The killed one (driver and warm workers: the whole process group) is then resumed with
    ``ppo_sweep.py resume`` and must finish.

    Returns:
        (the uninterrupted sweep, the killed and resumed one, the killed run's (status, last committed
        iteration) right after the kill).
    """
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(json.dumps(spec))
    ref, killed = SweepDir(tmp_path / "ref"), SweepDir(tmp_path / "killed")
    subprocess.run(
        _submit(sweep_file, ref),
        env=ref.environ(),
        cwd=ref.root,
        check=True,
        capture_output=True,
        timeout=600,
    )

    args = _submit(sweep_file, killed)
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen(
        args, env=killed.environ(), cwd=killed.root, stdout=quiet, stderr=quiet, start_new_session=True
    )
    give_up = time.monotonic() + 300
    while (row := killed.row(seed)) is None or row[1] < kill_after:
        if proc.poll() is not None:
            raise AssertionError("the sweep ended before it could be killed")
        if time.monotonic() > give_up:
            raise AssertionError(f"the sweep never committed {kill_after} iterations")
        time.sleep(0.02)  # polling a subprocess, not waiting for an outcome
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    at_kill = killed.row(seed)
    with sqlite3.connect(killed.root / "meta.db") as conn:
        (sweep_id,) = conn.execute("SELECT sweep_id FROM sweeps").fetchone()
    done = subprocess.run(
        [*CLI, "resume", sweep_id, "--no-tracking"],
        env=killed.environ(),
        cwd=killed.root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise AssertionError(done.stdout + done.stderr)
    return ref, killed, at_kill
