"""Policy versions in the object store: the one module that writes and reads them.

A version is what the policy-updater produces and the other functions consume:

- ``ckpt/<v>/weights.safetensors`` and ``ckpt/<v>/optimizer.safetensors``: parameters and optimizer state;
- ``ckpt/<v>/state.json``: a :class:`CheckpointState` (counters and the policy's architecture), written
  last so that its presence marks a complete checkpoint;
- ``policy/<v>.safetensors``: the inference weights with the spec as metadata (numpy-loadable, what the
  rollout-collector and policy-evaluator read).

No RNG state is stored: every random stream is derived from (run seed, purpose, counters), so the
counters here are all that resuming needs. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ftg_common import layout
from ftg_common.policy.spec import PolicySpec, load_policy_bytes, save_policy_bytes
from ftg_common.store.base import ObjectStore

if TYPE_CHECKING:
    from ftg_common.policy.numpy_policy import NumpyPolicy


class CheckpointState(BaseModel):
    """Counters of a policy version (``state.json``).

    Attributes:
        version: the policy version (0 is the initial policy; version i+1 is trained on batch i).
        iteration: the iteration whose update produced it (-1 for version 0).
        total_steps: environment steps trained on so far.
        n_updates: gradient steps taken so far.
        optimizer_step: Adam's step count where the optimizer tensors do not carry it.
        spec: the network's architecture.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=0)
    iteration: int = Field(ge=-1)
    total_steps: int = Field(ge=0)
    n_updates: int = Field(ge=0)
    optimizer_step: int = Field(default=0, ge=0)
    spec: PolicySpec


@dataclass(frozen=True)
class PolicyVersion:
    """A whole version in memory: counters, parameters (safetensors names) and optimizer tensors."""

    state: CheckpointState
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionKeys:
    """Where a written version lives: the inference weights and the checkpoint folder."""

    policy: str
    checkpoint: str


def write_version(store: ObjectStore, run_id: str, v: PolicyVersion) -> VersionKeys:
    """Write every object of version ``v.state.version``; identical inputs give identical bytes."""
    n = v.state.version
    store.put_tensors(layout.ckpt_weights_key(run_id, n), v.weights)
    store.put_tensors(layout.ckpt_optim_key(run_id, n), v.optimizer)
    policy = layout.policy_key(run_id, n)
    store.put_bytes(policy, save_policy_bytes(v.state.spec, v.weights, {"version": str(n), "run_id": run_id}))
    # state.json last: its presence marks a complete checkpoint.
    store.put_json(layout.ckpt_state_key(run_id, n), v.state.model_dump(mode="json"))
    return VersionKeys(policy=policy, checkpoint=layout.ckpt_prefix(run_id, n))


def has_version(store: ObjectStore, run_id: str, version: int) -> bool:
    """True when version ``version`` was written completely."""
    return store.exists(layout.ckpt_state_key(run_id, version))


def read_version(store: ObjectStore, run_id: str, version: int) -> PolicyVersion:
    """Read a version written by :func:`write_version`."""
    state = CheckpointState.model_validate(store.get_json(layout.ckpt_state_key(run_id, version)))
    return PolicyVersion(
        state=state,
        weights=store.get_tensors(layout.ckpt_weights_key(run_id, version)),
        optimizer=store.get_tensors(layout.ckpt_optim_key(run_id, version)),
    )


def read_policy(store: ObjectStore, run_id: str, version: int) -> tuple[PolicySpec, dict[str, np.ndarray]]:
    """The inference weights of a version and their spec."""
    spec, tensors, _meta = load_policy_bytes(store.get_bytes(layout.policy_key(run_id, version)))
    return spec, tensors


def load_numpy_policy(store: ObjectStore, run_id: str, version: int) -> NumpyPolicy:
    """A NumpyPolicy for ``version`` (numpy only: the rollout path never loads torch)."""
    from ftg_common.policy.numpy_policy import NumpyPolicy

    return NumpyPolicy(*read_policy(store, run_id, version))
