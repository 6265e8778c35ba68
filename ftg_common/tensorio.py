"""Deterministic safetensors encoding with a content digest, checked on every read.

The same arrays and metadata always give the same bytes. safetensors 0.8 writes ``__metadata__`` from
a hash map in per-call random order, so two writes of the same step could differ; idempotent steps need
byte-identical objects. The format (u64 header length, JSON header, raw little-endian data) is small
enough to emit directly; reading goes through the safetensors library.

Integrity: :func:`encode` stores the SHA-256 of the whole encoding under the reserved metadata key
``ftg.sha256``, computed with the digest's own 64 hex digits set to ``0`` (it cannot hash itself). So
the digest covers the length prefix, the header (tensor names, dtypes, shapes, offsets, every metadata
value, the padding) and the data section. :func:`decode` recomputes it before trusting anything and
raises :class:`~ftg_common.errors.CorruptObjectError` on a mismatch or on structural damage. The
reserved key is stripped from the metadata callers see. Other safetensors readers ignore it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np

from ftg_common.errors import CorruptObjectError

__all__ = ["DIGEST_METADATA_KEY", "decode", "encode", "verify"]

DIGEST_METADATA_KEY = "ftg.sha256"
_PLACEHOLDER = "0" * 64
# How the digest entry appears in a header we wrote. Quotes inside JSON strings are escaped, so this
# exact byte sequence can only be the reserved key itself, never part of another metadata value.
_DIGEST_ENTRY = re.compile(rb'"ftg\.sha256":"([0-9a-f]{64})"')
_HEX64 = re.compile(r"[0-9a-f]{64}")
# A header larger than this is damage, not a model (the reference implementation caps it at 100 MB).
_MAX_HEADER = 100_000_000

_DTYPES = {
    np.dtype("<f4"): "F32",
    np.dtype("<f8"): "F64",
    np.dtype("<f2"): "F16",
    np.dtype("<i8"): "I64",
    np.dtype("<i4"): "I32",
    np.dtype("<i2"): "I16",
    np.dtype("i1"): "I8",
    np.dtype("u1"): "U8",
    np.dtype("<u4"): "U32",
    np.dtype("<u8"): "U64",
    np.dtype("bool"): "BOOL",
}


def encode(arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """Safetensors bytes with tensors and metadata in sorted order, and the content digest.

    Raises:
        TypeError: a dtype safetensors cannot store.
        ValueError: ``metadata`` uses the reserved key ``ftg.sha256``.
    """
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if DIGEST_METADATA_KEY in meta:
        raise ValueError(f"metadata key {DIGEST_METADATA_KEY!r} is reserved for the content digest")
    meta[DIGEST_METADATA_KEY] = _PLACEHOLDER
    header: dict[str, Any] = {"__metadata__": dict(sorted(meta.items()))}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(arrays):
        arr = np.asarray(arrays[name])
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        code = _DTYPES.get(np.dtype(dt))
        if code is None:
            raise TypeError(f"tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors")
        data = np.ascontiguousarray(arr, dtype=dt).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # 8-byte alignment of the data section, as the reference writer does
    prefix = len(head).to_bytes(8, "little")
    digest = hashlib.sha256(prefix)
    digest.update(head)
    for chunk in chunks:
        digest.update(chunk)
    entry = _DIGEST_ENTRY.search(head)
    assert entry is not None  # the placeholder is 64 hex digits
    head = head[: entry.start(1)] + digest.hexdigest().encode() + head[entry.end(1) :]
    return prefix + head + b"".join(chunks)


def _header(data: bytes | memoryview) -> tuple[int, dict[str, Any]]:
    """(length of prefix + header, parsed header) of safetensors bytes; structural damage raises."""
    if len(data) < 8:
        raise CorruptObjectError(None, f"truncated: {len(data)} bytes, shorter than the 8-byte header length")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > min(len(data) - 8, _MAX_HEADER):
        raise CorruptObjectError(
            None, f"header length {header_len} exceeds the {len(data) - 8} bytes that follow it"
        )
    try:
        header = json.loads(bytes(data[8 : 8 + header_len]))
    except (ValueError, RecursionError) as exc:  # bad JSON or bad UTF-8
        raise CorruptObjectError(None, f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CorruptObjectError(None, "header is not a JSON object")
    return 8 + header_len, header


def verify(data: bytes, require_digest: bool = True) -> dict[str, Any]:
    """Check the content digest of safetensors bytes and return their parsed header.

    Args:
        data: the encoded bytes.
        require_digest: refuse bytes without a digest (what the object store does); False lets files
            from other writers through unchecked.

    Raises:
        CorruptObjectError: structural damage, a missing digest (if required) or a mismatch; its ``key``
            is None, for the caller to fill in.
    """
    view = memoryview(data)
    end, header = _header(view)
    stored = header.get("__metadata__")
    digest = stored.get(DIGEST_METADATA_KEY) if isinstance(stored, dict) else None
    if digest is None:
        if require_digest:
            raise CorruptObjectError(None, f"no content digest ({DIGEST_METADATA_KEY!r} metadata)")
        return header
    if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
        raise CorruptObjectError(None, f"content digest {str(digest)[:80]!r} is not 64 hex digits")
    entries = list(_DIGEST_ENTRY.finditer(view[8:end]))
    if len(entries) != 1:
        raise CorruptObjectError(None, "content digest is not where the encoder writes it")
    start, stop = 8 + entries[0].start(1), 8 + entries[0].end(1)
    actual = hashlib.sha256(view[:start])
    actual.update(_PLACEHOLDER.encode())
    actual.update(view[stop:])
    if actual.hexdigest() != digest:
        raise CorruptObjectError(
            None, f"content digest mismatch: recorded sha256 {digest}, bytes hash to {actual.hexdigest()}"
        )
    return header


def decode(
    data: bytes, key: str | None = None, require_digest: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, metadata) of safetensors bytes, their content digest checked first when they have one.

    Args:
        data: the encoded bytes.
        key: the object's key, named by the error.
        require_digest: refuse bytes that carry no digest. The object store always passes True; the
            default reads files of other safetensors writers too.

    Returns:
        The arrays and the string metadata, without the reserved digest entry.

    Raises:
        CorruptObjectError: (a ``ValueError``) the bytes are not intact safetensors data.
    """
    from safetensors.numpy import load

    try:
        header = verify(data, require_digest)
        try:
            arrays = load(data)
        except Exception as exc:  # the library raises its own error types
            raise CorruptObjectError(None, f"not safetensors data: {exc}") from None
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise CorruptObjectError(None, "header metadata is not a JSON object")
    except CorruptObjectError as exc:
        if key is None:
            raise
        raise exc.for_key(key) from None
    return arrays, {str(k): str(v) for k, v in meta.items() if k != DIGEST_METADATA_KEY}
