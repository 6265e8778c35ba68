"""Metadata store interface: run records, sweeps, leases, and the fenced policy-version commit."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class RunNotFoundError(KeyError):
    def __str__(self) -> str:
        return f"run not found: {self.args[0]}"


class MetaStore(ABC):
    """Run record fields: run_id, status, version (int), last_iteration (int, -1 before any), sweep_id,
    created (float epoch), updated (float epoch), plus free-form ``extra`` (JSON object)."""

    url: str

    @abstractmethod
    def create_run(self, run_id: str, sweep_id: str | None = None, extra: dict[str, Any] | None = None) -> bool:
        """Insert a run with status 'created', version 0, last_iteration -1. False if it already exists."""

    @abstractmethod
    def get_run(self, run_id: str) -> dict[str, Any]:
        """Raise RunNotFoundError if absent."""

    @abstractmethod
    def list_runs(self, sweep_id: str | None = None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def set_status(self, run_id: str, status: str) -> None: ...

    @abstractmethod
    def update_extra(self, run_id: str, extra: dict[str, Any]) -> None:
        """Merge keys into the run's ``extra`` object."""

    @abstractmethod
    def commit_version(self, run_id: str, expected_version: int, iteration: int) -> bool:
        """Compare-and-set: if the run's version equals ``expected_version``, set version to
        expected_version + 1 and last_iteration to ``iteration``; return True. Otherwise change nothing
        and return False. Exactly one of two concurrent callers with the same expected version wins."""

    @abstractmethod
    def create_sweep(self, sweep_id: str, record: dict[str, Any]) -> bool: ...

    @abstractmethod
    def get_sweep(self, sweep_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def list_sweeps(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``owner``; False if another owner holds an unexpired one."""

    @abstractmethod
    def release_lease(self, name: str, owner: str) -> None: ...

    @abstractmethod
    def lease_owner(self, name: str) -> str | None:
        """The owner of an unexpired lease ``name``, or None."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
