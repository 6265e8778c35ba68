"""Architecture description of an actor-critic MLP and the names of its tensors.

The spec travels with the weights (as a JSON string in the safetensors metadata) so that any
reader can rebuild the network without the training config.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from ftg_common.spec_parts import EncodedInput, obs_encoding_field
from ftg_common.tensorio import decode, encode

__all__ = [
    "NORM_METADATA_KEY",
    "NORM_PREFIX",
    "SPEC_METADATA_KEY",
    "PolicySpec",
    "load_policy_bytes",
    "save_policy_bytes",
    "split_norm_tensors",
    "tensor_names",
    "tensor_shapes",
]

SPEC_METADATA_KEY = "policy_spec"


class PolicySpec(EncodedInput):
    """Shape of a separate-network actor-critic MLP (SB3 MlpPolicy with separate pi/vf nets).

    Actor: obs -> net_arch -> logits [n_actions] (discrete) or mean [action_dim] (box), with a
    state-independent `log_std` [action_dim] for box. Critic: obs -> net_arch -> 1.
    """

    # Infinity is allowed in action bounds (unbounded Box); Python's json reads it back.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")
    # Left out at their defaults, so the spec (and the bytes of every policy file) of a policy that uses
    # neither encodings nor gSDE is what it was before they existed.
    OMIT_WHEN_DEFAULT: ClassVar[dict[str, Any]] = {
        "obs_encoding": None,
        "use_sde": False,
        "sde_full_std": True,
        "sde_use_expln": False,
    }

    obs_dim: int = Field(gt=0)
    action_kind: Literal["discrete", "box"]
    n_actions: int | None = Field(default=None, gt=0)
    action_dim: int | None = Field(default=None, gt=0)
    action_low: list[float] | None = None
    action_high: list[float] | None = None
    net_arch: list[int] = Field(default_factory=lambda: [64, 64])
    activation: Literal["tanh", "relu"] = "tanh"
    log_std_init: float = 0.0
    obs_encoding: str | None = obs_encoding_field()

    use_sde: bool = Field(default=False, description="gSDE: log_std is [H, A] (or [H, 1]) over the latent")
    sde_full_std: bool = True
    sde_use_expln: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> PolicySpec:
        if self.use_sde and self.action_kind != "box":
            raise ValueError("gSDE (use_sde) needs Box actions")
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
        use_sde: bool = False,
        sde_full_std: bool = True,
        sde_use_expln: bool = False,
    ) -> PolicySpec:
        """Spec for a gymnasium env's observation space and a Discrete or Box action space.

        Observations: any space :func:`~ftg_common.envs.encoding.observation_encoding` supports (Box
        and MultiBinary flattened; Discrete, MultiDiscrete and Tuple of Discrete one-hot encoded).
        Raises ValueError for anything else (Dict, Discrete actions with a non-zero start,
        multi-dimensional action Box, ...).
        """
        from gymnasium import spaces  # local: keeps `import ftg_common.policy` light

        from ftg_common.envs.encoding import observation_encoding

        obs_dim, enc = observation_encoding(observation_space)
        arch = [64, 64] if net_arch is None else list(net_arch)
        common: dict[str, Any] = {
            "obs_dim": obs_dim,
            "obs_encoding": None if enc.identity else enc.to_json(),
            "net_arch": arch,
            "activation": activation,
            "log_std_init": log_std_init,
        }
        if isinstance(action_space, spaces.Discrete):
            if int(action_space.start) != 0:
                raise ValueError(f"unsupported action space {action_space!r}: Discrete must start at 0")
            if use_sde:
                raise ValueError(f"gSDE (use_sde) needs Box actions, not {action_space!r}")
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
                use_sde=use_sde,
                sde_full_std=sde_full_std,
                sde_use_expln=sde_use_expln,
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
        if spec.use_sde:
            # gSDE: one std per (latent feature, action dim), or per feature shared by the actions.
            shapes["log_std"] = (spec.net_arch[-1], spec.out_dim if spec.sde_full_std else 1)
        else:
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


NORM_PREFIX = "norm."
"""Prefix of the normalisation statistics' tensors in a policy file (float64, beside the weights)."""
NORM_METADATA_KEY = "normalize"
"""Metadata key of the normalisation options (NormalizeSettings JSON) in a policy file."""


def split_norm_tensors(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(weights, normalisation tensors with the ``norm.`` prefix removed) of a stored tensor dict."""
    weights = {k: v for k, v in tensors.items() if not k.startswith(NORM_PREFIX)}
    norm = {k[len(NORM_PREFIX) :]: v for k, v in tensors.items() if k.startswith(NORM_PREFIX)}
    return weights, norm


def save_policy_bytes(
    spec: PolicySpec,
    tensors: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
    norm: dict[str, np.ndarray] | None = None,
    norm_settings: str | None = None,
) -> bytes:
    """Serialise weights + spec to safetensors bytes; identical inputs give identical bytes.

    Args:
        spec: the architecture, stored under metadata key SPEC_METADATA_KEY.
        tensors: name -> float32 array, exactly `tensor_names(spec)`.
        metadata: optional extra string metadata (e.g. version, run id).
        norm: the policy version's normalisation statistics (``stats_to_tensors``), stored as float64
            under the ``norm.`` prefix; None when the run does not normalise.
        norm_settings: the normalisation options (``NormalizeSettings.to_json()``), stored as metadata
            so a reader needs no training config to normalise like the policy was trained.
    """
    check_tensors(spec, tensors)
    meta = dict(metadata or {})
    for reserved in (SPEC_METADATA_KEY, NORM_METADATA_KEY):
        if reserved in meta:
            raise ValueError(f"metadata key {reserved!r} is reserved")
    meta[SPEC_METADATA_KEY] = spec.to_json()
    out = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}
    if norm is not None:
        out.update({NORM_PREFIX + k: np.asarray(v, dtype=np.float64) for k, v in norm.items()})
        if norm_settings is not None:
            meta[NORM_METADATA_KEY] = norm_settings
    return encode(out, meta)


def load_policy_bytes(data: bytes) -> tuple[PolicySpec, dict[str, np.ndarray], dict[str, str]]:
    """Inverse of `save_policy_bytes`: (spec, weights, metadata without the spec entry).

    Normalisation tensors, when present, are left out of the weights (see :func:`split_norm_tensors`).
    """
    tensors, meta = decode(data)
    if SPEC_METADATA_KEY not in meta:
        raise ValueError(f"safetensors data has no {SPEC_METADATA_KEY!r} metadata")
    spec = PolicySpec.from_json(meta.pop(SPEC_METADATA_KEY))
    weights, _ = split_norm_tensors(tensors)
    check_tensors(spec, weights)
    return spec, weights, meta
