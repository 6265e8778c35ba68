"""Exact resume of a DQN run includes its replay buffer: weights, optimizer state and buffer bit-identical."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftg_common import layout, runtime
from ftg_common.config import DQNConfig
from ftg_common.tensorio import decode
from tests.dqn_runs import SMALL_DQN
from tests.e2e.sweep_kill import straight_and_killed
from tests.funcs import collect_and_aggregate, request_ref, straight_and_interrupted
from tests.funcs import driver as _driver

# Capacity 96 < 14 x 32 collected transitions: eviction happens, and samples span several chunks.
SMALL = dict(SMALL_DQN, gradient_steps=8, batch_size=16, learning_starts=48, buffer_size=96)
SMALL.update(target_update_interval=8, net_arch=[32, 32], total_steps=32 * 14, eval_every_steps=128)


def _buffer(services, run_id: str) -> list[tuple[int, int, int, dict[str, bytes]]]:
    """Every indexed chunk: (id, first index, size, its arrays' bytes); the source names the run."""
    out = []
    for rec in services.meta.replay_chunks(run_id):
        arrays, _ = decode(services.store.get_bytes(layout.replay_chunk_key(run_id, rec.chunk)))
        out.append((rec.chunk, rec.first, rec.size, {k: v.tobytes() for k, v in sorted(arrays.items())}))
    return out


def test_an_interrupted_dqn_run_resumes_bit_for_bit_buffer_included(services) -> None:
    dqn = DQNConfig(**SMALL)
    _, broken = straight_and_interrupted(services, dqn, seed=7, n=5)
    assert services.meta.get_run("broken")["version"] == 5
    # A crash inside iteration 5: its shards collected and appended, its update never committed.
    collect_and_aggregate(broken, request_ref(broken, 5))

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
    ref, killed, at_kill = straight_and_killed(tmp_path, spec, seed=3, kill_after=8)
    assert at_kill is not None and at_kill[0] == "running" and 8 <= at_kill[1] < n_iter - 1
    assert killed.row(3) == ("finished", n_iter - 1)
    assert _final(killed.root, 3, n_iter) == _final(ref.root, 3, n_iter)
    assert _chunks_on_disk(killed.root, 3) == _chunks_on_disk(ref.root, 3)
