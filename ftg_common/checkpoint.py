"""Checkpoints: weights + Adam state (safetensors) + state.json (counters). Everything to resume."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ftg_common import layout
from ftg_common.store.base import ObjectStore


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """Adam's per-parameter state as flat arrays named ``<param index>.<field>``."""
    out: dict[str, np.ndarray] = {}
    for idx, st in opt.state_dict()["state"].items():
        for name, value in st.items():
            out[f"{idx}.{name}"] = value.detach().cpu().numpy().copy() if torch.is_tensor(value) else np.asarray(value)
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, np.ndarray]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, arr in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = torch.from_numpy(arr.copy())
    sd = opt.state_dict()
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


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
