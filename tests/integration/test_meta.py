"""Metadata-store conformance: SQLite and Redis must behave identically, including under races.

Both stores run on a fake clock (``meta_clock``), so timestamps and lease expiry are exact and no test
sleeps; a few tests reopen a store on the default clock to check that it is wall-clock time.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ftg_common.ids import InvalidIdError
from ftg_common.meta import MetaStore, RunNotFoundError, open_meta
from ftg_common.meta.redis import RedisMeta
from ftg_common.meta.sqlite import SqliteMeta
from ftg_common.settings import Settings
from tests.fake_clock import FakeClock

RUN_FIELDS = {"run_id", "status", "version", "last_iteration", "sweep_id", "created", "updated", "extra"}


@pytest.fixture(params=["sqlite", "redis"])
def meta(request: pytest.FixtureRequest) -> MetaStore:
    # tests/conftest.py marks the "redis" case integration (SERVICE_PARAMS): it needs the server.
    return request.getfixturevalue(f"{request.param}_meta")


def _reopen_spec(meta: MetaStore, request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """What a child process needs to open the same store (stores themselves aren't picklable)."""
    if isinstance(meta, SqliteMeta):
        return ("sqlite", str(meta.path), "")
    assert isinstance(meta, RedisMeta)
    return ("redis", request.getfixturevalue("redis_url"), meta.prefix)


def _reopen(spec: tuple[str, str, str]) -> MetaStore:
    kind, location, prefix = spec
    return SqliteMeta(location) if kind == "sqlite" else RedisMeta(location, prefix=prefix)


# --------------------------------------------------------------------------- runs


def test_create_run_starts_uncommitted(meta: MetaStore, meta_clock: FakeClock) -> None:
    meta_clock.advance(0.125)
    assert meta.create_run("run-1", sweep_id="sweep-a", extra={"seed": 7, "algo": "ppo"}) is True
    run = meta.get_run("run-1")
    assert set(run) == RUN_FIELDS
    assert run["run_id"] == "run-1"
    assert run["status"] == "created"
    assert run["version"] == 0 and run["last_iteration"] == -1
    assert run["sweep_id"] == "sweep-a"
    assert run["extra"] == {"seed": 7, "algo": "ppo"}
    assert run["created"] == run["updated"] == meta_clock()
    plain = meta.create_run("run-2")
    assert plain and meta.get_run("run-2")["sweep_id"] is None and meta.get_run("run-2")["extra"] == {}


def test_duplicate_create_returns_false_and_changes_nothing(meta: MetaStore) -> None:
    assert meta.create_run("run-1", extra={"seed": 1})
    assert meta.commit_version("run-1", 0, iteration=0)
    original = meta.get_run("run-1")
    assert meta.create_run("run-1", sweep_id="other", extra={"seed": 2}) is False
    assert meta.get_run("run-1") == original
    assert [run["run_id"] for run in meta.list_runs()] == ["run-1"]
    assert meta.list_runs("other") == []


@pytest.mark.parametrize("bad_id", ["Run-1", "-run", "run_1", "../run", "", "a" * 64, "run:1"])
def test_invalid_run_ids_are_refused(meta: MetaStore, bad_id: str) -> None:
    with pytest.raises(InvalidIdError):
        meta.create_run(bad_id)
    assert meta.list_runs() == []


def test_unknown_run_raises_and_is_never_created(meta: MetaStore) -> None:
    calls = [
        lambda: meta.get_run("ghost"),
        lambda: meta.set_status("ghost", "running"),
        lambda: meta.update_extra("ghost", {"a": 1}),
        lambda: meta.commit_version("ghost", 0, iteration=0),
    ]
    for call in calls:
        with pytest.raises(RunNotFoundError) as info:
            call()
        assert "ghost" in str(info.value)
        assert isinstance(info.value, KeyError)
    # Updating a missing run must not conjure up a half-filled record.
    assert meta.list_runs() == []


def test_every_write_stamps_updated_and_keeps_created(meta: MetaStore, meta_clock: FakeClock) -> None:
    meta.create_run("run-1")
    created = meta_clock()
    writes = [
        lambda: meta.set_status("run-1", "running"),
        lambda: meta.update_extra("run-1", {"a": 1}),
        lambda: meta.commit_version("run-1", 0, iteration=0),
    ]
    for write in writes:
        meta_clock.advance(2.5)
        write()
        run = meta.get_run("run-1")
        assert (run["created"], run["updated"]) == (created, meta_clock())
    assert run["status"] == "running" and run["extra"] == {"a": 1}
    assert run["version"] == 1 and run["last_iteration"] == 0


def test_update_extra_merges_top_level_keys(meta: MetaStore) -> None:
    meta.create_run("run-1", extra={"seed": 1, "tags": {"a": 1}, "keep": "yes"})
    meta.update_extra("run-1", {"tags": {"b": 2}, "big": 2**62 + 1, "lr": 0.1, "ok": None})
    assert meta.get_run("run-1")["extra"] == {
        "seed": 1,
        "tags": {"b": 2},  # a shallow merge: the new value replaces the old one
        "keep": "yes",
        "big": 2**62 + 1,  # exact, no float round-off
        "lr": 0.1,
        "ok": None,
    }
    with pytest.raises(TypeError):
        meta.update_extra("run-1", {"bad": object()})
    assert meta.get_run("run-1")["extra"]["keep"] == "yes"


def test_concurrent_extra_updates_are_not_lost(meta: MetaStore) -> None:
    meta.create_run("run-1")
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(5):
            meta.update_extra("run-1", {f"w{n}-{i}": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meta.get_run("run-1")["extra"] == {f"w{n}-{i}": i for n in range(8) for i in range(5)}


def test_list_runs_in_creation_order_and_by_sweep(meta: MetaStore, meta_clock: FakeClock) -> None:
    for run_id, sweep in [("zeta", "s1"), ("alpha", None), ("mid", "s1"), ("beta", "s2")]:
        assert meta.create_run(run_id, sweep_id=sweep)
        meta_clock.advance(0.001)
    # Runs created in the same instant come in run-id order.
    assert meta.create_run("gamma") and meta.create_run("delta")
    assert [run["run_id"] for run in meta.list_runs()] == ["zeta", "alpha", "mid", "beta", "delta", "gamma"]
    assert [run["run_id"] for run in meta.list_runs("s1")] == ["zeta", "mid"]
    assert [run["run_id"] for run in meta.list_runs("s2")] == ["beta"]
    assert meta.list_runs("nope") == []
    assert all(set(run) == RUN_FIELDS for run in meta.list_runs())


# --------------------------------------------------------------------------- fenced commits


def test_commit_version_is_compare_and_set(meta: MetaStore) -> None:
    meta.create_run("run-1")
    assert meta.commit_version("run-1", 0, iteration=0) is True
    assert (meta.get_run("run-1")["version"], meta.get_run("run-1")["last_iteration"]) == (1, 0)
    # A stale updater (still believes version 0) and a confused one (future version) both lose.
    assert meta.commit_version("run-1", 0, iteration=9) is False
    assert meta.commit_version("run-1", 5, iteration=9) is False
    assert (meta.get_run("run-1")["version"], meta.get_run("run-1")["last_iteration"]) == (1, 0)
    assert meta.commit_version("run-1", 1, iteration=1) is True
    run = meta.get_run("run-1")
    assert (run["version"], run["last_iteration"]) == (2, 1)
    assert run["status"] == "created" and run["extra"] == {}


def test_commit_version_race_between_threads_has_one_winner(meta: MetaStore) -> None:
    meta.create_run("run-1")
    n = 16
    start = threading.Barrier(n)
    results: list[bool] = []
    lock = threading.Lock()

    def contender() -> None:
        start.wait()
        won = meta.commit_version("run-1", 0, iteration=0)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=contender) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * (n - 1) + [True]
    run = meta.get_run("run-1")
    assert (run["version"], run["last_iteration"]) == (1, 0)


def _digests(tag: str, n: int = 3) -> dict[str, str]:
    """n made-up object digests, distinct per ``tag``."""
    return {f"runs/run-1/obj-{i}": hashlib.sha256(f"{tag}/{i}".encode()).hexdigest() for i in range(n)}


def test_commit_records_the_new_versions_digests(meta: MetaStore) -> None:
    meta.create_run("run-1")
    assert meta.version_digests("run-1", 1) is None
    first = _digests("v1")
    assert meta.commit_version("run-1", 0, iteration=0, digests=first) is True
    assert meta.version_digests("run-1", 1) == first
    # A commit that loses the compare-and-set records nothing.
    assert meta.commit_version("run-1", 0, iteration=0, digests=_digests("loser")) is False
    assert meta.version_digests("run-1", 1) == first
    assert meta.version_digests("run-1", 2) is None
    # Without digests the commit is what it always was.
    assert meta.commit_version("run-1", 1, iteration=1) is True
    assert meta.version_digests("run-1", 2) is None
    assert meta.get_run("run-1")["version"] == 2


def test_record_version_digests_keeps_the_first_record(meta: MetaStore) -> None:
    meta.create_run("run-1")
    initial = _digests("v0")
    assert meta.record_version_digests("run-1", 0, initial) is True
    assert meta.record_version_digests("run-1", 0, _digests("other")) is False
    assert meta.version_digests("run-1", 0) == initial
    assert meta.get_run("run-1")["version"] == 0  # recording commits nothing


def test_version_digests_of_an_unknown_run(meta: MetaStore) -> None:
    with pytest.raises(RunNotFoundError):
        meta.version_digests("nobody", 0)
    with pytest.raises(RunNotFoundError):
        meta.record_version_digests("nobody", 0, _digests("x"))
    with pytest.raises(RunNotFoundError):
        meta.commit_version("nobody", 0, iteration=0, digests=_digests("x"))
    assert meta.list_runs() == []


@pytest.mark.parametrize(
    "bad", [{"runs/run-1/a": "ABC"}, {"runs/run-1/a": "0" * 63}, {"runs/run-1/a": "G" * 64}, {"": "0" * 64}]
)
def test_malformed_digests_are_refused_and_nothing_is_written(meta: MetaStore, bad: dict[str, str]) -> None:
    meta.create_run("run-1")
    with pytest.raises(ValueError):
        meta.commit_version("run-1", 0, iteration=0, digests=bad)
    with pytest.raises(ValueError):
        meta.record_version_digests("run-1", 0, bad)
    assert meta.get_run("run-1")["version"] == 0
    assert meta.version_digests("run-1", 0) is None and meta.version_digests("run-1", 1) is None


def test_racing_commits_record_the_winners_digests(meta: MetaStore) -> None:
    meta.create_run("run-1")
    n = 8
    start = threading.Barrier(n)
    won: list[int] = []

    def contender(worker: int) -> None:
        start.wait()
        if meta.commit_version("run-1", 0, iteration=0, digests=_digests(f"w{worker}")):
            won.append(worker)

    threads = [threading.Thread(target=contender, args=(w,)) for w in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert meta.version_digests("run-1", 1) == _digests(f"w{won[0]}")


def test_digests_are_per_run(meta: MetaStore) -> None:
    meta.create_run("run-1")
    meta.create_run("run-2")
    assert meta.commit_version("run-1", 0, iteration=0, digests=_digests("one"))
    assert meta.version_digests("run-2", 1) is None
    assert meta.commit_version("run-2", 0, iteration=0, digests=_digests("two"))
    assert meta.version_digests("run-1", 1) == _digests("one")
    assert meta.version_digests("run-2", 1) == _digests("two")


def _commit_rounds(meta: MetaStore, run_id: str, worker: int, versions: range) -> list[int]:
    """Try to commit each version in order; return the versions this worker won.

    The iteration written encodes the worker, so the final record shows whose commit it holds.
    """
    return [v for v in versions if meta.commit_version(run_id, v, iteration=v * 100 + worker)]


def _check_rounds(meta: MetaStore, run_id: str, wins: dict[int, list[int]], versions: range) -> None:
    all_wins = sorted(v for won in wins.values() for v in won)
    assert all_wins == list(versions), "every version must be committed exactly once"
    last = versions[-1]
    last_winner = next(worker for worker, won in wins.items() if last in won)
    run = meta.get_run(run_id)
    assert run["version"] == last + 1
    assert run["last_iteration"] == last * 100 + last_winner


def test_commit_version_many_rounds_between_threads(meta: MetaStore) -> None:
    meta.create_run("run-1")
    versions, workers = range(40), 6
    start = threading.Barrier(workers)
    wins: dict[int, list[int]] = {}

    def contender(worker: int) -> None:
        start.wait()
        wins[worker] = _commit_rounds(meta, "run-1", worker, versions)

    threads = [threading.Thread(target=contender, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _check_rounds(meta, "run-1", wins, versions)


def _process_contender(
    spec: tuple[str, str, str], worker: int, versions: range, start: Any, out: Any
) -> None:
    meta = _reopen(spec)
    try:
        start.wait(timeout=60)
        first = meta.commit_version("run-1", 0, iteration=0)
        out.put((worker, first, _commit_rounds(meta, "run-1", worker, versions)))
    finally:
        meta.close()


def test_commit_version_race_between_processes(meta: MetaStore, request: pytest.FixtureRequest) -> None:
    """Separate processes, separate connections: the fence must hold where no in-process lock can help."""
    meta.create_run("run-1")
    ctx = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads and open sockets
    processes, versions = 2, range(1, 30)
    start = ctx.Barrier(processes)
    out = ctx.Queue()
    spec = _reopen_spec(meta, request)
    children = [
        ctx.Process(target=_process_contender, args=(spec, w, versions, start, out)) for w in range(processes)
    ]
    for child in children:
        child.start()
    results = [out.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    # First both race for commit_version(run, 0, iteration=0), then on through later versions.
    assert sorted(first for _, first, _ in results) == [False, True], (
        "exactly one process may commit version 0"
    )
    _check_rounds(meta, "run-1", {worker: won for worker, _, won in results}, versions)


# --------------------------------------------------------------------------- sweeps


def test_sweeps(meta: MetaStore) -> None:
    record = {"name": "lr-sweep", "grid": {"lr": [1e-3, 3e-4]}, "runs": 4}
    assert meta.create_sweep("sweep-b", record) is True
    assert meta.create_sweep("sweep-a", {"name": "first"}) is True
    assert meta.create_sweep("sweep-b", {"name": "overwritten?"}) is False
    assert meta.get_sweep("sweep-b") == {**record, "sweep_id": "sweep-b"}
    assert [sweep["sweep_id"] for sweep in meta.list_sweeps()] == ["sweep-a", "sweep-b"]
    assert meta.list_sweeps()[1]["name"] == "lr-sweep"
    with pytest.raises(KeyError, match="sweep-z"):
        meta.get_sweep("sweep-z")


# --------------------------------------------------------------------------- leases


def test_lease_excludes_other_owners_until_released(meta: MetaStore) -> None:
    assert meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=30) is True
    assert meta.acquire_lease("updater/run-1", "worker-b", ttl_seconds=30) is False
    assert meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=30) is True  # renewal
    assert meta.acquire_lease("updater/run-2", "worker-b", ttl_seconds=30) is True  # leases are independent
    meta.release_lease("updater/run-1", "worker-b")  # not the holder: no effect
    assert meta.acquire_lease("updater/run-1", "worker-b", ttl_seconds=30) is False
    meta.release_lease("updater/run-1", "worker-a")
    assert meta.acquire_lease("updater/run-1", "worker-b", ttl_seconds=30) is True
    meta.release_lease("never-held", "worker-a")  # harmless


def test_lease_expires_exactly_when_its_ttl_has_passed(meta: MetaStore, meta_clock: FakeClock) -> None:
    assert meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=30)
    meta_clock.advance(29.5)
    assert meta.lease_owner("updater/run-1") == "worker-a"
    assert meta.acquire_lease("updater/run-1", "worker-b", ttl_seconds=5) is False
    meta_clock.advance(0.5)  # now == taken + ttl: the lease is over
    assert meta.lease_owner("updater/run-1") is None
    assert meta.acquire_lease("updater/run-1", "worker-b", ttl_seconds=5) is True
    assert meta.lease_owner("updater/run-1") == "worker-b"
    # The old holder has lost it: it can neither renew nor release the new holder's lease.
    assert meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=5) is False
    meta.release_lease("updater/run-1", "worker-a")
    assert meta.acquire_lease("updater/run-1", "worker-c", ttl_seconds=5) is False
    assert meta.lease_owner("updater/run-1") == "worker-b"


def test_renewal_restarts_the_ttl(meta: MetaStore, meta_clock: FakeClock) -> None:
    assert meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=10)
    meta_clock.advance(6)
    assert meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=10)  # now held until 16
    meta_clock.advance(6)  # past the first expiry (10), within the renewed one (16)
    assert meta.acquire_lease("updater/run-1", "worker-b", ttl_seconds=5) is False
    assert meta.lease_owner("updater/run-1") == "worker-a"
    meta_clock.advance(4)
    assert meta.lease_owner("updater/run-1") is None
    assert meta.acquire_lease("updater/run-1", "worker-b", ttl_seconds=5) is True


def test_renewing_a_lapsed_lease_nobody_took_succeeds(meta: MetaStore, meta_clock: FakeClock) -> None:
    assert meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=1)
    meta_clock.advance(60)
    assert meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=1) is True
    assert meta.lease_owner("updater/run-1") == "worker-a"
    meta.release_lease("updater/run-1", "worker-a")
    assert meta.lease_owner("updater/run-1") is None


def test_default_clock_is_wall_time(
    meta: MetaStore, meta_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    """A store opened without a clock stamps records and expires leases by ``time.time``."""
    wall = _reopen(_reopen_spec(meta, request))
    try:
        before = time.time()
        wall.create_run("run-1")
        assert wall.acquire_lease("updater/run-1", "worker-a", ttl_seconds=60)
        after = time.time()
        assert before <= wall.get_run("run-1")["created"] <= after
        assert wall.lease_owner("updater/run-1") == "worker-a"
    finally:
        wall.close()
    # The fake-clock store reads the same lease: held until 60 s after it was taken, by the wall clock.
    meta_clock.now = before + 59
    assert meta.lease_owner("updater/run-1") == "worker-a"
    meta_clock.now = after + 60
    assert meta.lease_owner("updater/run-1") is None


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_lease_ttl_must_be_positive_and_finite(meta: MetaStore, ttl: float) -> None:
    with pytest.raises(ValueError):
        meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=ttl)
    assert meta.acquire_lease("updater/run-1", "worker-b", ttl_seconds=5)


# --------------------------------------------------------------------------- backend specifics


def test_sqlite_uses_wal_and_is_shared_between_instances(sqlite_meta: SqliteMeta) -> None:
    journal = sqlite_meta._conn().execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"
    other = SqliteMeta(sqlite_meta.path)
    try:
        sqlite_meta.create_run("run-1")
        assert other.commit_version("run-1", 0, iteration=3)
        assert sqlite_meta.get_run("run-1")["last_iteration"] == 3
    finally:
        other.close()


def test_sqlite_refuses_in_memory_database() -> None:
    with pytest.raises(ValueError, match="file path"):
        SqliteMeta(":memory:")


def test_redis_prefixes_isolate_deployments(redis_meta: RedisMeta, redis_url: str) -> None:
    import redis

    other = RedisMeta(redis_url, prefix=f"{redis_meta.prefix}-other")
    try:
        redis_meta.create_run("run-1", sweep_id="s1")
        assert other.list_runs() == []
        with pytest.raises(RunNotFoundError):
            other.get_run("run-1")
        assert other.create_run("run-1")  # same id, different deployment
        assert other.commit_version("run-1", 0, iteration=0)
        assert redis_meta.get_run("run-1")["version"] == 0
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{other.prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
        other.close()


def test_redis_lease_key_outlives_the_lease_only_for_garbage_collection(
    redis_meta: RedisMeta, redis_url: str, meta_clock: FakeClock
) -> None:
    """Expiry is the store clock's decision; Redis's TTL only removes abandoned leases later."""
    import redis

    assert redis_meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=30)
    client = redis.Redis.from_url(redis_url)
    try:
        key = f"{redis_meta.prefix}:lease:updater/run-1"
        assert 30_000 < client.pttl(key) <= 30_000 + 3_600_000
        meta_clock.advance(31)
        assert client.exists(key) == 1  # still stored, yet no longer held
        assert redis_meta.lease_owner("updater/run-1") is None
        assert redis_meta.acquire_lease("updater/run-1", "worker-b", ttl_seconds=30)
    finally:
        client.close()


def test_redis_url_hides_password() -> None:
    meta = RedisMeta("redis://user:s3cret@127.0.0.1:6390/2")  # no connection is made until first use
    assert "s3cret" not in meta.url and "s3cret" not in repr(meta)
    assert meta.url == "redis://user:***@127.0.0.1:6390/2"


# --------------------------------------------------------------------------- open_meta


def test_open_meta_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_meta("sqlite:///state/nested/meta.db", settings=Settings())
    assert isinstance(relative, SqliteMeta)
    assert (tmp_path / "state/nested/meta.db").is_file()  # parent folders were created
    relative.create_run("run-1")
    absolute = open_meta(f"sqlite:///{tmp_path}/state/nested/meta.db")
    assert absolute.url.startswith("sqlite:////")
    assert absolute.get_run("run-1")["status"] == "created"
    reopened = open_meta(relative.url)
    assert reopened.get_run("run-1")["version"] == 0
    default = open_meta(settings=Settings(meta_url="sqlite:///from-settings.db"))
    assert isinstance(default, SqliteMeta) and default.path == tmp_path / "from-settings.db"
    for store in (relative, absolute, reopened, default):
        store.close()


def test_open_meta_redis_url(redis_url: str) -> None:
    clock = FakeClock(1234.5)
    meta = open_meta(redis_url, clock=clock)
    lease = f"ftg-test-{uuid.uuid4().hex}"  # the default prefix is shared: touch only this key
    try:
        assert isinstance(meta, RedisMeta) and meta.prefix == "ftg"
        with pytest.raises(RunNotFoundError):
            meta.get_run("ftg-test-surely-absent")  # proves it talks to the server
        assert meta.acquire_lease(lease, "worker-a", ttl_seconds=10)
        clock.advance(10)
        assert meta.lease_owner(lease) is None  # expired by the clock it was given
    finally:
        meta.release_lease(lease, "worker-a")
        meta.close()


def test_open_meta_passes_the_clock_on(tmp_path: Path) -> None:
    clock = FakeClock(1234.5)
    meta = open_meta(f"sqlite:///{tmp_path}/meta.db", clock=clock)
    try:
        meta.create_run("run-1")
        assert meta.get_run("run-1")["created"] == 1234.5
        assert meta.acquire_lease("updater/run-1", "worker-a", ttl_seconds=10)
        clock.advance(10)
        assert meta.lease_owner("updater/run-1") is None
    finally:
        meta.close()


@pytest.mark.parametrize("url", ["postgres://db/x", "sqlite://", "sqlite:///", "memory://", "meta.db"])
def test_open_meta_rejects_unusable_urls(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_meta(url, settings=Settings())
    assert repr(url) in str(info.value)
