"""Resume is exact: an interrupted run, resumed, ends with the same weights, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.reliability.procs import scratch_stores_env
from benchmarks.reliability.sweep_specs import ZOO_CARTPOLE
from ftg_common import layout, runtime
from ftg_common.config import PPOConfig, RunConfig
from tests.e2e.sweep_cli import fewest_committed
from tests.e2e.sweep_kill import SweepDir
from tests.funcs import SMALL_PPO, straight_and_interrupted
from tests.funcs import driver as _driver

ROOT = Path(__file__).resolve().parents[2]
SMALL = {**SMALL_PPO, "n_epochs": 4, "eval_episodes": 3}


def test_interrupted_then_resumed_run_matches_uninterrupted_bit_for_bit(services) -> None:
    ppo = PPOConfig(**SMALL)
    _, broken = straight_and_interrupted(services, ppo, seed=5, n=6)
    rec = services.meta.get_run("broken")
    assert rec["status"] == "interrupted" and rec["last_iteration"] == 5 and rec["version"] == 6

    summary = _driver(broken, services).drive()
    assert services.meta.get_run("broken")["status"] == "finished"
    last = ppo.n_iterations
    store = runtime.store()
    for key in (layout.policy_key, layout.ckpt_weights_key, layout.ckpt_optim_key):
        a, b = store.get_bytes(key("straight", last)), store.get_bytes(key("broken", last))
        if key is layout.policy_key:  # its metadata names the run; compare the tensors
            from ftg_common.tensorio import decode

            ta, tb = decode(a)[0], decode(b)[0]
            assert ta.keys() == tb.keys() and all(ta[k].tobytes() == tb[k].tobytes() for k in ta)
        else:
            assert a == b
    assert summary.steps == ppo.total_steps


@pytest.mark.slow
def test_killed_sweep_resumes_from_its_last_committed_iteration(tmp_path: Path) -> None:
    """Two trials run one at a time; the sweep is killed during the first. ``resume RUN_ID`` finishes
    that trial, ``resume SWEEP_ID`` runs the one never started and closes the sweep."""
    zoo = dict(ZOO_CARTPOLE, n_epochs=5, total_steps=256 * 60, eval_every_steps=2048, eval_episodes=3)
    spec = {"name": "resume-test", "seeds": [3, 4], "max_parallel": 1, "configs": {"zoo": zoo}}
    sweep = tmp_path / "resume.yaml"
    sweep.write_text(json.dumps(spec))
    ref, killed = SweepDir(tmp_path / "ref"), SweepDir(tmp_path / "killed")
    ref.run_cli("submit", "--config", str(sweep), "--no-tracking")

    proc = killed.start_cli("submit", "--config", str(sweep))
    status, last = killed.kill_once_committed(proc, 3, 10)
    assert status == "running" and 10 <= last < 59
    assert killed.row(4) == ("created", -1)

    with sqlite3.connect(killed.root / "meta.db") as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs WHERE run_id LIKE '%-s3'").fetchone()
    out = killed.run_cli("resume", run_id)
    assert killed.row(3) == ("finished", 59) and killed.row(4) == ("created", -1)
    assert "A/B comparison" not in out.stdout  # the sweep is not complete yet

    out = killed.run_cli("resume", killed.sweep_id())
    assert killed.row(4) == ("finished", 59) and "A/B comparison" in out.stdout
    final = Path("ckpt") / "000060" / "weights.safetensors"
    for seed in (3, 4):
        assert (killed.run_dir(seed) / final).read_bytes() == (ref.run_dir(seed) / final).read_bytes()


def test_a_run_is_driven_by_one_driver_at_a_time(services) -> None:
    import socket

    from workflows.driver import RunFailed

    cfg = RunConfig(run_id="leased", seed=0, ppo=PPOConfig(**SMALL))
    # A live holder on another host: its lease must be waited out, never stolen.
    services.meta.acquire_lease("run:leased", "elsewhere:1:1", 60)
    with pytest.raises(RunFailed, match="lease held"):
        _driver(cfg, services).drive()
    services.meta.release_lease("run:leased", "elsewhere:1:1")
    # A holder on this host whose process is gone (a killed driver) is taken over at once.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    services.meta.acquire_lease("run:leased", f"{socket.gethostname()}:{dead.pid}:1", 60)
    assert _driver(cfg, services).drive().steps == cfg.ppo.n_iterations * cfg.ppo.rollout_size


@pytest.mark.slow
def test_ctrl_c_interrupts_cleanly_and_names_the_resume_command(tmp_path: Path) -> None:
    sweep = tmp_path / "ctrlc.yaml"
    sweep.write_text(
        json.dumps(
            {
                "name": "ctrlc",
                "seeds": [0],
                "max_parallel": 2,
                "configs": {
                    "a": {"total_steps": 256 * 2000},
                    "b": {"total_steps": 256 * 2000, "n_epochs": 5},
                },
            }
        )
    )
    env = scratch_stores_env(tmp_path, tracking=False)
    log = tmp_path / "out.log"
    with open(log, "w") as out:
        # A terminal's Ctrl-C signals the whole foreground process group: driver and warm workers.
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "workflows" / "ppo_sweep.py"),
                "submit",
                "--config",
                str(sweep),
                "--no-tracking",
            ],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 300
        # Both trials past iteration 5: they run side by side at different speeds (5 and 20 epochs).
        while fewest_committed(tmp_path / "meta.db", runs=2) < 5:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    text = log.read_text()
    assert "Traceback" not in text and "workflows/ppo_sweep.py resume ctrlc-" in text
    with sqlite3.connect(tmp_path / "meta.db") as conn:
        rows = conn.execute("SELECT status, last_iteration FROM runs").fetchall()
    assert len(rows) == 2 and all(status == "interrupted" and 5 <= last < 1999 for status, last in rows)
