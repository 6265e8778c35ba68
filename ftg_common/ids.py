"""Identifier validation: ids end up in object-store keys and file paths, so only a safe alphabet passes."""

from __future__ import annotations

import re

RUN_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_RUN_ID_RE = re.compile(RUN_ID_PATTERN)


class InvalidIdError(ValueError):
    """An id or index outside the safe alphabet or range; the message names the field."""


def validate_run_id(run_id: object, field: str = "run_id") -> str:
    """Return ``run_id`` if it matches RUN_ID_PATTERN, else raise InvalidIdError naming ``field``."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise InvalidIdError(f"{field} {run_id!r} must match {RUN_ID_PATTERN}")
    return run_id


def validate_index(value: object, field: str, upper: int) -> int:
    """Return ``value`` if it is an int (not a bool) in [0, upper), else raise InvalidIdError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < upper:
        raise InvalidIdError(f"{field} {value!r} must be an integer in [0, {upper})")
    return value
