"""Checkpoints in the object store: weights + optimizer state (safetensors) + state.json (counters).
Everything needed to resume; no torch here."""

from __future__ import annotations

from typing import Any

import numpy as np

from ftg_common import layout
from ftg_common.store.base import ObjectStore


def save_checkpoint(
    store: ObjectStore,
    run_id: str,
    version: int,
    weights: dict[str, np.ndarray],
    optim: dict[str, np.ndarray],
    state: dict[str, Any],
) -> str:
    store.put_tensors(layout.ckpt_weights_key(run_id, version), weights)
    store.put_tensors(layout.ckpt_optim_key(run_id, version), optim)
    # state.json last: its presence marks a complete checkpoint.
    store.put_json(layout.ckpt_state_key(run_id, version), state)
    return layout.ckpt_prefix(run_id, version)


def load_checkpoint(
    store: ObjectStore, run_id: str, version: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    state = store.get_json(layout.ckpt_state_key(run_id, version))
    weights = store.get_tensors(layout.ckpt_weights_key(run_id, version))
    optim = store.get_tensors(layout.ckpt_optim_key(run_id, version))
    return weights, optim, state
