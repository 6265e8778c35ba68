"""Training and sweep configuration (validated; a wrong key or value is reported by its field name)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ftg_common.ids import RUN_ID_PATTERN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PPOConfig(_Strict):
    """PPO hyperparameters; names and meanings follow Stable-Baselines3."""

    env_id: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    total_steps: int = Field(default=100_000, gt=0)
    n_envs: int = Field(default=8, gt=0, le=1024)
    n_steps: int = Field(default=32, gt=0, le=100_000)
    shards: int = Field(default=2, gt=0, le=256, description="rollout-collector invocations per iteration")
    gamma: float = Field(default=0.98, gt=0, le=1)
    gae_lambda: float = Field(default=0.8, ge=0, le=1)
    n_epochs: int = Field(default=20, gt=0)
    batch_size: int = Field(default=256, gt=1, description="minibatch size")
    learning_rate: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "linear"] = "linear"
    clip_range: float = Field(default=0.2, gt=0)
    clip_schedule: Literal["constant", "linear"] = "linear"
    clip_range_vf: float | None = Field(default=None, gt=0)
    ent_coef: float = Field(default=0.0, ge=0)
    vf_coef: float = Field(default=0.5, ge=0)
    max_grad_norm: float = Field(default=0.5, gt=0)
    normalize_advantage: bool = True
    target_kl: float | None = Field(default=None, gt=0)
    adam_eps: float = Field(default=1e-5, gt=0)
    update_backend: Literal["numpy", "torch"] = Field(
        default="numpy", description="numpy: hand-written gradients (fast on CPU); torch: autograd reference"
    )
    net_arch: list[int] = Field(default_factory=lambda: [64, 64], min_length=1, max_length=8)
    activation: Literal["tanh", "relu"] = "tanh"
    ortho_init: bool = True
    log_std_init: float = 0.0
    eval_every_steps: int = Field(default=2048, gt=0)
    eval_episodes: int = Field(default=10, gt=0, le=1000)
    threshold: float | None = 475.0

    @field_validator("net_arch")
    @classmethod
    def _positive_layers(cls, v: list[int]) -> list[int]:
        if any(h <= 0 or h > 4096 for h in v):
            raise ValueError("every layer width must be in 1..4096")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PPOConfig:
        if self.n_envs % self.shards:
            raise ValueError(f"n_envs ({self.n_envs}) must be divisible by shards ({self.shards})")
        if self.batch_size > self.rollout_size:
            raise ValueError(f"batch_size ({self.batch_size}) exceeds n_envs * n_steps ({self.rollout_size})")
        if self.total_steps < self.rollout_size:
            raise ValueError(
                f"total_steps ({self.total_steps}) is less than one rollout ({self.rollout_size})"
            )
        return self

    @property
    def rollout_size(self) -> int:
        """Transitions per iteration across all shards (n_envs * n_steps)."""
        return self.n_envs * self.n_steps

    @property
    def envs_per_shard(self) -> int:
        """Environments each rollout-collector invocation steps."""
        return self.n_envs // self.shards

    @property
    def n_iterations(self) -> int:
        """Collect-aggregate-update iterations needed to reach ``total_steps``."""
        # Like SB3, keep collecting while fewer than total_steps have been taken (so 1e5 steps with
        # 256-step rollouts is 391 iterations, 100,096 steps).
        return -(-self.total_steps // self.rollout_size)

    @property
    def eval_every_iterations(self) -> int:
        """``eval_every_steps`` rounded to whole iterations (at least 1)."""
        return max(1, round(self.eval_every_steps / self.rollout_size))


class RunConfig(_Strict):
    """What a run's functions read from ``runs/<run_id>/config.json``."""

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    seed: int = Field(ge=0, lt=2**31)
    algo: Literal["ppo"] = "ppo"
    ppo: PPOConfig
    sweep_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)
    config_name: str | None = None

    def digest(self) -> str:
        """Short content hash of this config (see ``config_digest``)."""
        return config_digest(self)

    def to_stored(self) -> dict[str, Any]:
        """What ``runs/<run_id>/config.json`` holds: the config plus its digest."""
        return {**self.model_dump(mode="json"), "digest": self.digest()}

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> RunConfig:
        """Validate a stored ``config.json``; ValueError if its digest does not match the content."""
        data = dict(data)
        digest = data.pop("digest", None)
        cfg = cls.model_validate(data)
        if digest is not None and digest != cfg.digest():
            raise ValueError(f"stored config of run {cfg.run_id} does not match its digest {digest}")
        return cfg


def config_digest(cfg: RunConfig) -> str:
    """First 16 hex digits of the SHA-256 of the config's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class SweepConfig(_Strict):
    """A sweep file: named configurations x seeds, each pair one trial (its own run)."""

    name: str = Field(pattern=RUN_ID_PATTERN)
    description: str = ""
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    max_parallel: int = Field(default=2, gt=0, le=64)
    defaults: dict[str, Any] = Field(default_factory=dict, description="PPO fields shared by all configs")
    configs: dict[str, dict[str, Any]] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _seed_range(cls, v: list[int]) -> list[int]:
        if any(s < 0 or s >= 2**31 for s in v):
            raise ValueError("seeds must be in [0, 2**31)")
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    @field_validator("configs")
    @classmethod
    def _config_names(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        import re

        for name in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", name):
                raise ValueError(f"config name {name!r} must match [a-z0-9][a-z0-9-]{{0,30}}")
        return v

    def trial_configs(self) -> dict[str, PPOConfig]:
        """Each named config merged over ``defaults`` and validated.

        Errors name the field as ``configs.<name>.<field>``.
        """
        from pydantic import ValidationError

        out: dict[str, PPOConfig] = {}
        for name, overrides in self.configs.items():
            merged = {**self.defaults, **(overrides or {})}
            algo = merged.pop("algo", "ppo")
            if algo != "ppo":
                raise SweepError(f"configs.{name}.algo: unsupported algorithm {algo!r} (supported: ppo)")
            try:
                out[name] = PPOConfig.model_validate(merged)
            except ValidationError as exc:
                raise SweepError(format_validation_error(exc, prefix=f"configs.{name}")) from exc
        return out


class SweepError(ValueError):
    """An invalid sweep file; the message names the offending field path."""


def format_validation_error(exc: Any, prefix: str = "") -> str:
    """One line per problem, each naming the field path."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        path = ".".join(p for p in (prefix, loc) if p)
        lines.append(f"{path or '<root>'}: {err.get('msg')}")
    return "; ".join(lines)


def load_sweep(text: str) -> SweepConfig:
    """Parse and validate a sweep YAML document; raises SweepError with field names."""
    import yaml
    from pydantic import ValidationError

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SweepError(f"sweep file is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SweepError("sweep file must be a mapping with keys name, seeds, configs")
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise SweepError(format_validation_error(exc)) from exc
    sweep.trial_configs()
    return sweep
