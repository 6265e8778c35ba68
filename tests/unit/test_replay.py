"""The replay buffer: pure sampling, idempotent append, FIFO eviction, and loud failures on bad chunks.

The buffer runs here on the file store and SQLite; tests/integration/test_replay_store.py runs the index
on Redis and the chunks on the S3 server.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ftg_common import layout
from ftg_common.errors import BadRequest, Conflict, CorruptObjectError
from ftg_common.meta.base import ReplayChunkRecord
from ftg_common.meta.sqlite import SqliteMeta
from ftg_common.replay import (
    MissingChunkError,
    ReplayBuffer,
    Transitions,
    plan_reads,
    sample_indices,
    transitions_from_shard,
    window,
)
from ftg_common.replay.buffer import ChunkCache, chunk_id_of
from ftg_common.replay.sampling import evict_before
from ftg_common.store.file import FileStore

RUN = "run-replay"


def make_transitions(first: int, n: int, obs_dim: int = 3) -> Transitions:
    """Transitions whose every field encodes its global index, so any gathered row can be checked."""
    idx = np.arange(first, first + n)
    return Transitions(
        obs=np.repeat(idx[:, None], obs_dim, 1).astype(np.float32),
        actions=(idx % 2).astype(np.int64),
        rewards=idx.astype(np.float32),
        next_obs=np.repeat(idx[:, None] + 0.5, obs_dim, 1).astype(np.float32),
        terminated=idx % 7 == 0,
        truncated=idx % 11 == 0,
        behaviour_probs=np.full(n, 0.5, np.float32),
    )


@pytest.fixture
def buffer(file_store: FileStore, sqlite_meta: SqliteMeta) -> ReplayBuffer:
    sqlite_meta.create_run(RUN)
    return ReplayBuffer(file_store, sqlite_meta, RUN, capacity=100)


def fill(buf: ReplayBuffer, sizes: list[int]) -> None:
    first = 0
    for i, n in enumerate(sizes):
        buf.append(f"src/{i}", make_transitions(first, n))
        first += n


# --------------------------------------------------------------------------- pure sampling


def test_window_is_the_last_capacity_transitions() -> None:
    assert window(50, 100) == (0, 50)
    assert window(250, 100) == (150, 250)
    with pytest.raises(ValueError):
        window(10, 0)


def test_sample_indices_are_a_function_of_seed_and_iteration() -> None:
    a = sample_indices(7, 3, 10, 90, 4, 16)
    assert a.shape == (4, 16) and a.dtype == np.int64 and a.min() >= 10 and a.max() < 90
    np.testing.assert_array_equal(a, sample_indices(7, 3, 10, 90, 4, 16))
    assert not np.array_equal(a, sample_indices(7, 4, 10, 90, 4, 16))
    assert not np.array_equal(a, sample_indices(8, 3, 10, 90, 4, 16))
    with pytest.raises(ValueError, match="empty"):
        sample_indices(0, 0, 5, 5, 1, 1)


def _records(sizes: list[int], start_chunk: int = 0, start_first: int = 0) -> list[ReplayChunkRecord]:
    out, first = [], start_first
    for i, n in enumerate(sizes):
        out.append(ReplayChunkRecord(start_chunk + i, first, n, "0" * 64, f"s{i}"))
        first += n
    return out


def test_plan_reads_lists_only_the_chunks_sampled_from_and_the_rows_in_them() -> None:
    records = _records([10, 10, 10, 10])  # transitions 0..39 in chunks 0..3
    indices = np.array([[35, 3], [31, 9]])
    plan = plan_reads(indices, records, 0, 40)
    assert plan.chunk_ids == [0, 3]
    # Concatenation of chunks 0 and 3: rows 0..9 are 0..9, rows 10..19 are 30..39.
    np.testing.assert_array_equal(plan.rows, [[15, 3], [11, 9]])


def test_plan_reads_refuses_a_window_the_index_does_not_cover() -> None:
    records = _records([10, 10], start_chunk=2, start_first=20)  # 20..39 indexed
    with pytest.raises(Conflict, match=r"\[15, 40\) is not covered"):
        plan_reads(np.array([25]), records, 15, 40)
    with pytest.raises(Conflict, match="not covered"):
        plan_reads(np.array([25]), records, 20, 45)
    gap = [records[0], ReplayChunkRecord(4, 30, 10, "0" * 64, "x")]
    with pytest.raises(Conflict, match="not contiguous"):
        plan_reads(np.array([25]), gap, 20, 40)


def test_evict_before_keeps_every_chunk_that_reaches_the_window() -> None:
    records = _records([10, 10, 10])
    assert evict_before(records, 0, 3) == 0
    assert evict_before(records, 10, 3) == 1
    assert evict_before(records, 19, 3) == 1  # chunk 1 still holds index 19
    assert evict_before(records, 30, 3) == 3


def test_transitions_from_a_time_major_shard() -> None:
    t, m, d = 3, 2, 4
    shard = {
        "obs": np.arange(t * m * d, dtype=np.float32).reshape(t, m, d),
        "next_obs": np.ones((t, m, d), np.float32),
        "actions": np.array([[0, 1], [1, 0], [0, 0]]),
        "rewards": np.ones((t, m), np.float32),
        "terminated": np.array([[0, 0], [1, 0], [0, 0]], np.uint8),
        "truncated": np.array([[0, 0], [0, 0], [0, 1]], np.uint8),
        "behaviour_probs": np.full((t, m), 0.5, np.float32),
        "log_probs": np.zeros((t, m), np.float32),  # other keys are ignored
    }
    tr = transitions_from_shard(shard)
    assert len(tr) == 6 and tr.obs.shape == (6, 4) and tr.terminated.dtype == bool
    np.testing.assert_array_equal(tr.obs[3], shard["obs"][1, 1])  # row t * M + env
    assert tr.terminated.tolist() == [False, False, True, False, False, False]
    assert tr.truncated.tolist() == [False, False, False, False, False, True]
    del shard["next_obs"]
    with pytest.raises(BadRequest, match="next_obs"):
        transitions_from_shard(shard)


# --------------------------------------------------------------------------- append


def test_append_assigns_chunks_and_global_indices_in_order(buffer: ReplayBuffer) -> None:
    fill(buffer, [30, 20])
    head = buffer.meta.replay_head(RUN)
    assert (head.next_chunk, head.next_first, head.oldest_chunk) == (2, 50, 0)
    records = buffer.meta.replay_chunks(RUN)
    assert [(r.chunk, r.first, r.size, r.source) for r in records] == [
        (0, 0, 30, "src/0"),
        (1, 30, 20, "src/1"),
    ]
    assert buffer.store.list(layout.replay_prefix(RUN)) == [
        layout.replay_chunk_key(RUN, 0),
        layout.replay_chunk_key(RUN, 1),
    ]


def test_append_of_the_same_source_twice_does_not_duplicate(buffer: ReplayBuffer) -> None:
    tr = make_transitions(0, 30)
    first = buffer.append("iter/0/traj/0", tr)
    key = layout.replay_chunk_key(RUN, 0)
    original = buffer.store.get_bytes(key)
    again = buffer.append("iter/0/traj/0", tr)
    assert first.appended and not again.appended and again.chunk == first.chunk == 0
    assert buffer.meta.replay_head(RUN).next_first == 30
    assert buffer.store.get_bytes(key) == original  # identical bytes
    with pytest.raises(Conflict, match="other content"):
        buffer.append("iter/0/traj/0", make_transitions(5, 30))


def test_a_retry_repairs_a_crash_between_the_index_and_the_object(buffer: ReplayBuffer) -> None:
    tr = make_transitions(0, 30)
    buffer.append("src/0", tr)
    buffer.store.delete(layout.replay_chunk_key(RUN, 0))  # as if the writer died before its put
    assert not buffer.append("src/0", tr).appended
    assert len(buffer.read_chunk(buffer.meta.replay_chunks(RUN)[0])) == 30


def test_append_refuses_an_empty_shard(buffer: ReplayBuffer) -> None:
    with pytest.raises(BadRequest, match="0 transitions"):
        buffer.append("src/0", make_transitions(0, 0))


# --------------------------------------------------------------------------- evict


def test_eviction_is_fifo_by_chunk_and_deletes_the_objects(buffer: ReplayBuffer) -> None:
    fill(buffer, [40, 40, 40])  # 120 transitions, capacity 100: window [20, 120)
    assert buffer.evict() == []  # chunk 0 (0..39) still reaches into the window
    buffer.append("src/3", make_transitions(120, 40))  # window [60, 160)
    assert buffer.evict() == [0]
    assert [r.chunk for r in buffer.meta.replay_chunks(RUN)] == [1, 2, 3]
    assert not buffer.store.exists(layout.replay_chunk_key(RUN, 0))
    assert buffer.evict() == []  # idempotent
    assert buffer.meta.replay_head(RUN).oldest_chunk == 1
    # An evicted source appended again (a very late retry) is recognised, not re-added.
    assert buffer.append("src/0", make_transitions(0, 40)).appended is False
    assert buffer.meta.replay_head(RUN).next_chunk == 4 and not buffer.store.exists(
        layout.replay_chunk_key(RUN, 0)
    )


def test_eviction_also_deletes_objects_a_crash_left_behind(buffer: ReplayBuffer) -> None:
    fill(buffer, [60, 60, 60])
    stale = buffer.store.get_bytes(layout.replay_chunk_key(RUN, 0))
    buffer.evict()
    buffer.store.put_bytes(layout.replay_chunk_key(RUN, 0), stale)  # index dropped, delete never ran
    buffer.evict()
    assert not buffer.store.exists(layout.replay_chunk_key(RUN, 0))


# --------------------------------------------------------------------------- sample


class CountingStore(FileStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def get_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().get_bytes(key)


def test_sample_is_reproducible_and_returns_the_sampled_transitions(
    tmp_path: Path, sqlite_meta: SqliteMeta
) -> None:
    sqlite_meta.create_run(RUN)
    store = CountingStore(tmp_path / "s")
    buf = ReplayBuffer(store, sqlite_meta, RUN, capacity=100)
    fill(buf, [25, 25, 25, 25, 25])  # 125 appended: window [25, 125)
    sample = buf.sample(seed=3, iteration=4, upto=125, n_batches=2, batch_size=8)
    assert sample.window == (25, 125) and sample.indices.shape == (2, 8)
    # Every field of every row is the transition its index names.
    np.testing.assert_array_equal(sample.transitions.rewards, sample.indices.ravel().astype(np.float32))
    np.testing.assert_array_equal(sample.batch(1).obs[:, 0], sample.indices[1].astype(np.float32))
    assert sample.transitions.terminated.tolist() == (sample.indices.ravel() % 7 == 0).tolist()
    # Only the chunks the indices fall in were read.
    needed = sorted({int(i) // 25 for i in sample.indices.ravel()})
    assert sample.chunks == needed
    assert store.reads == [layout.replay_chunk_key(RUN, c) for c in needed]
    again = buf.sample(seed=3, iteration=4, upto=125, n_batches=2, batch_size=8)
    np.testing.assert_array_equal(again.indices, sample.indices)


def test_sample_reads_only_the_chunks_it_samples_from(tmp_path: Path, sqlite_meta: SqliteMeta) -> None:
    sqlite_meta.create_run(RUN)
    store = CountingStore(tmp_path / "s")
    buf = ReplayBuffer(store, sqlite_meta, RUN, capacity=10_000)
    fill(buf, [100] * 50)
    sample = buf.sample(seed=0, iteration=0, upto=5000, n_batches=1, batch_size=4)
    assert len(store.reads) == len(set(sample.chunks)) <= 4


def test_sample_of_an_evicted_window_is_a_conflict_not_a_resample(buffer: ReplayBuffer) -> None:
    fill(buffer, [60, 60, 60])
    buffer.evict()  # window [80, 180): chunk 0 (0..59) dropped
    with pytest.raises(Conflict, match="not covered"):
        buffer.sample(0, 1, upto=120, n_batches=1, batch_size=4)  # window [20, 120)
    with pytest.raises(Conflict, match="not covered"):
        buffer.sample(0, 1, upto=200, n_batches=1, batch_size=4)  # not appended yet


def test_a_missing_chunk_is_a_409_naming_its_key(buffer: ReplayBuffer) -> None:
    fill(buffer, [50, 50])
    key = layout.replay_chunk_key(RUN, 1)
    buffer.store.delete(key)
    with pytest.raises(MissingChunkError) as err:
        buffer.sample(0, 0, upto=100, n_batches=4, batch_size=32)
    assert err.value.status == 409 and err.value.key == key and key in err.value.message


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap"])
def test_a_corrupt_chunk_is_reported_naming_its_key(buffer: ReplayBuffer, damage: str) -> None:
    fill(buffer, [50, 50])
    key, other = layout.replay_chunk_key(RUN, 1), layout.replay_chunk_key(RUN, 0)
    data = buffer.store.get_bytes(key)
    if damage == "flip":
        data = data[:-1] + bytes([data[-1] ^ 1])
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:  # an intact chunk, but not the one the index recorded
        data = buffer.store.get_bytes(other)
    buffer.store.put_bytes(key, data)
    with pytest.raises(CorruptObjectError) as err:
        buffer.sample(0, 0, upto=100, n_batches=4, batch_size=32)
    assert err.value.key == key and key in str(err.value)


def test_the_chunk_cache_serves_repeat_reads(tmp_path: Path, sqlite_meta: SqliteMeta) -> None:
    sqlite_meta.create_run(RUN)
    store = CountingStore(tmp_path / "s")
    buf = ReplayBuffer(store, sqlite_meta, RUN, capacity=1000, cache=ChunkCache())
    fill(buf, [50, 50])
    first = buf.sample(0, 0, upto=100, n_batches=4, batch_size=32)
    n = len(store.reads)
    second = buf.sample(0, 0, upto=100, n_batches=4, batch_size=32)
    assert len(store.reads) == n
    np.testing.assert_array_equal(first.transitions.obs, second.transitions.obs)


def test_chunk_keys_are_built_by_layout() -> None:
    key = layout.replay_chunk_key(RUN, 12)
    assert key == f"runs/{RUN}/replay/00000012.safetensors"
    assert chunk_id_of(RUN, key) == 12
    assert chunk_id_of(RUN, f"runs/{RUN}/replay/x.safetensors") is None
    assert chunk_id_of("other", key) is None
