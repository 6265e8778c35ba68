"""Reading and writing a run's inference weights (safetensors with the PolicySpec as metadata)."""

from __future__ import annotations

import numpy as np

from ftg_common.layout import policy_key
from ftg_common.policy.spec import PolicySpec, load_policy_bytes, save_policy_bytes
from ftg_common.store.base import ObjectStore


def save_policy(store: ObjectStore, run_id: str, version: int, spec: PolicySpec, tensors: dict[str, np.ndarray]) -> str:
    key = policy_key(run_id, version)
    store.put_bytes(key, save_policy_bytes(spec, tensors, {"version": str(version), "run_id": run_id}))
    return key


def load_numpy_policy(store: ObjectStore, run_id: str, version: int):
    """A NumpyPolicy for ``version`` of the run's policy (numpy only: the rollout path never loads torch)."""
    from ftg_common.policy.numpy_policy import NumpyPolicy

    spec, tensors, _meta = load_policy_bytes(store.get_bytes(policy_key(run_id, version)))
    return NumpyPolicy(spec, tensors)
