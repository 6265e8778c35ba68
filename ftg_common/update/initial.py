"""Version 0 of a run: the seeded initial policy or Q-network, before any update (numpy only, no torch)."""

from __future__ import annotations

from ftg_common.algos.qnet import QNetSpec
from ftg_common.checkpoints import CheckpointState, PolicyVersion
from ftg_common.config import DQNConfig, RunConfig
from ftg_common.envs.factory import check_ppo_env, make_env
from ftg_common.envs.seeding import INIT, derive_seed
from ftg_common.normalize import NormStats
from ftg_common.policy.init import initial_weights
from ftg_common.policy.spec import PolicySpec
from ftg_common.update.dqn import DQNVersion, initial_dqn_version
from ftg_common.update.qlearning import QTableVersion, initial_qtable_version, qtable_spec


def policy_spec(cfg: RunConfig) -> PolicySpec:
    """The network shape the run's env and config call for (the env is created once to read its spaces).

    Raises:
        UnknownEnvError: ``normalize.norm_obs`` or ``use_sde`` the env's spaces cannot honour.
    """
    ppo = cfg.ppo_config
    env = make_env(ppo.env_id, ppo.env_kwargs)
    try:
        # Options the spaces cannot honour are a 400 naming the option, not a failure of the function.
        check_ppo_env(env, ppo)
        return PolicySpec.from_spaces(
            env.observation_space,
            env.action_space,
            ppo.net_arch,
            ppo.activation,
            ppo.log_std_init,
            use_sde=ppo.use_sde,
            sde_full_std=ppo.sde_full_std,
            sde_use_expln=ppo.sde_use_expln,
        )
    finally:
        env.close()


def initial_version(cfg: RunConfig) -> PolicyVersion:
    """Version 0: seeded initial weights (orthogonal unless ``ortho_init`` is off), no optimizer state.

    A run that normalises starts from SB3's prior statistics (mean 0, variance 1, count 1e-4).
    """
    spec = policy_spec(cfg)
    state = CheckpointState(version=0, iteration=-1, total_steps=0, n_updates=0, spec=spec)
    weights = initial_weights(spec, derive_seed(cfg.seed, INIT), ortho=cfg.ppo_config.ortho_init)
    settings = cfg.ppo_config.normalize_settings
    norm = None if settings is None else NormStats.initial((spec.raw_obs_dim,))
    return PolicyVersion(state=state, weights=weights, norm=norm, norm_settings=settings)


def qnet_spec(dqn: DQNConfig) -> QNetSpec:
    """The Q-network shape a DQN config's env calls for.

    Raises:
        UnknownEnvError: the env's action space is not Discrete (a Box one is named in the message).
    """
    env = make_env(dqn.env_id, dqn.env_kwargs)
    try:
        return QNetSpec.from_spaces(env.observation_space, env.action_space, dqn.net_arch, dqn.activation)
    finally:
        env.close()


def initial_run_version(cfg: RunConfig) -> PolicyVersion | DQNVersion | QTableVersion:
    """Version 0 of the run's algorithm: the seeded actor-critic, Q-network and target, or Q-table."""
    if cfg.qlearning is not None:
        return initial_qtable_version(qtable_spec(cfg.qlearning), cfg.qlearning.initial_q)
    if cfg.dqn is not None:
        return initial_dqn_version(qnet_spec(cfg.dqn), cfg.seed)
    return initial_version(cfg)
