"""Object store interface: bytes by key, with JSON and safetensors helpers on top.

The helpers are how run objects are written and read: each object carries a content digest that the
helper checks on every read (:mod:`ftg_common.store.integrity`, :mod:`ftg_common.tensorio`), and a
damaged object raises :class:`~ftg_common.errors.CorruptObjectError` naming its key. ``put_bytes`` /
``get_bytes`` move raw bytes unchecked; callers storing raw bytes embed a digest themselves (policy
files are safetensors from ``tensorio.encode``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ftg_common.store.integrity import decode_json, encode_json, object_digest


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
    def delete(self, key: str) -> bool:
        """Delete the object ``key``; False if there was none."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many."""

    # --- helpers shared by every backend ---
    def put_json(self, key: str, obj: Any) -> str:
        """Write ``obj`` as compact sorted JSON in its digest envelope, so equal objects give equal bytes.

        Returns:
            The SHA-256 (hex) of the stored bytes.
        """
        data = encode_json(obj)
        self.put_bytes(key, data)
        return object_digest(data)

    def get_json(self, key: str) -> Any:
        """Read a JSON document written by ``put_json``, its digest checked.

        Raises:
            KeyNotFoundError: absent.
            CorruptObjectError: damaged, or written without a digest.
        """
        return decode_json(self.get_bytes(key), key)

    def put_tensors(
        self, key: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
    ) -> str:
        """Write arrays (and optional string metadata) as safetensors with their content digest.

        Returns:
            The SHA-256 (hex) of the stored bytes.
        """
        from ftg_common.tensorio import encode

        data = encode(tensors, metadata)
        self.put_bytes(key, data)
        return object_digest(data)

    def get_tensors(self, key: str) -> dict[str, np.ndarray]:
        """Read the arrays written by ``put_tensors`` (see :meth:`get_tensors_with_metadata`)."""
        return self.get_tensors_with_metadata(key)[0]

    def get_tensors_with_metadata(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Read the arrays written by ``put_tensors`` and their string metadata, the digest checked.

        Raises:
            KeyNotFoundError: absent.
            CorruptObjectError: damaged, or written without a digest.
        """
        from ftg_common.tensorio import decode

        return decode(self.get_bytes(key), key, require_digest=True)
