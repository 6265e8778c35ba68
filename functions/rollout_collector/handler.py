"""rollout-collector: step a shard of vectorised gymnasium envs with the current policy (numpy only).

PPO runs sample from the actor; DQN runs act epsilon-greedy on the online Q-network and log mu(a|s),
Q-learning runs likewise on the version's Q-table.
"""

from __future__ import annotations

from typing import Any

from ftg_common import faas
from ftg_common.checkpoints import load_numpy_policy, load_q_policy
from ftg_common.collector import resume_envs, rollout_norm, save_shard, shard_envs
from ftg_common.config import OffPolicyHParams, QLearningConfig
from ftg_common.envs.seeding import ACTIONS, SDE_NOISE, derive_rng
from ftg_common.errors import BadRequest
from ftg_common.guards import check_iteration, require_committed
from ftg_common.rollout import SdeNoise, collect_rollout
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import CollectRequest, CollectResult


def collect(req: CollectRequest, ctx: FunctionContext) -> CollectResult:
    """Continue the shard's episodes for ``n_steps`` with policy version ``iteration``.

    Refused before anything is written: an iteration past the run's last (400), a shard the run does
    not have (400), and an iteration whose policy version is not committed yet (409).
    """
    cfg, hp = ctx.config, ctx.config.hparams
    check_iteration(cfg, req.iteration)
    if req.shard >= hp.shards:
        raise BadRequest(f"shard {req.shard} out of range: run has {hp.shards} shards", "shard")
    # The policy that acts in iteration i is version i (version 0 is the initial policy).
    require_committed(
        ctx.meta, req.run_id, req.iteration, "iteration", f"collecting iteration {req.iteration}"
    )
    off = cfg.off_policy_hparams
    if off is not None:
        return collect_off_policy(req, ctx, off)
    ppo = cfg.ppo_config
    policy = load_numpy_policy(ctx.store, req.run_id, req.iteration)
    settings = ppo.normalize_settings
    with shard_envs(cfg, req.shard) as envs:
        carried = resume_envs(envs, ctx.store, req.run_id, req.iteration, req.shard)
        norm = None if settings is None else rollout_norm(settings, policy.norm, envs, carried)
        rng = derive_rng(cfg.seed, ACTIONS, req.iteration, req.shard)
        sde = None
        if policy.spec.use_sde:
            sde = SdeNoise(derive_rng(cfg.seed, SDE_NOISE, req.iteration, req.shard), ppo.sde_sample_freq)
        rollout = collect_rollout(envs, policy, ppo.n_steps, rng, norm, sde)
        keys = save_shard(ctx.store, req.run_id, req.iteration, req.shard, rollout, envs)
    return _result(req, keys, ppo.n_steps * ppo.envs_per_shard, rollout)


def _result(req: CollectRequest, keys: tuple[str, str], steps: int, rollout: Any) -> CollectResult:
    """The shard's answer: where its trajectory and env carry are, and its finished episodes."""
    key, carry_key = keys
    return CollectResult(
        key=key,
        carry_key=carry_key,
        shard=req.shard,
        steps=steps,
        policy_version=req.iteration,
        episode_returns=[round(r, 6) for r in rollout.episode_returns],
        episode_lengths=rollout.episode_lengths,
    )


def collect_off_policy(req: CollectRequest, ctx: FunctionContext, dqn: OffPolicyHParams) -> CollectResult:
    """Epsilon-greedy steps with the Q-network (or Q-table) of version ``iteration`` (checks already made).

    The exploration rate of each vectorised step is read at the run's environment steps before it,
    so it does not depend on how the envs are split into shards.
    """
    # Off-policy code is imported here, at its one use: a PPO collector's cold start never loads it.
    from ftg_common.algos.dqn import behaviour_epsilon
    from ftg_common.policy.qtable import load_qtable_policy
    from ftg_common.rollout_offpolicy import collect_transitions

    cfg = ctx.config
    policy = (
        load_qtable_policy(ctx.store, req.run_id, req.iteration)
        if isinstance(dqn, QLearningConfig)
        else load_q_policy(ctx.store, req.run_id, req.iteration)
    )
    steps_before = req.iteration * dqn.rollout_size

    def epsilon_at(t: int) -> float:
        return behaviour_epsilon(
            steps_before + t * dqn.n_envs,
            dqn.total_steps,
            dqn.learning_starts,
            dqn.exploration_initial_eps,
            dqn.exploration_final_eps,
            dqn.exploration_fraction,
        )

    with shard_envs(cfg, req.shard) as envs:
        resume_envs(envs, ctx.store, req.run_id, req.iteration, req.shard)
        rng = derive_rng(cfg.seed, ACTIONS, req.iteration, req.shard)
        rollout = collect_transitions(envs, policy, dqn.train_freq, epsilon_at, rng)
        keys = save_shard(ctx.store, req.run_id, req.iteration, req.shard, rollout, envs)
    return _result(req, keys, dqn.train_freq * dqn.envs_per_shard, rollout)


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return faas.serve(event, CollectRequest, collect)
