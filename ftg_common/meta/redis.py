"""Metadata store in Redis: the cluster backend, shared by every function replica and the controller.

Layout under ``{prefix}``: ``run:{id}`` hash per run, ``runs`` set of run ids, ``sweep-runs:{id}`` set
of a sweep's run ids, ``sweep:{id}`` JSON string, ``sweeps`` set of sweep ids, ``digests:{id}`` hash of
version -> JSON object of a version's object digests, ``replay:{id}`` hash of chunk id -> JSON record of
each indexed replay chunk, ``replay-sources:{id}`` hash of source -> chunk id (kept after eviction),
``replay-head:{id}`` hash of ``next_chunk``, ``next_first`` and ``oldest_chunk``, ``lease:{name}`` hash
of ``owner`` and ``expires`` (epoch seconds). Every conditional write is a Lua script, so it runs
atomically on the server.

A lease expires when the store's clock passes ``expires``, not when Redis drops the key: the same rule as
the SQLite backend, and one a test can drive with a fake clock instead of sleeping. The key still gets
a TTL, longer than the lease by ``_LEASE_GC_GRACE_S``, only so that abandoned leases don't pile up.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from ftg_common.ids import validate_run_id
from ftg_common.meta.base import (
    MetaStore,
    ReplayChunkRecord,
    ReplayHead,
    RunNotFoundError,
    encode_digests,
)

# KEYS: run hash, runs set, [sweep member set]. ARGV: run_id, then field/value pairs for the hash.
_CREATE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
if KEYS[3] then redis.call('SADD', KEYS[3], ARGV[1]) end
return 1
"""
# KEYS: run hash. ARGV: field/value pairs. Updates only an existing run (HSET alone would create one).
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""
# KEYS: run hash, digests hash. ARGV: expected version, iteration, updated, new version, digests JSON
# ('' for none). Returns 1 won, 0 lost, -1 no such run. The digests land in the same atomic step.
_COMMIT_VERSION = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current then return -1 end
if tonumber(current) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', tonumber(current) + 1, 'last_iteration', ARGV[2], 'updated', ARGV[3])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], ARGV[4], ARGV[5]) end
return 1
"""
# KEYS: run hash, digests hash. ARGV: version, digests JSON. Returns 1 recorded, 0 kept, -1 no such run.
_RECORD_DIGESTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
"""
# KEYS: run hash, replay head, replay records, replay sources. ARGV: chunk, first, size, record JSON,
# source. Returns 1 appended, 0 head moved or source already indexed, -1 no such run. Integers are
# written with %d: Lua's own number-to-string would switch to exponent notation for large ones.
_APPEND_REPLAY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[4], ARGV[5]) == 1 then return 0 end
local head = redis.call('HMGET', KEYS[2], 'next_chunk', 'next_first')
local next_chunk = tonumber(head[1] or '0')
local next_first = tonumber(head[2] or '0')
if next_chunk ~= tonumber(ARGV[1]) or next_first ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[5], ARGV[1])
redis.call('HSET', KEYS[2], 'next_chunk', string.format('%d', next_chunk + 1),
  'next_first', string.format('%d', next_first + tonumber(ARGV[3])))
redis.call('HSETNX', KEYS[2], 'oldest_chunk', '0')
return 1
"""
# KEYS: run hash, replay head, replay records. ARGV: before chunk. Returns {first dropped, end} (the
# dropped ids are first .. end - 1), or {-1, -1} for no such run.
_EVICT_REPLAY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, -1} end
local head = redis.call('HMGET', KEYS[2], 'next_chunk', 'oldest_chunk')
local oldest = tonumber(head[2] or '0')
local upto = math.min(tonumber(ARGV[1]), tonumber(head[1] or '0'))
if upto <= oldest then return {oldest, oldest} end
for chunk = oldest, upto - 1 do redis.call('HDEL', KEYS[3], string.format('%d', chunk)) end
redis.call('HSET', KEYS[2], 'oldest_chunk', string.format('%d', upto))
return {oldest, upto}
"""
# KEYS: sweep record, sweeps set. ARGV: sweep id, record JSON.
_CREATE_SWEEP = """
if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
# KEYS: lease. ARGV: owner, now, expires, key TTL ms. Takes a free or expired lease, or renews our own.
_ACQUIRE_LEASE = """
local holder = redis.call('HMGET', KEYS[1], 'owner', 'expires')
if holder[1] and holder[1] ~= ARGV[1] and tonumber(holder[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'expires', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
# KEYS: lease. ARGV: owner. Never deletes a lease someone else took over after ours expired.
_RELEASE_LEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Redis keeps a lease key this long past its expiry. Expiry itself is decided by the clocks of the
# store's users, so this also bounds how far ahead of the Redis server's clock theirs may run before
# Redis deletes a lease that they still consider held.
_LEASE_GC_GRACE_S = 300.0


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_ttl(ttl_seconds: float) -> float:
    if not (isinstance(ttl_seconds, int | float) and math.isfinite(ttl_seconds) and ttl_seconds > 0):
        raise ValueError(f"lease ttl_seconds must be a positive finite number, got {ttl_seconds!r}")
    return float(ttl_seconds)


def _run_from_hash(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "run_id": fields["run_id"],
        "status": fields["status"],
        "version": int(fields["version"]),
        "last_iteration": int(fields["last_iteration"]),
        "sweep_id": fields.get("sweep_id"),
        "created": float(fields["created"]),
        "updated": float(fields["updated"]),
        "extra": json.loads(fields["extra"]),
    }


class RedisMeta(MetaStore):
    """Safe for many threads, processes and hosts sharing one Redis.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL; no connection is made until first use.
        prefix: Namespace for every key, so deployments can share a server.
        clock: Seconds since the epoch. It stamps run records and decides lease expiry; leases taken
            from several hosts therefore assume their clocks agree to well within a lease's TTL (NTP).
            Wall-clock time, not ``time.monotonic``: expiries are compared across processes and hosts.
    """

    def __init__(self, url: str, prefix: str = "ftg", clock: Callable[[], float] = time.time) -> None:
        import redis

        if not prefix:
            raise ValueError("RedisMeta needs a non-empty key prefix")
        self.url = _redact(url)
        self.prefix = prefix
        self._clock = clock
        # The client's connection pool is thread-safe and reconnects after fork, so one client serves all.
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._create_run = self._redis.register_script(_CREATE_RUN)
        self._update_if_exists = self._redis.register_script(_UPDATE_IF_EXISTS)
        self._commit_version = self._redis.register_script(_COMMIT_VERSION)
        self._record_digests = self._redis.register_script(_RECORD_DIGESTS)
        self._create_sweep = self._redis.register_script(_CREATE_SWEEP)
        self._append_replay = self._redis.register_script(_APPEND_REPLAY)
        self._evict_replay = self._redis.register_script(_EVICT_REPLAY)
        self._acquire_lease = self._redis.register_script(_ACQUIRE_LEASE)
        self._release_lease = self._redis.register_script(_RELEASE_LEASE)

    def __repr__(self) -> str:
        return f"RedisMeta({self.url!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Close the client's connections."""
        self._redis.close()

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- runs ---
    def create_run(
        self, run_id: str, sweep_id: str | None = None, extra: dict[str, Any] | None = None
    ) -> bool:
        """See :meth:`MetaStore.create_run`; the record and its set memberships appear atomically."""
        validate_run_id(run_id)
        now = repr(self._clock())
        fields = {
            "run_id": run_id,
            "status": "created",
            "version": "0",
            "last_iteration": "-1",
            "created": now,
            "updated": now,
            "extra": json.dumps(extra or {}, sort_keys=True),
        }
        keys = [self._key("run", run_id), self._key("runs")]
        if sweep_id is not None:
            fields["sweep_id"] = sweep_id
            keys.append(self._key("sweep-runs", sweep_id))
        args = [run_id, *(item for pair in fields.items() for item in pair)]
        return int(self._create_run(keys=keys, args=args)) == 1

    def get_run(self, run_id: str) -> dict[str, Any]:
        """See :meth:`MetaStore.get_run`."""
        fields = cast(dict[str, str], self._redis.hgetall(self._key("run", run_id)))
        if not fields:
            raise RunNotFoundError(run_id)
        return _run_from_hash(fields)

    def list_runs(self, sweep_id: str | None = None) -> list[dict[str, Any]]:
        """See :meth:`MetaStore.list_runs`."""
        members = self._key("runs") if sweep_id is None else self._key("sweep-runs", sweep_id)
        run_ids = sorted(cast(set[str], self._redis.smembers(members)))
        pipe = self._redis.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hgetall(self._key("run", run_id))
        runs = [_run_from_hash(fields) for fields in pipe.execute() if fields]
        return sorted(runs, key=lambda run: (run["created"], run["run_id"]))

    def set_status(self, run_id: str, status: str) -> None:
        """See :meth:`MetaStore.set_status`."""
        args = ["status", status, "updated", repr(self._clock())]
        if int(self._update_if_exists(keys=[self._key("run", run_id)], args=args)) != 1:
            raise RunNotFoundError(run_id)

    def update_extra(self, run_id: str, extra: dict[str, Any]) -> None:
        """See :meth:`MetaStore.update_extra`."""
        patch = json.loads(json.dumps(extra))  # fail on unserializable values before touching Redis
        key = self._key("run", run_id)

        # Optimistic read-merge-write: WATCH aborts and redis-py retries if anyone changed the run meanwhile.
        # Merging in Python (not Lua cjson) keeps large ints and floats exactly as json.dumps writes them.
        def merge(pipe: Any) -> None:
            current = pipe.hget(key, "extra")
            if current is None:
                raise RunNotFoundError(run_id)
            merged = json.loads(current)
            merged.update(patch)
            pipe.multi()
            pipe.hset(
                key, mapping={"extra": json.dumps(merged, sort_keys=True), "updated": repr(self._clock())}
            )

        self._redis.transaction(merge, key)

    def _compare_and_set_version(
        self, run_id: str, expected_version: int, iteration: int, recorded: str | None
    ) -> bool:
        """See :meth:`MetaStore.commit_version`; the compare, the set and the digests are one Lua script."""
        args: list[str | int] = [
            expected_version,
            iteration,
            repr(self._clock()),
            expected_version + 1,
            "" if recorded is None else recorded,
        ]
        keys = [self._key("run", run_id), self._key("digests", run_id)]
        outcome = int(self._commit_version(keys=keys, args=args))
        if outcome == -1:
            raise RunNotFoundError(run_id)
        return outcome == 1

    def record_version_digests(self, run_id: str, version: int, digests: Mapping[str, str]) -> bool:
        """See :meth:`MetaStore.record_version_digests`."""
        keys = [self._key("run", run_id), self._key("digests", run_id)]
        outcome = int(self._record_digests(keys=keys, args=[int(version), encode_digests(digests)]))
        if outcome == -1:
            raise RunNotFoundError(run_id)
        return outcome == 1

    def version_digests(self, run_id: str, version: int) -> dict[str, str] | None:
        """See :meth:`MetaStore.version_digests`."""
        raw = cast(str | None, self._redis.hget(self._key("digests", run_id), str(int(version))))
        if raw is not None:
            recorded: dict[str, str] = json.loads(raw)
            return recorded
        if not self._redis.exists(self._key("run", run_id)):
            raise RunNotFoundError(run_id)
        return None

    # --- replay-buffer index ---
    def _replay_keys(self, run_id: str) -> list[str]:
        return [
            self._key("run", run_id),
            self._key("replay-head", run_id),
            self._key("replay", run_id),
            self._key("replay-sources", run_id),
        ]

    def _require_run(self, run_id: str) -> None:
        if not self._redis.exists(self._key("run", run_id)):
            raise RunNotFoundError(run_id)

    def _append_replay_chunk(self, run_id: str, record: ReplayChunkRecord) -> bool:
        """See :meth:`MetaStore.append_replay_chunk`; the compare and the writes are one Lua script."""
        args: list[str | int] = [record.chunk, record.first, record.size, record.to_json(), record.source]
        outcome = int(self._append_replay(keys=self._replay_keys(run_id), args=args))
        if outcome == -1:
            raise RunNotFoundError(run_id)
        return outcome == 1

    def replay_head(self, run_id: str) -> ReplayHead:
        """See :meth:`MetaStore.replay_head`."""
        fields = self._redis.hmget(
            self._key("replay-head", run_id), ["next_chunk", "next_first", "oldest_chunk"]
        )
        next_chunk, next_first, oldest = cast(list[str | None], fields)
        if next_chunk is None:
            self._require_run(run_id)
            return ReplayHead()
        return ReplayHead(int(next_chunk), int(next_first or 0), int(oldest or 0))

    def replay_chunks(self, run_id: str) -> list[ReplayChunkRecord]:
        """See :meth:`MetaStore.replay_chunks`."""
        raw = cast(dict[str, str], self._redis.hgetall(self._key("replay", run_id)))
        if not raw:
            self._require_run(run_id)
        return sorted((ReplayChunkRecord.from_json(v) for v in raw.values()), key=lambda r: r.chunk)

    def replay_source_chunk(self, run_id: str, source: str) -> int | None:
        """See :meth:`MetaStore.replay_source_chunk`."""
        raw = cast(str | None, self._redis.hget(self._key("replay-sources", run_id), source))
        if raw is None:
            self._require_run(run_id)
            return None
        return int(raw)

    def evict_replay_chunks(self, run_id: str, before_chunk: int) -> list[int]:
        """See :meth:`MetaStore.evict_replay_chunks`; one Lua script."""
        keys = self._replay_keys(run_id)[:3]
        start, end = (int(v) for v in self._evict_replay(keys=keys, args=[int(before_chunk)]))
        if start == -1:
            raise RunNotFoundError(run_id)
        return list(range(start, end))

    # --- sweeps ---
    def create_sweep(self, sweep_id: str, record: dict[str, Any]) -> bool:
        """See :meth:`MetaStore.create_sweep`."""
        keys = [self._key("sweep", sweep_id), self._key("sweeps")]
        args = [sweep_id, json.dumps(record, sort_keys=True)]
        return int(self._create_sweep(keys=keys, args=args)) == 1

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        """See :meth:`MetaStore.get_sweep`."""
        raw = cast(str | None, self._redis.get(self._key("sweep", sweep_id)))
        if raw is None:
            raise KeyError(f"sweep not found: {sweep_id}")
        return {**json.loads(raw), "sweep_id": sweep_id}

    def list_sweeps(self) -> list[dict[str, Any]]:
        """See :meth:`MetaStore.list_sweeps`."""
        sweep_ids = sorted(cast(set[str], self._redis.smembers(self._key("sweeps"))))
        if not sweep_ids:
            return []
        keys = [self._key("sweep", sweep_id) for sweep_id in sweep_ids]
        records = cast(list[str | None], self._redis.mget(keys))
        return [
            {**json.loads(raw), "sweep_id": sweep_id}
            for sweep_id, raw in zip(sweep_ids, records, strict=True)
            if raw is not None
        ]

    # --- leases ---
    def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """See :meth:`MetaStore.acquire_lease`; the check and the write are one Lua script."""
        ttl = _check_ttl(ttl_seconds)
        now = float(self._clock())
        key_ttl_ms = math.ceil((ttl + _LEASE_GC_GRACE_S) * 1000)
        # repr() round-trips a float exactly, so Lua compares the very numbers the clock returned.
        args: list[str | int] = [owner, repr(now), repr(now + ttl), key_ttl_ms]
        return int(self._acquire_lease(keys=[self._key("lease", name)], args=args)) == 1

    def release_lease(self, name: str, owner: str) -> None:
        """See :meth:`MetaStore.release_lease`."""
        self._release_lease(keys=[self._key("lease", name)], args=[owner])

    def lease_owner(self, name: str) -> str | None:
        """See :meth:`MetaStore.lease_owner`."""
        fields = self._redis.hmget(self._key("lease", name), ["owner", "expires"])
        owner, expires = cast(list[str | None], fields)
        if owner is None or expires is None or float(expires) <= self._clock():
            return None
        return owner
