"""reward-aggregator: GAE(gamma, lambda) advantages and returns over all shards -> one training batch."""

from __future__ import annotations

from typing import Any

from ftg_common import faas, layout
from ftg_common.batch import assemble_batch, read_trajectories, rollout_summary, shard_keys
from ftg_common.errors import Conflict
from ftg_common.guards import check_iteration, require_committed
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import AggregateRequest, AggregateResult


def aggregate(req: AggregateRequest, ctx: FunctionContext) -> AggregateResult:
    """Read the iteration's shards, write its batch, and answer the batch's summary.

    Of the collectors' results in the request only each shard's ``key`` is used (checked against the
    run's layout); steps, episodes and the mean return are computed from the stored trajectories.
    """
    ppo = ctx.config.ppo
    check_iteration(ctx.config, req.iteration)
    keys = shard_keys(req.shards, req.run_id, req.iteration, ppo.shards)
    # Iteration i's trajectories were collected by policy version i.
    require_committed(
        ctx.meta, req.run_id, req.iteration, "iteration", f"aggregating iteration {req.iteration}"
    )
    shards = read_trajectories(ctx.store, keys, req.iteration)
    try:
        summary = rollout_summary(shards)
    except ValueError as exc:
        raise Conflict(f"stored trajectories of iteration {req.iteration}: {exc}", "shards") from exc
    batch = assemble_batch(shards, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda)
    key = layout.batch_key(req.run_id, req.iteration)
    ctx.store.put_tensors(key, batch)
    adv = batch["advantages"]
    return AggregateResult(
        key=key,
        batch_size=int(adv.shape[0]),
        steps=summary.steps,
        episodes=summary.episodes,
        mean_return=summary.mean_return,
        adv_mean=float(adv.mean()),
        adv_std=float(adv.std()),
    )


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return faas.serve(event, AggregateRequest, aggregate)
