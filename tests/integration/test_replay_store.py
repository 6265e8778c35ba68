"""The replay index on both metadata stores (SQLite and a real Redis), and the buffer on the S3 server.

The index must behave identically on both: compare-and-set appends (exactly one of racing appends
wins), sources recognised forever, idempotent eviction, unknown runs refused.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ftg_common import layout
from ftg_common.errors import CorruptObjectError
from ftg_common.meta import MetaStore, RunNotFoundError
from ftg_common.meta.base import ReplayChunkRecord, ReplayHead
from ftg_common.meta.redis import RedisMeta
from ftg_common.meta.sqlite import SqliteMeta
from ftg_common.replay import MissingChunkError, ReplayBuffer, Transitions
from ftg_common.store.s3 import S3Store

RUN = "run-replay"
DIGEST = "ab" * 32


@pytest.fixture(params=["sqlite", "redis"])
def meta(request: pytest.FixtureRequest) -> MetaStore:
    store: MetaStore = request.getfixturevalue(f"{request.param}_meta")
    store.create_run(RUN)
    return store


def rec(chunk: int, first: int, size: int, source: str | None = None) -> ReplayChunkRecord:
    return ReplayChunkRecord(chunk, first, size, DIGEST, source or f"src/{chunk}")


def test_an_empty_index_has_a_zero_head(meta: MetaStore) -> None:
    assert meta.replay_head(RUN) == ReplayHead(0, 0, 0)
    assert meta.replay_chunks(RUN) == []
    assert meta.replay_source_chunk(RUN, "src/0") is None


def test_append_is_a_compare_and_set_on_the_head(meta: MetaStore) -> None:
    assert meta.append_replay_chunk(RUN, rec(0, 0, 30))
    assert not meta.append_replay_chunk(RUN, rec(0, 0, 30, "other"))  # head moved on
    assert not meta.append_replay_chunk(RUN, rec(2, 30, 30))  # skips chunk 1
    assert not meta.append_replay_chunk(RUN, rec(1, 31, 30))  # gap in the indices
    assert not meta.append_replay_chunk(RUN, rec(1, 30, 10, "src/0"))  # source already indexed
    assert meta.append_replay_chunk(RUN, rec(1, 30, 20))
    assert meta.replay_head(RUN) == ReplayHead(2, 50, 0)
    assert meta.replay_chunks(RUN) == [rec(0, 0, 30), rec(1, 30, 20)]
    assert meta.replay_source_chunk(RUN, "src/1") == 1


def test_large_indices_survive_the_round_trip(meta: MetaStore) -> None:
    big = 10**13 + 7  # Lua's own number formatting would turn this into 1e+13
    assert meta.append_replay_chunk(RUN, rec(0, 0, big))
    assert meta.append_replay_chunk(RUN, rec(1, big, 5))
    assert meta.replay_head(RUN) == ReplayHead(2, big + 5, 0)


def test_eviction_drops_the_oldest_and_keeps_sources_known(meta: MetaStore) -> None:
    for c in range(4):
        assert meta.append_replay_chunk(RUN, rec(c, 10 * c, 10))
    assert meta.evict_replay_chunks(RUN, 2) == [0, 1]
    assert meta.evict_replay_chunks(RUN, 2) == []
    assert meta.evict_replay_chunks(RUN, 1) == []
    assert [r.chunk for r in meta.replay_chunks(RUN)] == [2, 3]
    assert meta.replay_head(RUN) == ReplayHead(4, 40, 2)
    assert meta.replay_source_chunk(RUN, "src/0") == 0
    assert not meta.append_replay_chunk(RUN, rec(4, 40, 10, "src/0"))
    assert meta.evict_replay_chunks(RUN, 99) == [2, 3]  # never past the head
    assert meta.replay_head(RUN) == ReplayHead(4, 40, 4) and meta.replay_chunks(RUN) == []
    assert meta.append_replay_chunk(RUN, rec(4, 40, 10))
    assert meta.replay_head(RUN) == ReplayHead(5, 50, 4)


def test_unknown_runs_and_bad_records_are_refused(meta: MetaStore) -> None:
    for call in (
        lambda: meta.append_replay_chunk("nope", rec(0, 0, 1)),
        lambda: meta.replay_head("nope"),
        lambda: meta.replay_chunks("nope"),
        lambda: meta.replay_source_chunk("nope", "x"),
        lambda: meta.evict_replay_chunks("nope", 1),
    ):
        with pytest.raises(RunNotFoundError):
            call()
    for bad in (
        rec(0, 0, 0),
        rec(-1, 0, 1),
        ReplayChunkRecord(0, 0, 1, "xyz", "s"),
        ReplayChunkRecord(0, 0, 1, DIGEST, ""),
    ):
        with pytest.raises(ValueError):
            meta.append_replay_chunk(RUN, bad)
    assert meta.replay_head(RUN) == ReplayHead()


def _reopen(meta: MetaStore, request: pytest.FixtureRequest) -> MetaStore:
    if isinstance(meta, SqliteMeta):
        return SqliteMeta(meta.path)
    assert isinstance(meta, RedisMeta)
    return RedisMeta(request.getfixturevalue("redis_url"), prefix=meta.prefix)


def test_exactly_one_of_racing_appends_wins(meta: MetaStore, request: pytest.FixtureRequest) -> None:
    stores = [_reopen(meta, request) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    wins: list[bool] = [False] * len(stores)

    def race(i: int) -> None:
        barrier.wait()
        wins[i] = stores[i].append_replay_chunk(RUN, rec(0, 0, 10, f"racer/{i}"))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert sum(wins) == 1
    winner = wins.index(True)
    assert meta.replay_chunks(RUN) == [rec(0, 0, 10, f"racer/{winner}")]
    assert meta.replay_head(RUN) == ReplayHead(1, 10, 0)


# --------------------------------------------------------------------------- the buffer on S3 + Redis


def _transitions(first: int, n: int) -> Transitions:
    idx = np.arange(first, first + n)
    return Transitions(
        obs=np.repeat(idx[:, None], 4, 1).astype(np.float32),
        actions=(idx % 2).astype(np.int64),
        rewards=idx.astype(np.float32),
        next_obs=np.repeat(idx[:, None], 4, 1).astype(np.float32),
        terminated=idx % 5 == 0,
        truncated=np.zeros(n, bool),
        behaviour_probs=np.ones(n, np.float32),
    )


def test_buffer_on_s3_and_redis(s3_store: S3Store, redis_meta: RedisMeta) -> None:
    redis_meta.create_run(RUN)
    buf = ReplayBuffer(s3_store, redis_meta, RUN, capacity=64)
    for i in range(5):
        assert buf.append(f"iter/{i}", _transitions(32 * i, 32)).appended
    assert not buf.append("iter/4", _transitions(128, 32)).appended
    assert buf.evict() == [0, 1, 2]  # window [96, 160)
    assert s3_store.list(layout.replay_prefix(RUN)) == [layout.replay_chunk_key(RUN, c) for c in (3, 4)]
    sample = buf.sample(seed=1, iteration=4, upto=160, n_batches=3, batch_size=16)
    assert sample.indices.min() >= 96
    np.testing.assert_array_equal(sample.transitions.rewards, sample.indices.ravel().astype(np.float32))
    key = layout.replay_chunk_key(RUN, 4)
    data = s3_store.get_bytes(key)
    s3_store.put_bytes(key, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CorruptObjectError, match=key):
        buf.sample(seed=1, iteration=4, upto=160, n_batches=8, batch_size=16)
    s3_store.delete(key)
    with pytest.raises(MissingChunkError, match=key):
        buf.sample(seed=1, iteration=4, upto=160, n_batches=8, batch_size=16)
