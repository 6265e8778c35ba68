"""Deterministic safetensors encoding: the same arrays and metadata always give the same bytes.

safetensors 0.8 writes ``__metadata__`` from a hash map in per-call random order, so two writes of the
same step could differ; idempotent steps need byte-identical objects. The format (u64 header length,
JSON header, raw little-endian data) is small enough to emit directly; reading goes through the
safetensors library.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

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
    """Safetensors bytes with tensors and metadata in sorted order."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
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
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)


def decode(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, metadata). Raises ValueError on data that is not safetensors."""
    from safetensors.numpy import load

    if len(data) < 8:
        raise ValueError("not safetensors data: shorter than its 8-byte header length")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise ValueError("not safetensors data: header length exceeds the data")
    try:
        header = json.loads(data[8 : 8 + header_len])
        arrays = load(data)
    except Exception as exc:  # the library raises its own error types
        raise ValueError(f"not safetensors data: {exc}") from exc
    return arrays, dict(header.get("__metadata__") or {})
