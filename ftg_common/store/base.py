"""Object store interface: bytes by key, with JSON and safetensors helpers on top."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class KeyNotFoundError(KeyError):
    """The key is absent from the store."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"key not found in object store: {self.key}"


class InvalidKeyError(ValueError):
    """The key is not a safe relative path (absolute, '..', empty segment, odd characters)."""


class ObjectStore(ABC):
    """Keyed bytes with atomic writes; keys are checked by ``ftg_common.store.key_syntax``.

    Attributes:
        url: where the store lives (``file:///dir`` or ``s3://bucket/prefix``).
    """

    url: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the new one, never a partial write."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Raise KeyNotFoundError if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True when an object is stored under ``key``."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a folder-like prefix), sorted."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many."""

    # --- helpers shared by every backend ---
    def put_json(self, key: str, obj: Any) -> None:
        """Write ``obj`` as compact JSON with sorted keys, so equal objects give equal bytes."""
        self.put_bytes(key, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())

    def get_json(self, key: str) -> Any:
        """Read and parse a JSON object; KeyNotFoundError if absent."""
        return json.loads(self.get_bytes(key))

    def put_tensors(
        self, key: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
    ) -> None:
        """Write arrays (and optional string metadata) as safetensors."""
        from ftg_common.tensorio import encode

        self.put_bytes(key, encode(tensors, metadata))

    def get_tensors(self, key: str) -> dict[str, np.ndarray]:
        """Read the arrays written by ``put_tensors``."""
        return self.get_tensors_with_metadata(key)[0]

    def get_tensors_with_metadata(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Read the arrays written by ``put_tensors`` and their string metadata."""
        from ftg_common.tensorio import decode

        return decode(self.get_bytes(key))
