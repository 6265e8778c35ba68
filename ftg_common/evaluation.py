"""Deterministic evaluation episodes, all envs stepped together with batched numpy inference."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from ftg_common.envs.factory import make_env
from ftg_common.normalize import NormalizeSettings, NormStats, normalize_obs

UNLIMITED_EVAL_STEPS = 10_000
"""Length at which an evaluation episode of an env without a time limit is cut."""

if TYPE_CHECKING:
    from ftg_common.policy.numpy_policy import NumpyPolicy
    from ftg_common.policy.qpolicy import QPolicy


def run_episodes(
    env_id: str,
    env_kwargs: dict[str, Any],
    policy: NumpyPolicy | QPolicy,
    seeds: list[int],
    envs: list[gym.Env] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One episode per seed with the policy's deterministic action. Returns (returns [E], lengths [E])."""
    envs = envs if envs is not None else [make_env(env_id, env_kwargs) for _ in seeds]
    e = len(seeds)
    space = envs[0].action_space
    box = isinstance(space, gym.spaces.Box)
    low = np.asarray(space.low) if isinstance(space, gym.spaces.Box) else None
    high = np.asarray(space.high) if isinstance(space, gym.spaces.Box) else None
    obs = np.stack(
        [
            np.asarray(env.reset(seed=s)[0], dtype=np.float32).reshape(-1)
            for env, s in zip(envs, seeds, strict=True)
        ]
    )
    returns = np.zeros(e, dtype=np.float64)
    lengths = np.zeros(e, dtype=np.int64)
    live = np.arange(e)
    # A normalising policy sees observations normalised with its version's statistics, frozen (SB3's
    # VecNormalize with training=False); rewards are counted raw.
    norm: NormStats | None = getattr(policy, "norm", None)
    settings: NormalizeSettings | None = getattr(policy, "norm_settings", None)
    if settings is not None and not settings.norm_obs:
        norm = None
    # An env without a time limit (CliffWalking) can loop forever under a deterministic policy that
    # never reaches its goal: its evaluation episodes are cut at UNLIMITED_EVAL_STEPS.
    unlimited = any(env.spec is None or env.spec.max_episode_steps is None for env in envs)
    cap = UNLIMITED_EVAL_STEPS if unlimited else None
    while live.size:
        x = obs[live]
        if norm is not None and settings is not None:
            x = normalize_obs(x, norm.obs_rms, settings.clip_obs, settings.epsilon)
        actions = policy.act_deterministic(x)
        if box:
            actions = np.clip(actions, low, high)
        still = []
        for k, j in enumerate(live):
            o, r, term, trunc, _ = envs[j].step(actions[k] if box else int(actions[k]))
            returns[j] += r
            lengths[j] += 1
            if not (term or trunc or (cap is not None and lengths[j] >= cap)):
                obs[j] = np.asarray(o, dtype=np.float32).reshape(-1)
                still.append(j)
        live = np.asarray(still, dtype=np.int64)
    return returns, lengths
