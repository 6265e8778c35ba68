"""Metadata store interface: runs, sweeps, leases, the fenced version commit and the replay index."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def encode_digests(digests: Mapping[str, str]) -> str:
    """The JSON text both backends store for a version's digests (sorted keys, so equal maps are equal).

    Raises:
        ValueError: a key is not a non-empty string or a digest is not 64 lowercase hex digits.
    """
    for key, digest in digests.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"digest key must be a non-empty string, got {key!r}")
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise ValueError(f"digest of {key!r} must be 64 lowercase hex digits, got {digest!r}")
    return json.dumps(dict(digests), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ReplayChunkRecord:
    """One chunk of a run's replay buffer as its index records it.

    Attributes:
        chunk: the chunk id (0, 1, 2, ... in append order); its object is ``layout.replay_chunk_key``.
        first: global index of its first transition (transitions are numbered in append order).
        size: transitions in the chunk (> 0); they are ``first .. first + size - 1``.
        digest: SHA-256 (hex) of the chunk object's stored bytes.
        source: what was appended (the trajectory key), so appending it again is recognised.
    """

    chunk: int
    first: int
    size: int
    digest: str
    source: str

    @property
    def last(self) -> int:
        """Global index of the chunk's last transition."""
        return self.first + self.size - 1

    def to_json(self) -> str:
        """The record as both backends store it (compact, sorted keys)."""
        fields = {
            "chunk": self.chunk,
            "first": self.first,
            "size": self.size,
            "digest": self.digest,
            "source": self.source,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReplayChunkRecord:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls(int(d["chunk"]), int(d["first"]), int(d["size"]), str(d["digest"]), str(d["source"]))

    def check(self) -> ReplayChunkRecord:
        """The record itself if its fields are in range.

        Raises:
            ValueError: a negative id or index, an empty chunk, a digest that is not 64 lowercase hex
                digits or an empty source.
        """
        for name in ("chunk", "first", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "size" else 0):
                raise ValueError(f"replay chunk {name} must be an integer >= {1 if name == 'size' else 0}")
        if not isinstance(self.digest, str) or not _SHA256_HEX.fullmatch(self.digest):
            raise ValueError(f"replay chunk digest must be 64 lowercase hex digits, got {self.digest!r}")
        if not isinstance(self.source, str) or not self.source:
            raise ValueError("replay chunk source must be a non-empty string")
        return self


@dataclass(frozen=True)
class ReplayHead:
    """Where a run's replay buffer stands.

    Attributes:
        next_chunk: the id the next appended chunk gets (chunks ever appended).
        next_first: the global index its first transition gets (transitions ever appended).
        oldest_chunk: the lowest chunk id still indexed; ``next_chunk`` when none is.
    """

    next_chunk: int = 0
    next_first: int = 0
    oldest_chunk: int = 0


class RunNotFoundError(KeyError):
    """No run has this id; ``args[0]`` is the id."""

    def __str__(self) -> str:
        return f"run not found: {self.args[0]}"


class MetaStore(ABC):
    """Run records, sweeps and leases shared by every process of a deployment.

    Run record fields: run_id, status, version (int), last_iteration (int, -1 before any), sweep_id,
    created (float epoch), updated (float epoch), plus free-form ``extra`` (JSON object). Every write
    to a run sets ``updated`` from the store's clock.
    """

    url: str

    @abstractmethod
    def create_run(
        self, run_id: str, sweep_id: str | None = None, extra: dict[str, Any] | None = None
    ) -> bool:
        """Insert a run with status 'created', version 0, last_iteration -1.

        Returns:
            False, changing nothing, if the run already exists.

        Raises:
            InvalidIdError: ``run_id`` does not match the run-id pattern.
        """

    @abstractmethod
    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's record.

        Raises:
            RunNotFoundError: No such run.
        """

    @abstractmethod
    def list_runs(self, sweep_id: str | None = None) -> list[dict[str, Any]]:
        """Every run's record, or a sweep's, ordered by creation time then run id."""

    @abstractmethod
    def set_status(self, run_id: str, status: str) -> None:
        """Set the run's status.

        Raises:
            RunNotFoundError: No such run; none is created.
        """

    @abstractmethod
    def update_extra(self, run_id: str, extra: dict[str, Any]) -> None:
        """Merge top-level keys into the run's ``extra`` object; concurrent merges are all kept.

        Raises:
            RunNotFoundError: No such run; none is created.
            TypeError: A value is not JSON-serializable; nothing is written.
        """

    def commit_version(
        self,
        run_id: str,
        expected_version: int,
        iteration: int,
        digests: Mapping[str, str] | None = None,
    ) -> bool:
        """Compare-and-set the run's policy version: the fence that lets one updater commit iteration i.

        If the run's version equals ``expected_version``, set version to expected_version + 1 and
        last_iteration to ``iteration``, and record ``digests`` as the new version's (in the same atomic
        step, so a committed version never lacks them). Exactly one of two concurrent callers with the
        same expected version wins.

        Args:
            run_id: The run.
            expected_version: The version the caller trained from.
            iteration: The iteration whose update is committed.
            digests: Object key -> SHA-256 hex of the stored bytes of what the new version wrote.

        Returns:
            True if this call committed; False, changing nothing, otherwise.

        Raises:
            RunNotFoundError: No such run.
            ValueError: A digest is not 64 lowercase hex digits; nothing is written.
        """
        recorded = None if digests is None else encode_digests(digests)
        return self._compare_and_set_version(run_id, int(expected_version), int(iteration), recorded)

    @abstractmethod
    def _compare_and_set_version(
        self, run_id: str, expected_version: int, iteration: int, recorded: str | None
    ) -> bool:
        """The backend's atomic step of :meth:`commit_version`, its arguments already checked.

        Args:
            run_id: The run.
            expected_version: The version the caller trained from.
            iteration: The iteration whose update is committed.
            recorded: The new version's digests as :func:`encode_digests` wrote them, or None for none.

        Returns:
            True if this call committed; False, changing nothing, otherwise.

        Raises:
            RunNotFoundError: No such run.
        """

    @abstractmethod
    def record_version_digests(self, run_id: str, version: int, digests: Mapping[str, str]) -> bool:
        """Record the digests of a version committed without :meth:`commit_version` (version 0).

        A version's digests are written once: the first record stays.

        Returns:
            True if recorded; False, changing nothing, if the version already has a record.

        Raises:
            RunNotFoundError: No such run.
            ValueError: A digest is not 64 lowercase hex digits; nothing is written.
        """

    @abstractmethod
    def version_digests(self, run_id: str, version: int) -> dict[str, str] | None:
        """Object key -> SHA-256 hex recorded for ``version`` of the run, or None if none was recorded.

        Raises:
            RunNotFoundError: No such run.
        """

    @abstractmethod
    def create_sweep(self, sweep_id: str, record: dict[str, Any]) -> bool:
        """Store a sweep's record (a JSON object); False, changing nothing, if the sweep exists."""

    @abstractmethod
    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        """The sweep's record plus its ``sweep_id``.

        Raises:
            KeyError: No such sweep.
        """

    @abstractmethod
    def list_sweeps(self) -> list[dict[str, Any]]:
        """Every sweep's record plus its ``sweep_id``, ordered by sweep id."""

    # Leases expire by the store's clock (its ``clock`` argument): a lease taken at time t with
    # ttl_seconds is held while clock() < t + ttl_seconds.

    @abstractmethod
    def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``owner``.

        Args:
            name: The lease, e.g. ``run:<run_id>``.
            owner: Who holds it; renewing means acquiring again with the same owner.
            ttl_seconds: Positive, finite lifetime from now; a renewal restarts it.

        Returns:
            True if ``owner`` holds the lease now; False if another owner holds an unexpired one.

        Raises:
            ValueError: ``ttl_seconds`` is not a positive finite number.
        """

    @abstractmethod
    def release_lease(self, name: str, owner: str) -> None:
        """Drop the lease if ``owner`` holds it; a lease held by anyone else is left alone."""

    @abstractmethod
    def lease_owner(self, name: str) -> str | None:
        """The owner of an unexpired lease ``name``, or None."""

    # --- replay-buffer index (off-policy runs) ---
    # Chunks are appended in order by compare-and-set on the head, as policy versions are committed;
    # eviction drops the oldest ones. A source appended once is never appended again, even after its
    # chunk was evicted, so a retried append can't duplicate transitions.

    def append_replay_chunk(self, run_id: str, record: ReplayChunkRecord) -> bool:
        """Compare-and-set append: index ``record`` if it is exactly the next chunk.

        It is indexed only if ``record.chunk`` and ``record.first`` equal the head's ``next_chunk`` and
        ``next_first`` and ``record.source`` was never appended; the head then advances by one chunk and
        ``record.size`` transitions, in the same atomic step. Of concurrent callers with the same head,
        exactly one wins.

        Returns:
            True if this call appended; False, changing nothing, otherwise (the head moved, or the
            source is already indexed: :meth:`replay_source_chunk` tells which).

        Raises:
            RunNotFoundError: No such run.
            ValueError: A field of ``record`` is out of range; nothing is written.
        """
        record.check()
        return self._append_replay_chunk(run_id, record)

    @abstractmethod
    def _append_replay_chunk(self, run_id: str, record: ReplayChunkRecord) -> bool:
        """The backend's atomic step of :meth:`append_replay_chunk`, the record already checked."""

    @abstractmethod
    def replay_head(self, run_id: str) -> ReplayHead:
        """The run's replay head (all zeros before the first append).

        Raises:
            RunNotFoundError: No such run.
        """

    @abstractmethod
    def replay_chunks(self, run_id: str) -> list[ReplayChunkRecord]:
        """The indexed (not evicted) chunks of the run, by chunk id.

        Raises:
            RunNotFoundError: No such run.
        """

    @abstractmethod
    def replay_source_chunk(self, run_id: str, source: str) -> int | None:
        """The id of the chunk ``source`` was appended as (even if evicted since), or None.

        Raises:
            RunNotFoundError: No such run.
        """

    @abstractmethod
    def evict_replay_chunks(self, run_id: str, before_chunk: int) -> list[int]:
        """Drop every indexed chunk with id < ``before_chunk`` (never past the head); idempotent.

        Returns:
            The ids dropped now, ascending (their objects are the caller's to delete).

        Raises:
            RunNotFoundError: No such run.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the store is not used afterwards."""
