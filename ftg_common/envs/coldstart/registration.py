"""Gymnasium ids of the cold-start environments, registered by entry-point string.

Registering imports nothing of the simulator: ``gym.make`` loads :mod:`ftg_common.envs.coldstart.env`
on first use, so the rollout-collector's cold start pays only for this module. The factory
(:mod:`ftg_common.envs.factory`) registers them, so every env id a run config names resolves there;
elsewhere ``gym.make("ftg_common.envs.coldstart.registration:FaaSColdStart-v0")`` imports this module
first, as gymnasium does for ``module:id``.
"""

from __future__ import annotations

import gymnasium as gym

__all__ = ["COLDSTART_ID", "COLDSTART_MULTI_ID", "register_coldstart_envs"]

COLDSTART_ID = "FaaSColdStart-v0"
COLDSTART_MULTI_ID = "FaaSColdStartMulti-v0"

_ENTRY_POINTS = {
    COLDSTART_ID: "ftg_common.envs.coldstart.env:FaaSColdStartEnv",
    COLDSTART_MULTI_ID: "ftg_common.envs.coldstart.env:FaaSColdStartMultiEnv",
}


def register_coldstart_envs() -> None:
    """Add the cold-start ids to gymnasium's registry (idempotent).

    Episodes end by the env's own truncation after ``episode_steps`` (a keyword), so no ``TimeLimit``
    wrapper is registered: the episode length stays a setting of the env.
    """
    for env_id, entry_point in _ENTRY_POINTS.items():
        if env_id not in gym.envs.registry:
            gym.register(id=env_id, entry_point=entry_point)


register_coldstart_envs()
