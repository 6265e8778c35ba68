"""Reading a version's policy file: its tensors and the spec stored with them as metadata."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from pydantic import BaseModel

from ftg_common import layout
from ftg_common.errors import CorruptObjectError
from ftg_common.store.base import ObjectStore

__all__ = ["read_spec_and_tensors"]

SpecT = TypeVar("SpecT", bound=BaseModel)


def read_spec_and_tensors(
    store: ObjectStore, run_id: str, version: int, spec_type: type[SpecT], metadata_key: str, kind: str
) -> tuple[str, SpecT, dict[str, np.ndarray]]:
    """The key, spec and tensors of a version's policy file; the caller checks the tensors' shapes.

    Args:
        store: the object store.
        run_id: the run.
        version: the policy version.
        spec_type: the spec model stored as JSON under ``metadata_key``.
        metadata_key: the metadata entry holding the spec.
        kind: what the file should hold, for the error messages (``a Q-network``).

    Raises:
        KeyNotFoundError: the version has no policy file.
        CorruptObjectError: the policy file is damaged, or holds no valid ``spec_type``.
    """
    key = layout.policy_key(run_id, version)
    tensors, meta = store.get_tensors_with_metadata(key)
    try:
        spec = spec_type.model_validate_json(meta[metadata_key])
    except KeyError:
        raise CorruptObjectError(key, f"no {metadata_key!r} metadata: not {kind}") from None
    except ValueError as exc:
        raise CorruptObjectError(key, f"not {kind} policy file: {exc}") from None
    return key, spec, tensors
