"""Logging a trial's final policy to MLflow as a model, registering it, and naming the champion."""

from __future__ import annotations

from typing import Any

from ftg_common.store.base import ObjectStore


def _actor_module(store: ObjectStore, run_id: str, version: int):
    import torch

    from ftg_common.checkpoint_io import load_checkpoint
    from ftg_common.policy.spec import PolicySpec
    from ftg_common.policy.torch_policy import ActorCritic

    weights, _optim, state = load_checkpoint(store, run_id, version)
    spec = PolicySpec.from_json(state["spec"])
    model = ActorCritic(spec)
    model.load_flat_tensors(weights)
    model.eval()

    class Actor(torch.nn.Module):
        """Observation batch -> action logits (Discrete) or action means (Box)."""

        def __init__(self, ac: ActorCritic) -> None:
            super().__init__()
            self.ac = ac

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.ac.forward_actor(obs)

    return Actor(model), spec


def log_policy_model(
    mlflow_run_id: str, store: ObjectStore, run_id: str, version: int, registered_name: str | None
) -> Any:
    """Returns the ModelInfo (``registered_model_version`` set when registered)."""
    import mlflow
    import numpy as np

    actor, spec = _actor_module(store, run_id, version)
    # Two rows: torch.export specialises a batch dimension of size 1 to a constant.
    example = np.zeros((2, spec.obs_dim), dtype=np.float32)
    with mlflow.start_run(run_id=mlflow_run_id):
        return mlflow.pytorch.log_model(
            actor, name="policy", input_example=example, registered_model_name=registered_name,
            pip_requirements=["torch==2.13.0"],
        )


def set_champion(registered_name: str, version: str | int) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient().set_registered_model_alias(registered_name, "champion", str(version))
