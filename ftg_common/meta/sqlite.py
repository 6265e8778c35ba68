"""Metadata store in one SQLite file: the embedded default, shared by the processes of one machine."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ftg_common.ids import validate_run_id
from ftg_common.meta.base import (
    MetaStore,
    ReplayChunkRecord,
    ReplayHead,
    RunNotFoundError,
    encode_digests,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    version         INTEGER NOT NULL,
    last_iteration  INTEGER NOT NULL,
    sweep_id        TEXT,
    created         REAL NOT NULL,
    updated         REAL NOT NULL,
    extra           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs (sweep_id);
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id  TEXT PRIMARY KEY,
    record    TEXT NOT NULL,
    created   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS version_digests (
    run_id   TEXT NOT NULL,
    version  INTEGER NOT NULL,
    digests  TEXT NOT NULL,
    PRIMARY KEY (run_id, version)
);
CREATE TABLE IF NOT EXISTS replay_chunks (
    run_id   TEXT NOT NULL,
    chunk    INTEGER NOT NULL,
    first    INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    source   TEXT NOT NULL,
    evicted  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, chunk),
    UNIQUE (run_id, source)
);
CREATE TABLE IF NOT EXISTS leases (
    name     TEXT PRIMARY KEY,
    owner    TEXT NOT NULL,
    expires  REAL NOT NULL
);
"""
_RUN_COLUMNS = "run_id, status, version, last_iteration, sweep_id, created, updated, extra"


def _run_from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    run_id, status, version, last_iteration, sweep_id, created, updated, extra = row
    return {
        "run_id": run_id,
        "status": status,
        "version": version,
        "last_iteration": last_iteration,
        "sweep_id": sweep_id,
        "created": created,
        "updated": updated,
        "extra": json.loads(extra),
    }


class _Connection(sqlite3.Connection):
    """A plain connection, subclassed only because the C type can't be weakly referenced."""


def _check_ttl(ttl_seconds: float) -> float:
    if not (isinstance(ttl_seconds, int | float) and math.isfinite(ttl_seconds) and ttl_seconds > 0):
        raise ValueError(f"lease ttl_seconds must be a positive finite number, got {ttl_seconds!r}")
    return float(ttl_seconds)


class SqliteMeta(MetaStore):
    """Safe for many threads and processes.

    Each thread gets its own connection (``threading.local``) rather than sharing one behind a lock:
    with WAL, readers on separate connections never wait for each other or for the writer, and a
    connection's transaction state can't leak between threads. SQLite itself serializes writers
    across threads and processes alike; ``busy_timeout`` makes them queue instead of failing.

    Args:
        path: The database file; its folder is created if missing.
        busy_timeout_s: How long a writer waits for another writer's lock before failing.
        clock: Seconds since the epoch. It stamps run and sweep records and decides lease expiry.
            Wall-clock time, not ``time.monotonic``: the expiry stored by one process is compared by
            another, possibly after a reboot, and a monotonic clock's origin is per boot.
    """

    def __init__(
        self, path: str | Path, busy_timeout_s: float = 30.0, clock: Callable[[], float] = time.time
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file:"):
            # Every thread opens its own connection, so a private in-memory database would be many.
            raise ValueError(f"SqliteMeta needs a database file path, got {str(path)!r}")
        self.path = Path(path).expanduser().absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path.as_posix()}"
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._local = threading.local()
        # Weak, so a finished thread's connection is closed when its thread-local goes away; pid, so
        # close() after fork() never touches connections that belong to the parent.
        self._opened: weakref.WeakKeyDictionary[_Connection, int] = weakref.WeakKeyDictionary()
        self._opened_lock = threading.Lock()
        self._conn().executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SqliteMeta({self.url!r})"

    def _conn(self) -> sqlite3.Connection:
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        # A connection inherited through fork() must not be used in the child; open a fresh one.
        if conn is not None and self._local.pid == pid:
            return conn
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,  # autocommit; multi-statement updates use explicit BEGIN IMMEDIATE
            check_same_thread=False,  # only so close() may close other threads' connections
            factory=_Connection,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode can lose the last commits on power loss but never corrupts the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn = conn
        self._local.pid = pid
        with self._opened_lock:
            self._opened[conn] = pid
        return conn

    @contextlib.contextmanager
    def _write_txn(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        # IMMEDIATE takes the write lock up front, so a read-then-write can't be invalidated midway.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close this process's connections, from every thread; a forked child leaves its parent's alone."""
        pid = os.getpid()
        with self._opened_lock:
            mine = [conn for conn, owner in self._opened.items() if owner == pid]
            self._opened.clear()
        for conn in mine:
            conn.close()
        self._local = threading.local()

    # --- runs ---
    def create_run(
        self, run_id: str, sweep_id: str | None = None, extra: dict[str, Any] | None = None
    ) -> bool:
        """See :meth:`MetaStore.create_run`."""
        validate_run_id(run_id)
        now = self._clock()
        cursor = self._conn().execute(
            f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?, 'created', 0, -1, ?, ?, ?, ?) "
            "ON CONFLICT (run_id) DO NOTHING",
            (run_id, sweep_id, now, now, json.dumps(extra or {}, sort_keys=True)),
        )
        return cursor.rowcount == 1

    def get_run(self, run_id: str) -> dict[str, Any]:
        """See :meth:`MetaStore.get_run`."""
        row = self._conn().execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(run_id)
        return _run_from_row(row)

    def list_runs(self, sweep_id: str | None = None) -> list[dict[str, Any]]:
        """See :meth:`MetaStore.list_runs`."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        params: tuple[Any, ...] = ()
        if sweep_id is not None:
            query += " WHERE sweep_id = ?"
            params = (sweep_id,)
        rows = self._conn().execute(query + " ORDER BY created, run_id", params).fetchall()
        return [_run_from_row(row) for row in rows]

    def set_status(self, run_id: str, status: str) -> None:
        """See :meth:`MetaStore.set_status`."""
        cursor = self._conn().execute(
            "UPDATE runs SET status = ?, updated = ? WHERE run_id = ?", (status, self._clock(), run_id)
        )
        if cursor.rowcount == 0:
            raise RunNotFoundError(run_id)

    def update_extra(self, run_id: str, extra: dict[str, Any]) -> None:
        """See :meth:`MetaStore.update_extra`; the merge runs under the write lock."""
        patch = json.loads(json.dumps(extra))  # fail on unserializable values before taking the lock
        with self._write_txn() as conn:
            row = conn.execute("SELECT extra FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFoundError(run_id)
            merged = json.loads(row[0])
            merged.update(patch)
            conn.execute(
                "UPDATE runs SET extra = ?, updated = ? WHERE run_id = ?",
                (json.dumps(merged, sort_keys=True), self._clock(), run_id),
            )

    def _compare_and_set_version(
        self, run_id: str, expected_version: int, iteration: int, recorded: str | None
    ) -> bool:
        """See :meth:`MetaStore.commit_version`."""
        # One conditional UPDATE is the whole compare-and-set: SQLite runs it under the write lock,
        # so of any number of racing callers exactly one matches version = expected_version. The
        # digests are inserted in the same transaction, so they appear exactly when the version does.
        with self._write_txn() as conn:
            cursor = conn.execute(
                "UPDATE runs SET version = version + 1, last_iteration = ?, updated = ? "
                "WHERE run_id = ? AND version = ?",
                (iteration, self._clock(), run_id, expected_version),
            )
            if cursor.rowcount == 1:
                if recorded is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO version_digests (run_id, version, digests) VALUES (?, ?, ?)",
                        (run_id, expected_version + 1, recorded),
                    )
                return True
            # Losing a race and naming a run that doesn't exist are different mistakes; say which.
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise RunNotFoundError(run_id)
            return False

    def record_version_digests(self, run_id: str, version: int, digests: Mapping[str, str]) -> bool:
        """See :meth:`MetaStore.record_version_digests`."""
        recorded = encode_digests(digests)
        with self._write_txn() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise RunNotFoundError(run_id)
            cursor = conn.execute(
                "INSERT INTO version_digests (run_id, version, digests) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, version) DO NOTHING",
                (run_id, int(version), recorded),
            )
            return cursor.rowcount == 1

    def version_digests(self, run_id: str, version: int) -> dict[str, str] | None:
        """See :meth:`MetaStore.version_digests`."""
        conn = self._conn()
        row = conn.execute(
            "SELECT digests FROM version_digests WHERE run_id = ? AND version = ?", (run_id, int(version))
        ).fetchone()
        if row is not None:
            recorded: dict[str, str] = json.loads(row[0])
            return recorded
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise RunNotFoundError(run_id)
        return None

    # --- replay-buffer index ---
    # Evicted chunks keep their row (flagged), so the head and the source -> chunk map stay derivable
    # from one table and a source can never be appended twice.

    def _require_run(self, conn: sqlite3.Connection, run_id: str) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise RunNotFoundError(run_id)

    @staticmethod
    def _head(conn: sqlite3.Connection, run_id: str) -> ReplayHead:
        row = conn.execute(
            "SELECT MAX(chunk) + 1, MAX(first + size), MIN(CASE WHEN evicted = 0 THEN chunk END) "
            "FROM replay_chunks WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        next_chunk, next_first, oldest = (0, 0, None) if row is None or row[0] is None else row
        return ReplayHead(int(next_chunk), int(next_first), int(next_chunk if oldest is None else oldest))

    def _append_replay_chunk(self, run_id: str, record: ReplayChunkRecord) -> bool:
        """See :meth:`MetaStore.append_replay_chunk`; the compare and the insert share one write lock."""
        with self._write_txn() as conn:
            self._require_run(conn, run_id)
            taken = conn.execute(
                "SELECT 1 FROM replay_chunks WHERE run_id = ? AND source = ?", (run_id, record.source)
            ).fetchone()
            head = self._head(conn, run_id)
            if taken is not None or (head.next_chunk, head.next_first) != (record.chunk, record.first):
                return False
            conn.execute(
                "INSERT INTO replay_chunks (run_id, chunk, first, size, digest, source) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, record.chunk, record.first, record.size, record.digest, record.source),
            )
            return True

    def replay_head(self, run_id: str) -> ReplayHead:
        """See :meth:`MetaStore.replay_head`."""
        conn = self._conn()
        self._require_run(conn, run_id)
        return self._head(conn, run_id)

    def replay_chunks(self, run_id: str) -> list[ReplayChunkRecord]:
        """See :meth:`MetaStore.replay_chunks`."""
        conn = self._conn()
        self._require_run(conn, run_id)
        rows = conn.execute(
            "SELECT chunk, first, size, digest, source FROM replay_chunks "
            "WHERE run_id = ? AND evicted = 0 ORDER BY chunk",
            (run_id,),
        ).fetchall()
        return [ReplayChunkRecord(*row) for row in rows]

    def replay_source_chunk(self, run_id: str, source: str) -> int | None:
        """See :meth:`MetaStore.replay_source_chunk`."""
        conn = self._conn()
        self._require_run(conn, run_id)
        row = conn.execute(
            "SELECT chunk FROM replay_chunks WHERE run_id = ? AND source = ?", (run_id, source)
        ).fetchone()
        return None if row is None else int(row[0])

    def evict_replay_chunks(self, run_id: str, before_chunk: int) -> list[int]:
        """See :meth:`MetaStore.evict_replay_chunks`."""
        with self._write_txn() as conn:
            self._require_run(conn, run_id)
            rows = conn.execute(
                "SELECT chunk FROM replay_chunks "
                "WHERE run_id = ? AND evicted = 0 AND chunk < ? ORDER BY chunk",
                (run_id, int(before_chunk)),
            ).fetchall()
            conn.execute(
                "UPDATE replay_chunks SET evicted = 1 WHERE run_id = ? AND evicted = 0 AND chunk < ?",
                (run_id, int(before_chunk)),
            )
            return [int(row[0]) for row in rows]

    # --- sweeps ---
    def create_sweep(self, sweep_id: str, record: dict[str, Any]) -> bool:
        """See :meth:`MetaStore.create_sweep`."""
        cursor = self._conn().execute(
            "INSERT INTO sweeps (sweep_id, record, created) VALUES (?, ?, ?) "
            "ON CONFLICT (sweep_id) DO NOTHING",
            (sweep_id, json.dumps(record, sort_keys=True), self._clock()),
        )
        return cursor.rowcount == 1

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        """See :meth:`MetaStore.get_sweep`."""
        row = self._conn().execute("SELECT record FROM sweeps WHERE sweep_id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise KeyError(f"sweep not found: {sweep_id}")
        return {**json.loads(row[0]), "sweep_id": sweep_id}

    def list_sweeps(self) -> list[dict[str, Any]]:
        """See :meth:`MetaStore.list_sweeps`."""
        rows = self._conn().execute("SELECT sweep_id, record FROM sweeps ORDER BY sweep_id").fetchall()
        return [{**json.loads(record), "sweep_id": sweep_id} for sweep_id, record in rows]

    # --- leases ---
    def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """See :meth:`MetaStore.acquire_lease`; one conditional upsert, so racing owners can't both win."""
        ttl = _check_ttl(ttl_seconds)
        now = self._clock()
        # Insert, or take over only if we already own it (renewal) or the holder's lease has expired.
        cursor = self._conn().execute(
            "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires "
            "WHERE leases.owner = excluded.owner OR leases.expires <= ?",
            (name, owner, now + ttl, now),
        )
        return cursor.rowcount == 1

    def release_lease(self, name: str, owner: str) -> None:
        """See :meth:`MetaStore.release_lease`."""
        self._conn().execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def lease_owner(self, name: str) -> str | None:
        """See :meth:`MetaStore.lease_owner`."""
        row = (
            self._conn()
            .execute("SELECT owner FROM leases WHERE name = ? AND expires > ?", (name, self._clock()))
            .fetchone()
        )
        return row[0] if row else None
