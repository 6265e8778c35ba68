"""Content digests of stored objects: the JSON envelope, and the digest a committed version records.

A JSON object is stored as ``{"data":<document>,"sha256":"<64 hex>"}``: the document as compact JSON
with sorted keys, then the SHA-256 of exactly those bytes. The envelope's frame is fixed, so every byte
of the object is checked on read: the frame by its shape, the digest by its syntax, the document by
its hash. Equal documents give equal bytes, as before.

Safetensors objects carry their digest in their header (:mod:`ftg_common.tensorio`).

The digest a committed version records for each object it wrote (:func:`object_digest`) is the
SHA-256 of the stored bytes, whatever their format: ``sha256sum`` of a file, or of an S3 object
downloaded, gives the same hex.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ftg_common.errors import CorruptObjectError

__all__ = ["decode_json", "encode_json", "object_digest"]

_HEAD = b'{"data":'
_TAIL = re.compile(rb',"sha256":"([0-9a-f]{64})"\}\Z')
_TAIL_LEN = len(b',"sha256":""}') + 64


def object_digest(data: bytes) -> str:
    """SHA-256 (hex) of an object's stored bytes: what a committed version records."""
    return hashlib.sha256(data).hexdigest()


def encode_json(obj: Any) -> bytes:
    """The envelope of ``obj``: compact sorted JSON and its SHA-256.

    Raises:
        TypeError: ``obj`` is not JSON-serializable.
    """
    doc = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return _HEAD + doc + b',"sha256":"' + hashlib.sha256(doc).hexdigest().encode() + b'"}'


def _frame_problem(data: bytes) -> str:
    """Why ``data`` is not an envelope: empty, JSON from a writer without digests, or damaged."""
    if not data:
        return "empty: 0 bytes"
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return f"not a JSON envelope with a content digest ({len(data)} bytes): truncated or damaged"
    return "no content digest: plain JSON, not written by this version's object store"


def decode_json(data: bytes, key: str | None = None) -> Any:
    """The document of an envelope written by :func:`encode_json`, its digest checked first.

    Raises:
        CorruptObjectError: truncated or damaged bytes, a JSON object without a digest (written by
            something else, or before objects carried one), a digest mismatch or a document that does
            not parse.
    """
    tail = _TAIL.search(data, len(data) - _TAIL_LEN) if len(data) > len(_HEAD) + _TAIL_LEN else None
    if not data.startswith(_HEAD) or tail is None:
        raise CorruptObjectError(key, _frame_problem(data))
    recorded = tail.group(1).decode()
    doc = data[len(_HEAD) : len(data) - _TAIL_LEN]
    actual = hashlib.sha256(doc).hexdigest()
    if actual != recorded:
        raise CorruptObjectError(
            key, f"content digest mismatch: recorded sha256 {recorded}, document hashes to {actual}"
        )
    try:
        return json.loads(doc)
    except (ValueError, RecursionError) as exc:  # bad JSON or bad UTF-8 (only if written so)
        raise CorruptObjectError(key, f"document is not valid JSON: {exc}") from None
