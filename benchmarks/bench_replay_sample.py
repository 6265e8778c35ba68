"""Cost of sampling DQN minibatches from the object-store replay buffer against an in-memory array.

CartPole shapes (obs_dim 4), RL-Zoo DQN settings: chunks of 256 transitions (n_envs 1, train_freq 256),
minibatches of 64, 128 gradient steps per update. The buffer lives in a file store with a SQLite index
(the embedded default). Four figures per batch of 64:

- ``memory``: draw 64 indices and gather them from numpy arrays (what SB3's ReplayBuffer does);
- ``store_cold_one_batch``: one ``ReplayBuffer.sample`` of a single batch: read the index, read and
  check every chunk the 64 indices fall in, gather;
- ``store_per_step_in_update``: one ``sample`` of 128 batches (an update reads each needed chunk once),
  divided by 128;
- ``store_warm_cache_per_step``: the same with the chunk cache of a warm function instance.

Usage: ``.venv/bin/python benchmarks/bench_replay_sample.py [--transitions 50000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine_info import machine_info  # noqa: E402
from ftg_common.meta.sqlite import SqliteMeta  # noqa: E402
from ftg_common.replay import ChunkCache, ReplayBuffer, Transitions  # noqa: E402
from ftg_common.store.file import FileStore  # noqa: E402

CHUNK, BATCH, STEPS, OBS_DIM = 256, 64, 128, 4


def _chunk(rng: np.random.Generator, n: int) -> Transitions:
    return Transitions(
        obs=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        actions=rng.integers(0, 2, n).astype(np.int64),
        rewards=np.ones(n, np.float32),
        next_obs=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        terminated=rng.random(n) < 0.02,
        truncated=np.zeros(n, bool),
        behaviour_probs=np.full(n, 0.5, np.float32),
    )


def _best(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store, meta = FileStore(Path(tmp) / "store"), SqliteMeta(Path(tmp) / "meta.db")
        meta.create_run("bench")
        buf = ReplayBuffer(store, meta, "bench", capacity=100_000)
        parts = []
        for i in range(args.transitions // CHUNK):
            part = _chunk(rng, CHUNK)
            parts.append(part)
            buf.append(f"iter/{i}", part)
        n = len(parts) * CHUNK
        memory = Transitions.concat(parts)
        mem_rng = np.random.default_rng(1)

        def in_memory() -> None:
            memory.take(mem_rng.integers(0, n, BATCH))

        it = iter(range(10**9))
        per_batch = {
            "memory": _best(in_memory, args.repeats * 100),
            "store_cold_one_batch": _best(lambda: buf.sample(0, next(it), n, 1, BATCH), args.repeats),
            "store_per_step_in_update": _best(lambda: buf.sample(0, next(it), n, STEPS, BATCH), args.repeats)
            / STEPS,
        }
        warm = ReplayBuffer(store, meta, "bench", capacity=100_000, cache=ChunkCache())
        warm.sample(0, 0, n, STEPS, BATCH)
        per_batch["store_warm_cache_per_step"] = (
            _best(lambda: warm.sample(0, next(it), n, STEPS, BATCH), args.repeats) / STEPS
        )
        chunks_read = len(buf.sample(0, 1, n, STEPS, BATCH).chunks)
        meta.close()
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info(load, numpy=np.__version__),
        "transitions": n,
        "chunk_size": CHUNK,
        "batch_size": BATCH,
        "gradient_steps": STEPS,
        "chunks_read_per_update": chunks_read,
        "chunks_total": n // CHUNK,
        "microseconds_per_batch": {k: round(v * 1e6, 1) for k, v in per_batch.items()},
        "ratio_to_memory": {k: round(v / per_batch["memory"], 1) for k, v in per_batch.items()},
    }
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
