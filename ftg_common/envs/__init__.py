"""Gymnasium environments for the stateless rollout path: creation, validation and state carry-over.

The names below are resolved on first access, not imported with the package: importing any submodule
runs this file first, and ``ftg_common.envs.seeding`` (numpy only, used by the aggregator's replay
sampling and the updater's minibatch order) must not pay for importing gymnasium.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftg_common.envs.coldstart.registration import COLDSTART_ID, COLDSTART_MULTI_ID
    from ftg_common.envs.factory import UnknownEnvError, make_env, validate_env
    from ftg_common.envs.seeding import derive_seed
    from ftg_common.envs.vector import EnvCarry, ShardEnvs

__all__ = [
    "COLDSTART_ID",
    "COLDSTART_MULTI_ID",
    "EnvCarry",
    "ShardEnvs",
    "UnknownEnvError",
    "derive_seed",
    "make_env",
    "validate_env",
]

# The cold-start ids are registered with gymnasium by the factory (it imports gymnasium anyway);
# naming them here loads only their registration module, never the simulator.
_SUBMODULE = {
    "COLDSTART_ID": "coldstart.registration",
    "COLDSTART_MULTI_ID": "coldstart.registration",
    "EnvCarry": "vector",
    "ShardEnvs": "vector",
    "UnknownEnvError": "factory",
    "derive_seed": "seeding",
    "make_env": "factory",
    "validate_env": "factory",
}


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULE.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
