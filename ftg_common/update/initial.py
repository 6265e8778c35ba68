"""Version 0 of a run: the seeded initial policy, before any update (numpy only, no torch)."""

from __future__ import annotations

from ftg_common.checkpoints import CheckpointState, PolicyVersion
from ftg_common.config import RunConfig
from ftg_common.envs.factory import make_env
from ftg_common.envs.seeding import INIT, derive_seed
from ftg_common.policy.init import initial_weights
from ftg_common.policy.spec import PolicySpec


def policy_spec(cfg: RunConfig) -> PolicySpec:
    """The network shape the run's env and config call for (the env is created once to read its spaces)."""
    ppo = cfg.ppo
    env = make_env(ppo.env_id, ppo.env_kwargs)
    try:
        return PolicySpec.from_spaces(
            env.observation_space, env.action_space, ppo.net_arch, ppo.activation, ppo.log_std_init
        )
    finally:
        env.close()


def initial_version(cfg: RunConfig) -> PolicyVersion:
    """Version 0: seeded initial weights (orthogonal unless ``ortho_init`` is off), no optimizer state."""
    spec = policy_spec(cfg)
    state = CheckpointState(version=0, iteration=-1, total_steps=0, n_updates=0, spec=spec)
    weights = initial_weights(spec, derive_seed(cfg.seed, INIT), ortho=cfg.ppo.ortho_init)
    return PolicyVersion(state=state, weights=weights)
