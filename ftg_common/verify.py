"""Check every stored object of a run: intact, present where the run needs it, and as committed.

:func:`verify_run` reads each object of a run once and reports each damaged key once:

- **corrupt**: the object fails its own content digest or does not decode (truncated, empty, bad header
  or JSON, a JSON object or tensor file without a digest);
- **mismatch**: it is intact by itself but is not what its committed version recorded (the metadata
  store holds the SHA-256 of the stored bytes of every object a committed version wrote: checkpoint
  weights, optimizer and state, the policy file, the iteration's ``update.json``);
- **missing**: an object the run's committed state needs is absent: the config; every object of the
  committed versions 0..``version`` (version 0 only once version 1 is committed, or once its checkpoint
  is complete); for every committed iteration 0..``last_iteration`` its trajectories and carries (one per
  shard), its batch and its ``update.json``; any object a committed version's record names;
- **unrecorded**: a committed version (1 or more, or 0 once version 1 is) has no digests in the metadata
  store; the key reported is the version's checkpoint folder.

Objects of iterations and versions past the committed ones (a step in flight, or one a crash cut
short) may be missing; those present are still checked. ``eval.json`` is optional: a run interrupted
between an update and its evaluation resumes with the next iteration. Keys under the run's folder that
are neither JSON nor safetensors are not checked. A sweep trial's frozen config
(``sweeps/<sweep>/trials/<run>.json``) is checked when present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ftg_common import layout
from ftg_common.checkpoints import version_object_keys
from ftg_common.errors import CorruptObjectError
from ftg_common.meta.base import MetaStore
from ftg_common.store.base import KeyNotFoundError, ObjectStore
from ftg_common.store.integrity import decode_json, object_digest
from ftg_common.tensorio import decode

__all__ = ["Damage", "DamageKind", "verify_run"]

DamageKind = Literal["corrupt", "mismatch", "missing", "unrecorded"]

_SHARD_OBJECT = re.compile(r"/iter/\d{6}/(?:traj|carry)/(\d{4})\.safetensors\Z")


@dataclass(frozen=True)
class Damage:
    """One damaged key of a run.

    Attributes:
        key: the object-store key (for ``unrecorded``, the version's checkpoint folder).
        kind: ``corrupt``, ``mismatch``, ``missing`` or ``unrecorded``.
        reason: what is wrong, for a person.
    """

    key: str
    kind: DamageKind
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.kind}: {self.reason}"


@dataclass
class _Scan:
    """What reading a run's objects found: each present key's digest or its damage."""

    config_key: str
    digests: dict[str, str] = field(default_factory=dict)
    damage: dict[str, Damage] = field(default_factory=dict)
    config: Any = None  # the run's config document, once read intact

    def check(self, store: ObjectStore, key: str) -> None:
        """Read ``key`` and check it by its kind; an absent key is left for the caller to judge."""
        if key in self.digests or key in self.damage:
            return
        try:
            data = store.get_bytes(key)
        except KeyNotFoundError:
            return
        try:
            if key.endswith(".json"):
                doc = decode_json(data, key)
                if key == self.config_key:
                    self.config = doc
            elif key.endswith(".safetensors"):
                decode(data, key, require_digest=True)
            else:
                return
        except CorruptObjectError as exc:
            self.damage[key] = Damage(key, "corrupt", exc.reason)
            return
        self.digests[key] = object_digest(data)

    def present(self, key: str) -> bool:
        return key in self.digests or key in self.damage

    def need(self, key: str, why: str) -> None:
        """Report ``key`` missing unless it was found (intact or not)."""
        if not self.present(key):
            self.damage[key] = Damage(key, "missing", f"absent, but {why}")

    def expect(self, key: str, digest: str, version: int) -> None:
        """Report ``key`` unless it is present, intact and has the digest its version recorded."""
        if key in self.damage:
            return
        if key not in self.digests:
            self.damage[key] = Damage(key, "missing", f"absent, but committed version {version} wrote it")
        elif self.digests[key] != digest:
            self.damage[key] = Damage(
                key,
                "mismatch",
                f"sha256 {self.digests[key]} is not the {digest} committed version {version} recorded",
            )


def _shard_count(scan: _Scan, keys: list[str]) -> int:
    """The run's shards per iteration: from its config when intact, else the highest shard stored."""
    cfg = scan.config if isinstance(scan.config, dict) else {}
    hp = cfg.get(str(cfg.get("algo", "ppo")))
    shards = hp.get("shards") if isinstance(hp, dict) else None
    if isinstance(shards, int) and shards > 0:
        return shards
    found = [int(m.group(1)) for k in keys if (m := _SHARD_OBJECT.search(k))]
    return max(found, default=-1) + 1


def verify_run(store: ObjectStore, meta: MetaStore, run_id: str) -> list[Damage]:
    """Every damaged object of run ``run_id``, sorted by key; an intact run gives ``[]``.

    Args:
        store: the object store holding the run's objects.
        meta: the metadata store holding its run record and the digests its committed versions recorded.
        run_id: the run.

    Returns:
        One :class:`Damage` per damaged key (see the module docstring for what counts).

    Raises:
        RunNotFoundError: the metadata store has no such run.
        InvalidIdError: ``run_id`` is not a valid run id.
    """
    run = meta.get_run(run_id)
    version, last_iteration = int(run["version"]), int(run["last_iteration"])
    keys = store.list(layout.run_prefix(run_id))
    scan = _Scan(layout.config_key(run_id))
    for key in keys:
        scan.check(store, key)
    if run.get("sweep_id"):
        scan.check(store, layout.sweep_trial_key(str(run["sweep_id"]), run_id))

    if keys or last_iteration >= 0:
        scan.need(layout.config_key(run_id), "the run has stored objects and every function reads it")

    for v in range(version + 1):
        folder = layout.ckpt_prefix(run_id, v)
        committed = version >= 1  # versions 0..version; version 0 once version 1 trained from it
        complete = scan.present(layout.ckpt_state_key(run_id, v))
        if committed or complete:
            why = f"version {v} is committed" if committed else f"the checkpoint of version {v} is complete"
            for key in version_object_keys(run_id, v):
                scan.need(key, why)
        recorded = meta.version_digests(run_id, v)
        if recorded is None:
            if committed:
                scan.damage[folder] = Damage(
                    folder, "unrecorded", f"committed version {v} has no digests in the metadata store"
                )
            continue
        for key, digest in sorted(recorded.items()):
            scan.check(store, key)  # a recorded key outside the run's folder is read too
            scan.expect(key, digest, v)

    shards = _shard_count(scan, keys)
    off_policy = isinstance(scan.config, dict) and scan.config.get("algo") in ("dqn", "qlearning")
    for i in range(last_iteration + 1):
        why = f"iteration {i} is committed"
        for shard in range(shards):
            scan.need(layout.traj_key(run_id, i, shard), why)
            scan.need(layout.carry_key(run_id, i, shard), why)
        if not off_policy:  # an off-policy iteration appends to the replay buffer instead
            scan.need(layout.batch_key(run_id, i), why)
        scan.need(layout.update_key(run_id, i), why)

    return sorted(scan.damage.values(), key=lambda d: d.key)
