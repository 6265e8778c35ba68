"""Object-store key syntax, checked by every backend (which keys exist is `ftg_common.layout`'s job).

Keys become file paths (FileStore) and S3 object names, so both backends accept exactly the same
alphabet: relative POSIX paths of ``[A-Za-z0-9._-]`` segments. Anything that could escape the store
root or mean different things on different backends is refused up front.
"""

from __future__ import annotations

import re

from ftg_common.store.base import InvalidKeyError

# S3 caps object names at 1024 bytes; enforcing it here keeps the file backend from accepting keys
# that the S3 backend would later reject.
MAX_KEY_LENGTH = 1024
_KEY_CHARS = re.compile(r"[A-Za-z0-9._/-]+")


def validate_key(key: object) -> str:
    """Return ``key`` unchanged if it is a safe relative path, else raise InvalidKeyError."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"object key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidKeyError("object key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"object key longer than {MAX_KEY_LENGTH} characters: {key[:64]!r}...")
    if key.startswith("/"):
        raise InvalidKeyError(f"object key must be relative, not absolute: {key!r}")
    if not _KEY_CHARS.fullmatch(key):
        raise InvalidKeyError(f"object key {key!r} may only contain A-Z a-z 0-9 . _ - and '/' separators")
    for segment in key.split("/"):
        if segment == "":
            raise InvalidKeyError(f"object key has an empty path segment: {key!r}")
        if segment in (".", ".."):
            raise InvalidKeyError(f"object key must not contain '.' or '..' segments: {key!r}")
    return key


def is_valid_key(key: str) -> bool:
    """True when ``validate_key`` accepts ``key``."""
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


def normalize_prefix(prefix: object) -> str:
    """Validate a folder-like prefix and return it without a trailing slash ('' means everything).

    Prefixes are folders, not string prefixes: ``runs/a`` covers ``runs/a/x`` but not ``runs/ab/x``,
    which is the only meaning a directory tree can give and the one S3 is made to follow.
    """
    if not isinstance(prefix, str):
        raise InvalidKeyError(f"prefix must be a string, got {type(prefix).__name__}")
    stripped = prefix[:-1] if prefix.endswith("/") else prefix
    if stripped == "":
        if prefix == "/":
            raise InvalidKeyError("prefix must be relative, not '/'")
        return ""
    return validate_key(stripped)
