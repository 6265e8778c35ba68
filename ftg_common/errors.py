"""Errors a function raises on purpose, each with the HTTP status ``faas.serve`` answers for it.

They live apart from ``faas`` so that library code (and ``runtime``, which ``faas`` imports) can raise
them without importing the HTTP contract; ``faas`` re-exports them as part of that contract.
"""

from __future__ import annotations

__all__ = ["BadRequest", "Conflict", "FunctionError", "UnknownEnvError"]


class FunctionError(Exception):
    """A failure the caller should see as a JSON error with ``status``.

    Attributes:
        status: HTTP status of the response.
        message: human-readable explanation, sent as ``error``.
        field: the request field at fault, sent as ``field`` when set.
    """

    status = 500

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


class UnknownEnvError(ValueError):
    """An env id that gymnasium does not know, or whose spaces FaaSTrainGym cannot train on.

    Here rather than beside the env factory so that callers mapping it to an answer need not import
    gymnasium.
    """
