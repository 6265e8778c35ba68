"""Torch optimizer state <-> flat arrays for checkpoints."""

from __future__ import annotations

import numpy as np
import torch


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
