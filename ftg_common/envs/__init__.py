"""Gymnasium environments for the stateless rollout path: creation, validation and state carry-over."""

from ftg_common.envs.factory import UnknownEnvError, make_env, validate_env
from ftg_common.envs.seeding import derive_seed
from ftg_common.envs.vector import EnvCarry, ShardEnvs

__all__ = ["EnvCarry", "ShardEnvs", "UnknownEnvError", "derive_seed", "make_env", "validate_env"]
