"""Environment creation and validation against gymnasium's registry."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from ftg_common.envs.slow import register_benchmark_envs
from ftg_common.errors import UnknownEnvError

__all__ = ["UnknownEnvError", "make_env", "validate_env"]

# The project's own ids (the latency-bound benchmark env) resolve wherever envs are made: in every
# function replica, the driver's validation and the tests, which all come through this module.
register_benchmark_envs()


def validate_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """Create the env once to check that it exists and has a supported space pair; returns it."""
    if env_id not in gym.envs.registry:
        close = [k for k in gym.envs.registry if k.lower().startswith(env_id.split("-")[0].lower())][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownEnvError(f"env_id {env_id!r} is not a registered gymnasium environment{hint}")
    env = make_env(env_id, env_kwargs)
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box):
        raise UnknownEnvError(f"env_id {env_id!r}: observation space {obs_space} is not a Box")
    if not isinstance(act_space, gym.spaces.Discrete | gym.spaces.Box):
        raise UnknownEnvError(f"env_id {env_id!r}: action space {act_space} is neither Discrete nor Box")
    return env


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """Create a registered gymnasium env; UnknownEnvError for an unknown id or rejected kwargs."""
    if env_id not in gym.envs.registry:
        raise UnknownEnvError(f"env_id {env_id!r} is not a registered gymnasium environment")
    try:
        # The passive checker only warns and costs time on every step; our own validation runs once.
        return gym.make(env_id, disable_env_checker=True, **(env_kwargs or {}))
    except TypeError as exc:
        raise UnknownEnvError(f"env_kwargs rejected by {env_id!r}: {exc}") from exc
