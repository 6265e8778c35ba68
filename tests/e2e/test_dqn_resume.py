"""Exact resume of a DQN run includes its replay buffer: weights, optimizer state and buffer bit-identical."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ftg_common import layout, runtime
from ftg_common.config import DQNConfig, RunConfig
from ftg_common.tensorio import decode
from tests.e2e.test_resume import ROOT, _meta_row
from tests.funcs import driver as _driver
from tests.funcs import post

# Capacity 96 < 14 x 32 collected transitions: eviction happens, and samples span several chunks.
SMALL = dict(
    n_envs=2,
    shards=2,
    train_freq=16,
    gradient_steps=8,
    batch_size=16,
    learning_starts=48,
    buffer_size=96,
    target_update_interval=8,
    net_arch=[32, 32],
    total_steps=32 * 14,
    eval_every_steps=128,
    eval_episodes=2,
)


def _buffer(services, run_id: str) -> list[tuple[int, int, int, dict[str, bytes]]]:
    """Every indexed chunk: (id, first index, size, its arrays' bytes); the source names the run."""
    out = []
    for rec in services.meta.replay_chunks(run_id):
        arrays, _ = decode(services.store.get_bytes(layout.replay_chunk_key(run_id, rec.chunk)))
        out.append((rec.chunk, rec.first, rec.size, {k: v.tobytes() for k, v in sorted(arrays.items())}))
    return out


def _interrupt_after(n: int) -> tuple[threading.Event, object]:
    stop = threading.Event()

    def on_progress(p) -> None:
        if p.iteration >= n:
            stop.set()

    return stop, on_progress


def test_an_interrupted_dqn_run_resumes_bit_for_bit_buffer_included(services) -> None:
    dqn = DQNConfig(**SMALL)
    straight = RunConfig(run_id="straight", seed=7, dqn=dqn)
    _driver(straight, services).drive()

    broken = RunConfig(run_id="broken", seed=7, dqn=dqn)
    stop, on_progress = _interrupt_after(5)
    with pytest.raises(KeyboardInterrupt):
        _driver(broken, services, on_progress=on_progress, stop=stop).drive()
    assert services.meta.get_run("broken")["version"] == 5
    # A crash inside iteration 5: its shards collected and appended, its update never committed.
    ref = {"run_id": "broken", "iteration": 5, "config_digest": broken.digest()}
    shards = [post("rollout-collector", {**ref, "shard": s}).json() for s in range(dqn.shards)]
    assert post("reward-aggregator", {**ref, "shards": shards}).status == 200

    summary = _driver(broken, services).drive()
    assert services.meta.get_run("broken")["status"] == "finished"
    assert summary.steps == dqn.n_iterations * dqn.rollout_size
    last = dqn.n_iterations
    store = runtime.store()
    for key in (layout.ckpt_weights_key, layout.ckpt_optim_key):
        assert store.get_bytes(key("straight", last)) == store.get_bytes(key("broken", last))
    a, b = (
        decode(store.get_bytes(layout.policy_key("straight", last)))[0],
        decode(store.get_bytes(layout.policy_key("broken", last)))[0],
    )
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert store.get_json(layout.ckpt_state_key("straight", last)) == store.get_json(
        layout.ckpt_state_key("broken", last)
    )
    # The buffer: same chunks, same global indices, same transitions, same FIFO head.
    straight_buffer, broken_buffer = _buffer(services, "straight"), _buffer(services, "broken")
    assert straight_buffer == broken_buffer and straight_buffer[0][0] > 0  # evicted from the front
    assert services.meta.replay_head("straight") == services.meta.replay_head("broken")
    assert store.list(layout.replay_prefix("straight"))[0].endswith(
        f"{straight_buffer[0][0]:08d}.safetensors"
    )


def _chunks_on_disk(d: Path, seed: int) -> dict[str, bytes]:
    (run_dir,) = [p for p in (d / "store" / "runs").iterdir() if p.name.endswith(f"-s{seed}")]
    # Chunk objects name their source (the run id), so compare their arrays, not their bytes.
    return {
        p.name: b"".join(v.tobytes() for _, v in sorted(decode(p.read_bytes())[0].items()))
        for p in sorted((run_dir / "replay").iterdir())
    }


def _final(d: Path, seed: int, n: int) -> tuple[bytes, bytes]:
    (run_dir,) = [p for p in (d / "store" / "runs").iterdir() if p.name.endswith(f"-s{seed}")]
    ckpt = run_dir / "ckpt" / f"{n:06d}"
    return (ckpt / "weights.safetensors").read_bytes(), (ckpt / "optimizer.safetensors").read_bytes()


@pytest.mark.slow
def test_a_killed_dqn_sweep_resumes_bit_for_bit_buffer_included(tmp_path: Path) -> None:
    """kill -9 of the whole sweep (driver and warm workers) mid-run; ``resume`` ends identical."""
    n_iter = 40
    spec = {
        "name": "dqn-kill",
        "seeds": [3],
        "configs": {"zoo": {**SMALL, "algo": "dqn", "total_steps": 32 * n_iter, "buffer_size": 200}},
    }
    sweep = tmp_path / "dqn.yaml"
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

    run = [*cli, "submit", "--config", str(sweep), "--no-tracking"]
    ref = tmp_path / "ref"
    subprocess.run(run, env=env_for(ref), cwd=ref, check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    env = env_for(killed)
    proc = subprocess.Popen(
        run, env=env, cwd=killed, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    db = killed / "meta.db"
    deadline = time.monotonic() + 300
    while not ((row := _meta_row(db, 3)) and row[1] >= 8):
        assert proc.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline, "the sweep never committed 8 iterations"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    status, last = _meta_row(db, 3)
    assert status == "running" and 8 <= last < n_iter - 1
    with sqlite3.connect(db) as conn:
        (sweep_id,) = conn.execute("SELECT sweep_id FROM sweeps").fetchone()
    out = subprocess.run(
        [*cli, "resume", sweep_id, "--no-tracking"],
        env=env,
        cwd=killed,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert _meta_row(db, 3) == ("finished", n_iter - 1)
    assert _final(killed, 3, n_iter) == _final(ref, 3, n_iter)
    assert _chunks_on_disk(killed, 3) == _chunks_on_disk(ref, 3)
