"""The Q-network of DQN in numpy: spec, tensor names, seeded initial weights, forward and backward.

An MLP obs -> net_arch -> n_actions (SB3's QNetwork: ReLU by default, torch's default ``nn.Linear``
initialisation). Parameters live as views into one flat float32 vector, so gradient clipping and Adam
are vector operations (the layout of :mod:`ftg_common.policy.numpy_mlp`). numpy only: the
rollout-collector and the evaluator run the greedy / epsilon-greedy policy with it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from ftg_common.errors import UnknownEnvError
from ftg_common.policy.numpy_mlp import Layer, mlp_forward
from ftg_common.spec_parts import EncodedInput, obs_encoding_field

__all__ = ["ONLINE", "QNET_SPEC_METADATA_KEY", "TARGET", "FlatQ", "QNetSpec", "initial_qnet_weights"]

ONLINE = "q"
TARGET = "q_target"
QNET_SPEC_METADATA_KEY = "qnet_spec"


class QNetSpec(EncodedInput):
    """Shape of a Q-network for a discrete action space.

    ``obs_dim`` is the network's input width; with ``obs_encoding`` (Discrete, MultiDiscrete or Tuple
    of Discrete observations) the replay buffer and the policy take raw vectors (the indices) and
    encode them one-hot before the network (:attr:`encoding`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    obs_dim: int = Field(gt=0)
    n_actions: int = Field(gt=1)
    net_arch: list[int] = Field(default_factory=lambda: [64, 64])
    activation: Literal["relu", "tanh"] = "relu"
    obs_encoding: str | None = obs_encoding_field()

    def encode(self, obs: np.ndarray) -> np.ndarray:
        """Raw observation vectors [B, raw_obs_dim] -> network input [B, obs_dim] float32."""
        enc = self.encoding
        x = np.asarray(obs)
        x = x.reshape(x.shape[0], -1)
        return x.astype(np.float32, copy=False) if enc is None else enc.encode(x)

    @classmethod
    def from_spaces(
        cls,
        observation_space: Any,
        action_space: Any,
        net_arch: list[int],
        activation: Literal["relu", "tanh"] = "relu",
    ) -> QNetSpec:
        """Spec for a gymnasium env with a Discrete action space.

        Observations: any space :func:`~ftg_common.envs.encoding.observation_encoding` supports (Box
        and MultiBinary flattened; Discrete, MultiDiscrete and Tuple of Discrete one-hot encoded).

        Raises:
            UnknownEnvError: any other space (DQN needs a finite set of actions to take the max over;
                the observation space must be one the encoding supports).
        """
        from gymnasium import spaces  # local: keeps the import of this module light

        from ftg_common.envs.encoding import observation_encoding

        if not isinstance(action_space, spaces.Discrete) or int(action_space.start) != 0:
            raise UnknownEnvError(
                f"DQN needs a Discrete action space starting at 0; this env has {action_space!r}"
            )
        try:
            obs_dim, enc = observation_encoding(observation_space)
        except ValueError as exc:
            raise UnknownEnvError(f"DQN cannot take this env's observations: {exc}") from None
        return cls(
            obs_dim=obs_dim,
            n_actions=int(action_space.n),
            net_arch=list(net_arch),
            activation=activation,
            obs_encoding=None if enc.identity else enc.to_json(),
        )

    def shapes(self, prefix: str = ONLINE) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor, weights in torch Linear layout [out, in], in layer order."""
        out: dict[str, tuple[int, ...]] = {}
        width = self.obs_dim
        for i, h in enumerate(self.net_arch):
            out[f"{prefix}.{i}.weight"], out[f"{prefix}.{i}.bias"] = (h, width), (h,)
            width = h
        out[f"{prefix}.out.weight"], out[f"{prefix}.out.bias"] = (self.n_actions, width), (self.n_actions,)
        return out


def initial_qnet_weights(spec: QNetSpec, seed: int, prefix: str = ONLINE) -> dict[str, np.ndarray]:
    """Seeded initial parameters: torch's default ``nn.Linear`` init (weight and bias U(+-1/sqrt(fan_in))).

    Returns:
        name -> float32 array with the shapes of :meth:`QNetSpec.shapes`; a function of (spec, seed).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in spec.shapes(prefix).items():
        fan_in = shape[1] if name.endswith(".weight") else out[name[: -len("bias")] + "weight"].shape[1]
        bound = 1.0 / math.sqrt(fan_in)
        out[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return out


class FlatQ:
    """A Q-network's parameters as named views into one contiguous float32 vector ``flat``.

    Args:
        spec: the architecture.
        prefix: the tensor-name prefix (``q`` online, ``q_target`` target).
    """

    def __init__(self, spec: QNetSpec, prefix: str = ONLINE) -> None:
        self.spec, self.prefix = spec, prefix
        self.shapes = spec.shapes(prefix)
        self.offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for name, shape in self.shapes.items():
            self.offsets[name] = (start, start + math.prod(shape))
            start += math.prod(shape)
        self.size = start
        self.flat = np.zeros(start, np.float32)
        self._relu = spec.activation == "relu"
        self.layers = self.layer_views(self.flat)

    def view(self, name: str, buf: np.ndarray) -> np.ndarray:
        """Tensor ``name`` as a view into ``buf`` (the parameters, or a gradient of the same layout)."""
        a, b = self.offsets[name]
        return buf[a:b].reshape(self.shapes[name])

    def layer_views(self, buf: np.ndarray) -> list[Layer]:
        """(weight [in, out], bias [out]) per layer, views into ``buf``, the output layer last."""
        ids = [str(i) for i in range(len(self.spec.net_arch))] + ["out"]
        return [
            (self.view(f"{self.prefix}.{i}.weight", buf).T, self.view(f"{self.prefix}.{i}.bias", buf))
            for i in ids
        ]

    def load(self, tensors: dict[str, np.ndarray]) -> FlatQ:
        """Copy tensors (exactly this network's names and shapes) into the parameters."""
        if set(tensors) != set(self.shapes):
            missing, extra = sorted(set(self.shapes) - set(tensors)), sorted(set(tensors) - set(self.shapes))
            raise ValueError(
                f"Q-network tensors do not match the spec: missing {missing}, unexpected {extra}"
            )
        for name, shape in self.shapes.items():
            if tuple(tensors[name].shape) != shape:
                raise ValueError(f"tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {shape}")
            self.view(name, self.flat)[...] = tensors[name]
        return self

    def tensors(self) -> dict[str, np.ndarray]:
        """Name -> copy of each tensor."""
        return {name: self.view(name, self.flat).copy() for name in self.shapes}

    def forward(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Q-values of obs [B, obs_dim]: ([B, n_actions], hidden activations each [B, width])."""
        return mlp_forward(self.layers, obs, self._relu)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q(s, .) for obs [B, obs_dim] (any trailing shape is flattened): [B, n_actions] float32."""
        x = np.asarray(obs, dtype=np.float32)
        return self.forward(x.reshape(x.shape[0], -1))[0]

    def backward(self, obs: np.ndarray, acts: list[np.ndarray], g_q: np.ndarray) -> np.ndarray:
        """Gradient of a loss w.r.t. every parameter given d loss / d Q [B, n_actions].

        Args:
            obs: [B, obs_dim] the forward pass's input.
            acts: the hidden activations ``forward`` returned.
            g_q: [B, n_actions] d loss / d Q-values.

        Returns:
            [size] float32 gradient in the layout of ``flat``.
        """
        grad = np.zeros(self.size, np.float32)
        p, ids = self.prefix, [str(i) for i in range(len(acts))]
        below = acts[-1] if acts else obs
        self.view(f"{p}.out.weight", grad)[...] = g_q.T @ below
        self.view(f"{p}.out.bias", grad)[...] = g_q.sum(0)
        g = g_q @ self.view(f"{p}.out.weight", self.flat)
        for i in range(len(acts) - 1, -1, -1):
            h = acts[i]
            # relu' = [h > 0] and tanh' = 1 - h^2, both from the layer's output.
            g = g * (h > 0) if self._relu else g * (1.0 - h * h)
            x = acts[i - 1] if i > 0 else obs
            self.view(f"{p}.{ids[i]}.weight", grad)[...] = g.T @ x
            self.view(f"{p}.{ids[i]}.bias", grad)[...] = g.sum(0)
            if i > 0:
                g = g @ self.view(f"{p}.{ids[i]}.weight", self.flat)
        return grad
