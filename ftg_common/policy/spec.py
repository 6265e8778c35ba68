"""Architecture description of an actor-critic MLP and the names of its tensors.

The spec travels with the weights (as a JSON string in the safetensors metadata) so that any
reader can rebuild the network without the training config.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ftg_common.tensorio import decode, encode

__all__ = [
    "SPEC_METADATA_KEY",
    "PolicySpec",
    "load_policy_bytes",
    "save_policy_bytes",
    "tensor_names",
    "tensor_shapes",
]

SPEC_METADATA_KEY = "policy_spec"


class PolicySpec(BaseModel):
    """Shape of a separate-network actor-critic MLP (SB3 MlpPolicy with separate pi/vf nets).

    Actor: obs -> net_arch -> logits [n_actions] (discrete) or mean [action_dim] (box), with a
    state-independent `log_std` [action_dim] for box. Critic: obs -> net_arch -> 1.
    """

    # Infinity is allowed in action bounds (unbounded Box); Python's json reads it back.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    obs_dim: int = Field(gt=0)
    action_kind: Literal["discrete", "box"]
    n_actions: int | None = Field(default=None, gt=0)
    action_dim: int | None = Field(default=None, gt=0)
    action_low: list[float] | None = None
    action_high: list[float] | None = None
    net_arch: list[int] = Field(default_factory=lambda: [64, 64])
    activation: Literal["tanh", "relu"] = "tanh"
    log_std_init: float = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> PolicySpec:
        if any(h <= 0 for h in self.net_arch):
            raise ValueError(f"net_arch widths must be positive, got {self.net_arch}")
        if self.action_kind == "discrete":
            if self.n_actions is None:
                raise ValueError("a discrete policy needs n_actions")
            if self.action_dim is not None or self.action_low is not None or self.action_high is not None:
                raise ValueError("a discrete policy takes no action_dim/action_low/action_high")
        else:
            if self.action_dim is None:
                raise ValueError("a box policy needs action_dim")
            if self.n_actions is not None:
                raise ValueError("a box policy takes no n_actions")
            for name in ("action_low", "action_high"):
                bound = getattr(self, name)
                if bound is not None and len(bound) != self.action_dim:
                    raise ValueError(
                        f"{name} has {len(bound)} entries, expected action_dim={self.action_dim}"
                    )
        return self

    @property
    def out_dim(self) -> int:
        """Width of the actor's output layer."""
        return self.n_actions if self.action_kind == "discrete" else self.action_dim  # type: ignore[return-value]

    @classmethod
    def from_spaces(
        cls,
        observation_space: Any,
        action_space: Any,
        net_arch: list[int] | None = None,
        activation: Literal["tanh", "relu"] = "tanh",
        log_std_init: float = 0.0,
    ) -> PolicySpec:
        """Spec for a gymnasium env with a Box observation space and a Discrete or Box action space.

        Observations of any shape are flattened. Raises ValueError for anything else (Dict, Tuple,
        MultiDiscrete, MultiBinary, Discrete with a non-zero start, multi-dimensional action Box).
        """
        from gymnasium import spaces  # local: keeps `import ftg_common.policy` light

        if not isinstance(observation_space, spaces.Box):
            raise ValueError(
                f"unsupported observation space {observation_space!r}: only gymnasium.spaces.Box "
                "(flattened) is supported; wrap the env with FlattenObservation for Dict/Tuple spaces"
            )
        obs_dim = int(math.prod(observation_space.shape))
        arch = [64, 64] if net_arch is None else list(net_arch)
        common: dict[str, Any] = {
            "obs_dim": obs_dim,
            "net_arch": arch,
            "activation": activation,
            "log_std_init": log_std_init,
        }
        if isinstance(action_space, spaces.Discrete):
            if int(action_space.start) != 0:
                raise ValueError(f"unsupported action space {action_space!r}: Discrete must start at 0")
            return cls(action_kind="discrete", n_actions=int(action_space.n), **common)
        if isinstance(action_space, spaces.Box):
            if len(action_space.shape) != 1:
                raise ValueError(
                    f"unsupported action space {action_space!r}: only 1-D Box actions are supported"
                )
            return cls(
                action_kind="box",
                action_dim=int(action_space.shape[0]),
                action_low=[float(v) for v in action_space.low],
                action_high=[float(v) for v in action_space.high],
                **common,
            )
        raise ValueError(
            f"unsupported action space {action_space!r}: "
            "only gymnasium.spaces.Discrete and 1-D Box are supported"
        )

    def to_json(self) -> str:
        """The spec as the JSON string stored in safetensors metadata."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> PolicySpec:
        """Parse and validate a spec written by ``to_json``."""
        return cls.model_validate_json(data)


def tensor_shapes(spec: PolicySpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the policy, weights in torch Linear layout [out, in]."""
    shapes: dict[str, tuple[int, ...]] = {}
    for net, out in (("pi", spec.out_dim), ("vf", 1)):
        width = spec.obs_dim
        for i, h in enumerate(spec.net_arch):
            shapes[f"{net}.{i}.weight"] = (h, width)
            shapes[f"{net}.{i}.bias"] = (h,)
            width = h
        shapes[f"{net}.out.weight"] = (out, width)
        shapes[f"{net}.out.bias"] = (out,)
    if spec.action_kind == "box":
        shapes["log_std"] = (spec.out_dim,)
    return shapes


def tensor_names(spec: PolicySpec) -> list[str]:
    """Names of every tensor of the policy, in ``tensor_shapes`` order."""
    return list(tensor_shapes(spec))


def check_tensors(spec: PolicySpec, tensors: dict[str, Any]) -> None:
    """Raise ValueError unless `tensors` has exactly the spec's names and shapes."""
    shapes = tensor_shapes(spec)
    missing = sorted(set(shapes) - set(tensors))
    extra = sorted(set(tensors) - set(shapes))
    if missing or extra:
        raise ValueError(f"policy tensors do not match the spec: missing {missing}, unexpected {extra}")
    for name, shape in shapes.items():
        got = tuple(tensors[name].shape)
        if got != shape:
            raise ValueError(f"tensor {name!r} has shape {got}, expected {shape}")


def save_policy_bytes(
    spec: PolicySpec, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> bytes:
    """Serialise weights + spec to safetensors bytes; identical inputs give identical bytes.

    Args:
        spec: the architecture, stored under metadata key SPEC_METADATA_KEY.
        tensors: name -> float32 array, exactly `tensor_names(spec)`.
        metadata: optional extra string metadata (e.g. version, run id).
    """
    check_tensors(spec, tensors)
    meta = dict(metadata or {})
    if SPEC_METADATA_KEY in meta:
        raise ValueError(f"metadata key {SPEC_METADATA_KEY!r} is reserved for the policy spec")
    meta[SPEC_METADATA_KEY] = spec.to_json()
    return encode({k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, meta)


def load_policy_bytes(data: bytes) -> tuple[PolicySpec, dict[str, np.ndarray], dict[str, str]]:
    """Inverse of `save_policy_bytes`: (spec, tensors, metadata without the spec entry)."""
    tensors, meta = decode(data)
    if SPEC_METADATA_KEY not in meta:
        raise ValueError(f"safetensors data has no {SPEC_METADATA_KEY!r} metadata")
    spec = PolicySpec.from_json(meta.pop(SPEC_METADATA_KEY))
    check_tensors(spec, tensors)
    return spec, tensors, meta
