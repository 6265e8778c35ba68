"""Run a sweep through the CLI twice, once to the end and once killed with SIGKILL and resumed.

For tests that compare the two runs' final objects bit for bit. Each sweep gets its own state
directory (file store, SQLite metadata, SQLite MLflow): a :class:`SweepDir`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.reliability.procs import scratch_stores_env
from ftg_common.tensorio import decode
from tests.e2e.sweep_cli import CLI, meta_row, run_cli


@dataclass(frozen=True)
class SweepDir:
    """The state directory of one sweep run by the CLI."""

    root: Path

    def environ(self) -> dict[str, str]:
        """The CLI's environment: this directory's stores, two warm workers."""
        return scratch_stores_env(self.root)

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``ppo_sweep.py ARGS`` on this directory's stores, to the end; AssertionError unless it exits 0."""
        self.root.mkdir(exist_ok=True)
        done = run_cli(args, self.environ(), self.root)
        if done.returncode != 0:
            raise AssertionError(done.stdout + done.stderr)
        return done

    def start_cli(self, *args: str) -> subprocess.Popen[bytes]:
        """``ppo_sweep.py ARGS`` started in a process group of its own (driver and warm workers), quiet."""
        self.root.mkdir(exist_ok=True)
        argv, quiet = [*CLI, *args], subprocess.DEVNULL
        return subprocess.Popen(
            argv, env=self.environ(), cwd=self.root, stdout=quiet, stderr=quiet, start_new_session=True
        )

    def kill_once_committed(self, proc: subprocess.Popen[bytes], seed: int, n: int) -> tuple[str, int] | None:
        """SIGKILL ``proc``'s process group once the seed's run committed ``n`` iterations; its row then."""
        give_up = time.monotonic() + 300
        while (row := self.row(seed)) is None or row[1] < n:
            if proc.poll() is not None:
                raise AssertionError("the sweep ended before it could be killed")
            if time.monotonic() > give_up:
                raise AssertionError(f"the sweep never committed {n} iterations")
            time.sleep(0.02)  # polling a subprocess, not waiting for an outcome
        os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up: driver and warm workers die at once
        proc.wait(timeout=30)
        return self.row(seed)

    def sweep_id(self) -> str:
        """The id of the (one) sweep in this directory's metadata store."""
        with sqlite3.connect(self.root / "meta.db") as conn:
            (found,) = conn.execute("SELECT sweep_id FROM sweeps").fetchone()
        return str(found)

    def run_dir(self, seed: int) -> Path:
        """The object-store folder of the seed's run."""
        (found,) = [p for p in (self.root / "store" / "runs").iterdir() if p.name.endswith(f"-s{seed}")]
        return found

    def row(self, seed: int) -> tuple[str, int] | None:
        """(status, last committed iteration) of the seed's run, None before it exists."""
        return meta_row(self.root / "meta.db", seed)

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
    submit = ("submit", "--config", str(sweep_file), "--no-tracking")
    ref.run_cli(*submit)
    at_kill = killed.kill_once_committed(killed.start_cli(*submit), seed, kill_after)
    killed.run_cli("resume", killed.sweep_id(), "--no-tracking")
    return ref, killed, at_kill
