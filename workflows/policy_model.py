"""A trained policy's actor as an MLflow pyfunc model.

Observations [B, obs_dim] -> action logits [B, n_actions] (discrete) or action means [B, action_dim]
(box); for a DQN run, the online Q-network's Q-values [B, n_actions] (the spec's ``prefix`` is ``q``;
the greedy action is their argmax). MLflow logs this file as a "model from code": it stores the
source and the two artifacts (the actor's weights as safetensors, its architecture as JSON) and runs
the file when the model is loaded, so no pickle is involved and nothing of this project has to be
installed where the model is served: numpy, safetensors and MLflow are enough. The forward pass is
the numpy mirror of ``ftg_common.policy.torch_policy.ActorCritic.forward_actor``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel

WEIGHTS = "weights"  # artifact names, as passed to log_model
SPEC = "spec"


class PolicyActor(PythonModel):
    """The actor MLP of a separate-network actor-critic (the critic is not part of the model)."""

    def load_context(self, context: Any) -> None:
        """Read the weights and the architecture from the model's artifacts."""
        from safetensors.numpy import load_file

        spec = json.loads(Path(context.artifacts[SPEC]).read_text())
        tensors = load_file(context.artifacts[WEIGHTS])
        self.obs_dim = int(spec["obs_dim"])
        self.relu = spec.get("activation", "tanh") == "relu"
        p = spec.get("prefix", "pi")  # "q": a DQN run's Q-network
        # Stored in torch Linear layout [out, in]; transposed once so a layer is x @ W + b.
        self.hidden = [
            (
                np.ascontiguousarray(tensors[f"{p}.{i}.weight"].T, dtype=np.float32),
                tensors[f"{p}.{i}.bias"].astype(np.float32),
            )
            for i in range(len(spec["net_arch"]))
        ]
        self.out = (
            np.ascontiguousarray(tensors[f"{p}.out.weight"].T, dtype=np.float32),
            tensors[f"{p}.out.bias"].astype(np.float32),
        )

    # MLflow reads predict's input annotation: np.ndarray keeps the schema inferred from the input
    # example (other hints are parsed as a schema of their own, or warned about).
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Actor outputs for a batch of observations.

        Args:
            context: MLflow's model context (unused after loading).
            model_input: observations [B, obs_dim] (other trailing shapes are flattened).
            params: unused.

        Returns:
            float32 [B, n_actions] logits or [B, action_dim] means.
        """
        x = np.asarray(model_input, dtype=np.float32)
        x = x.reshape(x.shape[0], -1) if x.ndim != 2 else x
        if x.shape[1] != self.obs_dim:
            raise ValueError(f"observations must be [B, {self.obs_dim}], got shape {np.shape(model_input)}")
        for w, b in self.hidden:
            x = x @ w + b
            x = np.maximum(x, 0.0) if self.relu else np.tanh(x)
        return x @ self.out[0] + self.out[1]


set_model(PolicyActor())
