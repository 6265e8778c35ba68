"""Metadata store interface: run records, sweeps, leases, and the fenced policy-version commit."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the store is not used afterwards."""
