"""Errors a function raises on purpose, each with the HTTP status ``faas.serve`` answers for it.

They live apart from ``faas`` so that library code (and ``runtime``, which ``faas`` imports) can raise
them without importing the HTTP contract; ``faas`` re-exports them as part of that contract.
"""

from __future__ import annotations

__all__ = ["BadRequest", "Conflict", "CorruptObjectError", "FunctionError", "UnknownEnvError"]


class FunctionError(Exception):
    """A failure the caller should see as a JSON error with ``status``.

    Attributes:
        status: HTTP status of the response.
        message: human-readable explanation, sent as ``error``.
        field: the request field at fault, sent as ``field`` when set.
        key: the object-store key at fault, sent as ``key`` when set.
    """

    status = 500
    key: str | None = None

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(FunctionError):
    """The request cannot be served as sent (400): retrying it unchanged fails the same way."""

    status = 400


class Conflict(FunctionError):
    """The request disagrees with the run's stored state (409): config digest, policy version, carry."""

    status = 409


class CorruptObjectError(FunctionError, ValueError):
    """A stored object fails its integrity check (422): digest mismatch, truncation, bad header or JSON.

    Retrying the read gets the same bytes, so the request cannot succeed until the object is repaired
    (or the run is resumed from an intact version). A ``ValueError`` too, as the decoders raised before.

    Attributes:
        key: the object's key, or None when bytes were checked without one (the caller re-raises
            with :meth:`for_key` once it knows it).
        reason: what is wrong with the object, without the key.
    """

    status = 422

    def __init__(self, key: str | None, reason: str) -> None:
        where = f"corrupt object {key}" if key is not None else "corrupt object"
        super().__init__(f"{where}: {reason}")
        self.key = key
        self.reason = reason

    def for_key(self, key: str) -> CorruptObjectError:
        """The same error naming ``key``."""
        return CorruptObjectError(key, self.reason)


class UnknownEnvError(ValueError):
    """An env id that gymnasium does not know, or whose spaces FaaSTrainGym cannot train on.

    Here rather than beside the env factory so that callers mapping it to an answer need not import
    gymnasium.

    Attributes:
        field: the config field at fault: ``env_id`` (unknown env, unsupported spaces), ``env_kwargs``
            (arguments the env rejects at construction or at its first steps), or another field the
            env cannot honour (``normalize``, ``use_sde``).
    """

    def __init__(self, message: str, field: str = "env_id") -> None:
        super().__init__(message)
        self.field = field
