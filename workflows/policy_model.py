"""A trained policy's actor as an MLflow pyfunc model.

Raw observations [B, raw_dim], float32 as the environment emits them (a Discrete observation: its
index) -> action logits [B, n_actions] (discrete; the greedy action is their argmax) or action means
[B, action_dim] (box; the evaluator clips them to the action bounds); for a DQN run, the online
Q-network's Q-values [B, n_actions] (the spec's ``prefix`` is ``q``; the greedy action is their argmax).

Before the network the model does what the policy-evaluator does (the spec's ``preprocess``, also in
the model's metadata): with the run's observation normalisation, ``clip((obs - mean) / sqrt(var +
epsilon), -clip_obs, clip_obs)`` in float64 with the version's frozen statistics; then the one-hot
encoding of Discrete, MultiDiscrete and Tuple-of-Discrete observations (an index outside its range is
an error). MLflow logs this file as a "model from code": it stores the
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
PREPROCESS = "ftg_preprocess"  # key of the preprocessing in the spec and in the model's metadata


def _normalizer(pre: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(mean, sqrt(var + epsilon), clip_obs) float64 when observations are normalised, else None."""
    norm = pre.get("normalization")
    if not norm or not norm["applied"]:
        return None
    mean, var = np.asarray(norm["mean"], dtype=np.float64), np.asarray(norm["var"], dtype=np.float64)
    return mean, np.sqrt(var + float(norm["epsilon"])), float(norm["clip_obs"])


def _one_hot(x: np.ndarray, sizes: list[int], starts: list[int]) -> np.ndarray:
    """Raw indices [B, k] -> the k one-hots concatenated [B, sum(sizes)] float32."""
    index = x.astype(np.int64) - np.asarray(starts, dtype=np.int64)
    if not np.array_equal(index + np.asarray(starts), x) or np.any((index < 0) | (index >= sizes)):
        raise ValueError(
            f"observations must be whole numbers in [start, start + n) per component: {starts}, {sizes}"
        )
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = np.zeros((x.shape[0], int(sum(sizes))), dtype=np.float32)
    out[np.arange(x.shape[0])[:, None], offsets + index] = 1.0
    return out


class PolicyActor(PythonModel):
    """The actor MLP of a separate-network actor-critic (the critic is not part of the model)."""

    def load_context(self, context: Any) -> None:
        """Read the weights and the architecture from the model's artifacts."""
        from safetensors.numpy import load_file

        spec = json.loads(Path(context.artifacts[SPEC]).read_text())
        tensors = load_file(context.artifacts[WEIGHTS])
        self.obs_dim = int(spec["obs_dim"])
        # Models logged before preprocessing was recorded take the network's input as it is.
        pre = spec.get(PREPROCESS) or {}
        self.raw_dim = int(pre.get("raw_dim", self.obs_dim))
        self.normalizer = _normalizer(pre)
        enc = pre.get("encoding")
        self.one_hot = None if enc is None else (list(enc["sizes"]), list(enc["starts"]))
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
        """Actor outputs for a batch of raw observations.

        Args:
            context: MLflow's model context (unused after loading).
            model_input: raw observations [B, raw_dim] (other trailing shapes are flattened).
            params: unused.

        Returns:
            float32 [B, n_actions] logits (Q-values for DQN) or [B, action_dim] means.
        """
        x = np.asarray(model_input, dtype=np.float32)
        x = x.reshape(x.shape[0], -1) if x.ndim != 2 else x
        if x.shape[1] != self.raw_dim:
            raise ValueError(f"observations must be [B, {self.raw_dim}], got shape {np.shape(model_input)}")
        if self.normalizer is not None:
            mean, std, clip = self.normalizer
            x = np.clip((x.astype(np.float64) - mean) / std, -clip, clip).astype(np.float32)
        if self.one_hot is not None:
            x = _one_hot(x, *self.one_hot)
        for w, b in self.hidden:
            x = x @ w + b
            x = np.maximum(x, 0.0) if self.relu else np.tanh(x)
        return x @ self.out[0] + self.out[1]


set_model(PolicyActor())
