"""rollout-collector: step a shard of vectorised gymnasium envs with the current policy (numpy only)."""

from __future__ import annotations

from typing import Any

from ftg_common import faas
from ftg_common.checkpoints import load_numpy_policy
from ftg_common.collector import resume_envs, save_shard, shard_envs
from ftg_common.envs.seeding import ACTIONS, derive_rng
from ftg_common.errors import BadRequest
from ftg_common.guards import check_iteration, require_committed
from ftg_common.rollout import collect_rollout
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import CollectRequest, CollectResult


def collect(req: CollectRequest, ctx: FunctionContext) -> CollectResult:
    """Continue the shard's episodes for ``n_steps`` with policy version ``iteration``.

    Refused before anything is written: an iteration past the run's last (400), a shard the run does
    not have (400), and an iteration whose policy version is not committed yet (409).
    """
    cfg, ppo = ctx.config, ctx.config.ppo
    check_iteration(cfg, req.iteration)
    if req.shard >= ppo.shards:
        raise BadRequest(f"shard {req.shard} out of range: run has {ppo.shards} shards", "shard")
    # The policy that acts in iteration i is version i (version 0 is the initial policy).
    require_committed(
        ctx.meta, req.run_id, req.iteration, "iteration", f"collecting iteration {req.iteration}"
    )
    policy = load_numpy_policy(ctx.store, req.run_id, req.iteration)
    with shard_envs(cfg, req.shard) as envs:
        resume_envs(envs, ctx.store, req.run_id, req.iteration, req.shard)
        rng = derive_rng(cfg.seed, ACTIONS, req.iteration, req.shard)
        rollout = collect_rollout(envs, policy, ppo.n_steps, rng)
        key, carry_key = save_shard(ctx.store, req.run_id, req.iteration, req.shard, rollout, envs)
    return CollectResult(
        key=key,
        carry_key=carry_key,
        shard=req.shard,
        steps=ppo.n_steps * ppo.envs_per_shard,
        policy_version=req.iteration,
        episode_returns=[round(r, 6) for r in rollout.episode_returns],
        episode_lengths=rollout.episode_lengths,
    )


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return faas.serve(event, CollectRequest, collect)
