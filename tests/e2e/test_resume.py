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

from ftg_common import layout, runtime
from ftg_common.config import PPOConfig, RunConfig
from tests.funcs import driver as _driver

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(
    n_envs=4,
    n_steps=32,
    shards=2,
    batch_size=64,
    n_epochs=4,
    total_steps=128 * 16,
    eval_every_steps=512,
    eval_episodes=3,
)


def test_interrupted_then_resumed_run_matches_uninterrupted_bit_for_bit(services) -> None:
    ppo = PPOConfig(**SMALL)
    straight = RunConfig(run_id="straight", seed=5, ppo=ppo)
    _driver(straight, services).drive()

    broken = RunConfig(run_id="broken", seed=5, ppo=ppo)
    import threading

    stop = threading.Event()

    def stop_after_six(p) -> None:
        if p.iteration >= 6:
            stop.set()

    with pytest.raises(KeyboardInterrupt):
        _driver(broken, services, on_progress=stop_after_six, stop=stop).drive()
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


def _meta_row(db: Path, seed: int) -> tuple[str, int] | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(
                "SELECT status, last_iteration FROM runs WHERE run_id LIKE ?", (f"%-s{seed}",)
            ).fetchone()
    except sqlite3.OperationalError:
        return None


def _final_weights(d: Path, seed: int) -> bytes:
    (run_dir,) = [p for p in (d / "store" / "runs").iterdir() if p.name.endswith(f"-s{seed}")]
    return (run_dir / "ckpt" / "000060" / "weights.safetensors").read_bytes()


@pytest.mark.slow
def test_killed_sweep_resumes_from_its_last_committed_iteration(tmp_path: Path) -> None:
    """Two trials run one at a time; the sweep is killed during the first. ``resume RUN_ID`` finishes
    that trial, ``resume SWEEP_ID`` runs the one never started and closes the sweep."""
    spec = {
        "name": "resume-test",
        "seeds": [3, 4],
        "max_parallel": 1,
        "configs": {
            "zoo": {
                "n_envs": 8,
                "n_steps": 32,
                "batch_size": 256,
                "n_epochs": 5,
                "total_steps": 256 * 60,
                "eval_every_steps": 2048,
                "eval_episodes": 3,
            }
        },
    }
    sweep = tmp_path / "resume.yaml"
    sweep.write_text(json.dumps(spec))
    cli = [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py")]

    def env_for(d: Path) -> dict[str, str]:
        d.mkdir()
        return {
            **os.environ,
            "FTG_STORE_URL": f"file://{d}/store",
            "FTG_META_URL": f"sqlite:///{d}/meta.db",
            "MLFLOW_TRACKING_URI": f"sqlite:///{d}/mlflow.db",
            "FTG_LOCAL_WORKERS": "2",
        }

    ref_env = env_for(tmp_path / "ref")
    subprocess.run(
        [*cli, "submit", "--config", str(sweep), "--no-tracking"],
        env=ref_env,
        cwd=tmp_path / "ref",
        check=True,
        capture_output=True,
        timeout=600,
    )

    env = env_for(tmp_path / "killed")
    proc = subprocess.Popen(
        [*cli, "submit", "--config", str(sweep)],
        env=env,
        cwd=tmp_path / "killed",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    db = tmp_path / "killed" / "meta.db"
    deadline = time.monotonic() + 300
    while True:
        row = _meta_row(db, 3)
        if row and row[1] >= 10:
            break
        assert proc.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline, "the sweep never committed 10 iterations"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up: driver and warm workers die at once
    proc.wait(timeout=30)
    status, last = _meta_row(db, 3)
    assert status == "running" and 10 <= last < 59
    assert _meta_row(db, 4) == ("created", -1)

    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs WHERE run_id LIKE '%-s3'").fetchone()
        (sweep_id,) = conn.execute("SELECT sweep_id FROM sweeps").fetchone()
    out = subprocess.run(
        [*cli, "resume", run_id],
        env=env,
        cwd=tmp_path / "killed",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert _meta_row(db, 3) == ("finished", 59) and _meta_row(db, 4) == ("created", -1)
    assert "A/B comparison" not in out.stdout  # the sweep is not complete yet

    out = subprocess.run(
        [*cli, "resume", sweep_id],
        env=env,
        cwd=tmp_path / "killed",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert _meta_row(db, 4) == ("finished", 59) and "A/B comparison" in out.stdout
    for seed in (3, 4):
        assert _final_weights(tmp_path / "killed", seed) == _final_weights(tmp_path / "ref", seed)


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
    env = {
        **os.environ,
        "FTG_STORE_URL": f"file://{tmp_path}/store",
        "FTG_META_URL": f"sqlite:///{tmp_path}/meta.db",
        "FTG_LOCAL_WORKERS": "2",
    }
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
        while not ((r := _meta_row(tmp_path / "meta.db", 0)) and r[1] >= 5):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    text = log.read_text()
    assert "Traceback" not in text and "workflows/ppo_sweep.py resume ctrlc-" in text
    with sqlite3.connect(tmp_path / "meta.db") as conn:
        rows = conn.execute("SELECT status, last_iteration FROM runs").fetchall()
    assert len(rows) == 2 and all(status == "interrupted" and 5 <= last < 1999 for status, last in rows)
