"""Metadata store in Redis: the cluster backend, shared by every function replica and the controller.

Layout under ``{prefix}``: ``run:{id}`` hash per run, ``runs`` set of run ids, ``sweep-runs:{id}`` set
of a sweep's run ids, ``sweep:{id}`` JSON string, ``sweeps`` set of sweep ids, ``lease:{name}`` string
holding the owner with a TTL. Every conditional write is a Lua script, so it runs atomically on the server.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ftg_common.ids import validate_run_id
from ftg_common.meta.base import MetaStore, RunNotFoundError

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
# KEYS: run hash. ARGV: expected version, iteration, updated. Returns 1 won, 0 lost, -1 no such run.
_COMMIT_VERSION = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current then return -1 end
if tonumber(current) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', tonumber(current) + 1, 'last_iteration', ARGV[2], 'updated', ARGV[3])
return 1
"""
# KEYS: sweep record, sweeps set. ARGV: sweep id, record JSON.
_CREATE_SWEEP = """
if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
# KEYS: lease. ARGV: owner, ttl ms. Also covers a lease that expired since our SET NX failed.
_RENEW_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# KEYS: lease. ARGV: owner. Never deletes a lease someone else took over after ours expired.
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _ttl_ms(ttl_seconds: float) -> int:
    if not (isinstance(ttl_seconds, int | float) and math.isfinite(ttl_seconds) and ttl_seconds > 0):
        raise ValueError(f"lease ttl_seconds must be a positive finite number, got {ttl_seconds!r}")
    return max(1, math.ceil(ttl_seconds * 1000))


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
    def __init__(self, url: str, prefix: str = "ftg") -> None:
        import redis

        if not prefix:
            raise ValueError("RedisMeta needs a non-empty key prefix")
        self.url = _redact(url)
        self.prefix = prefix
        # The client's connection pool is thread-safe and reconnects after fork, so one client serves all.
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._create_run = self._redis.register_script(_CREATE_RUN)
        self._update_if_exists = self._redis.register_script(_UPDATE_IF_EXISTS)
        self._commit_version = self._redis.register_script(_COMMIT_VERSION)
        self._create_sweep = self._redis.register_script(_CREATE_SWEEP)
        self._renew_lease = self._redis.register_script(_RENEW_LEASE)
        self._release_lease = self._redis.register_script(_RELEASE_LEASE)

    def __repr__(self) -> str:
        return f"RedisMeta({self.url!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        self._redis.close()

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- runs ---
    def create_run(
        self, run_id: str, sweep_id: str | None = None, extra: dict[str, Any] | None = None
    ) -> bool:
        validate_run_id(run_id)
        now = repr(time.time())
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
        return self._create_run(keys=keys, args=args) == 1

    def get_run(self, run_id: str) -> dict[str, Any]:
        fields = self._redis.hgetall(self._key("run", run_id))
        if not fields:
            raise RunNotFoundError(run_id)
        return _run_from_hash(fields)

    def list_runs(self, sweep_id: str | None = None) -> list[dict[str, Any]]:
        members = self._key("runs") if sweep_id is None else self._key("sweep-runs", sweep_id)
        run_ids = sorted(self._redis.smembers(members))
        pipe = self._redis.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hgetall(self._key("run", run_id))
        runs = [_run_from_hash(fields) for fields in pipe.execute() if fields]
        return sorted(runs, key=lambda run: (run["created"], run["run_id"]))

    def set_status(self, run_id: str, status: str) -> None:
        args = ["status", status, "updated", repr(time.time())]
        if self._update_if_exists(keys=[self._key("run", run_id)], args=args) != 1:
            raise RunNotFoundError(run_id)

    def update_extra(self, run_id: str, extra: dict[str, Any]) -> None:
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
                key, mapping={"extra": json.dumps(merged, sort_keys=True), "updated": repr(time.time())}
            )

        self._redis.transaction(merge, key)

    def commit_version(self, run_id: str, expected_version: int, iteration: int) -> bool:
        args = [int(expected_version), int(iteration), repr(time.time())]
        outcome = self._commit_version(keys=[self._key("run", run_id)], args=args)
        if outcome == -1:
            raise RunNotFoundError(run_id)
        return outcome == 1

    # --- sweeps ---
    def create_sweep(self, sweep_id: str, record: dict[str, Any]) -> bool:
        keys = [self._key("sweep", sweep_id), self._key("sweeps")]
        return self._create_sweep(keys=keys, args=[sweep_id, json.dumps(record, sort_keys=True)]) == 1

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        raw = self._redis.get(self._key("sweep", sweep_id))
        if raw is None:
            raise KeyError(f"sweep not found: {sweep_id}")
        return {**json.loads(raw), "sweep_id": sweep_id}

    def list_sweeps(self) -> list[dict[str, Any]]:
        sweep_ids = sorted(self._redis.smembers(self._key("sweeps")))
        if not sweep_ids:
            return []
        records = self._redis.mget([self._key("sweep", sweep_id) for sweep_id in sweep_ids])
        return [
            {**json.loads(raw), "sweep_id": sweep_id}
            for sweep_id, raw in zip(sweep_ids, records, strict=True)
            if raw is not None
        ]

    # --- leases ---
    def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        ttl_ms = _ttl_ms(ttl_seconds)
        key = self._key("lease", name)
        if self._redis.set(key, owner, nx=True, px=ttl_ms):
            return True
        return self._renew_lease(keys=[key], args=[owner, ttl_ms]) == 1

    def release_lease(self, name: str, owner: str) -> None:
        self._release_lease(keys=[self._key("lease", name)], args=[owner])

    def lease_owner(self, name: str) -> str | None:
        owner = self._redis.get(self._key("lease", name))
        return owner.decode() if isinstance(owner, bytes) else owner
