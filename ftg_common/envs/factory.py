"""Environment creation and validation against gymnasium's registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym

from ftg_common.envs.coldstart.registration import register_coldstart_envs
from ftg_common.envs.encoding import observation_encoding
from ftg_common.envs.slow import register_benchmark_envs
from ftg_common.errors import UnknownEnvError

if TYPE_CHECKING:
    from ftg_common.config import PPOConfig

__all__ = ["UnknownEnvError", "check_ppo_env", "make_env", "validate_env"]

# The project's own ids (the latency-bound benchmark env, the cold-start envs) resolve wherever envs
# are made: in every function replica, the driver's validation and the tests, which all come through
# this module.
register_benchmark_envs()
register_coldstart_envs()


def validate_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """Create the env, reset it and step it once, and check its spaces; returns it.

    Stepping once catches ``env_kwargs`` the constructor accepts but the dynamics cannot use (e.g.
    ``g: "abc"`` for Pendulum-v1) before a run starts, instead of at its first collector call.

    Raises:
        UnknownEnvError: unknown id or unsupported spaces (field ``env_id``); arguments the env rejects
            when made, reset or stepped (field ``env_kwargs``).
    """
    if env_id not in gym.envs.registry:
        close = [k for k in gym.envs.registry if k.lower().startswith(env_id.split("-")[0].lower())][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownEnvError(f"env_id {env_id!r} is not a registered gymnasium environment{hint}")
    env = make_env(env_id, env_kwargs)
    obs_space, act_space = env.observation_space, env.action_space
    try:
        observation_encoding(obs_space)
    except ValueError as exc:
        env.close()
        raise UnknownEnvError(f"env_id {env_id!r}: {exc}") from exc
    if not isinstance(act_space, gym.spaces.Discrete | gym.spaces.Box):
        env.close()
        raise UnknownEnvError(f"env_id {env_id!r}: action space {act_space} is neither Discrete nor Box")
    try:
        env.reset(seed=0)
        act_space.seed(0)
        env.step(act_space.sample())
    except Exception as exc:  # any env's own error: what matters is that these kwargs cannot run
        env.close()
        field = "env_kwargs" if env_kwargs else "env_id"
        raise UnknownEnvError(
            f"{env_id!r} with env_kwargs {env_kwargs or {}} fails its first step: "
            f"{type(exc).__name__}: {exc}",
            field,
        ) from exc
    return env


def check_ppo_env(env: gym.Env, hp: PPOConfig) -> None:
    """Refuse PPO options the env's spaces cannot honour, naming the option.

    Raises:
        UnknownEnvError: ``normalize.norm_obs`` with observations that are not a Box (field
            ``normalize.norm_obs``); ``use_sde`` with actions that are not a Box (field ``use_sde``).
    """
    if (
        hp.normalize is not None
        and hp.normalize.norm_obs
        and not isinstance(env.observation_space, gym.spaces.Box)
    ):
        raise UnknownEnvError(
            f"{hp.env_id}: observation normalisation needs Box observations, not {env.observation_space} "
            "(set norm_obs: false; rewards can still be normalised)",
            "normalize.norm_obs",
        )
    if hp.use_sde and not isinstance(env.action_space, gym.spaces.Box):
        raise UnknownEnvError(f"{hp.env_id}: gSDE needs Box actions, not {env.action_space}", "use_sde")


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """Create a registered gymnasium env; UnknownEnvError for an unknown id or rejected kwargs."""
    if env_id not in gym.envs.registry:
        raise UnknownEnvError(f"env_id {env_id!r} is not a registered gymnasium environment")
    try:
        # The passive checker only warns and costs time on every step; our own validation runs once.
        return gym.make(env_id, disable_env_checker=True, **(env_kwargs or {}))
    except (TypeError, ValueError) as exc:  # an unknown keyword, or a value the env's constructor refuses
        raise UnknownEnvError(f"env_kwargs rejected by {env_id!r}: {exc}", "env_kwargs") from exc
