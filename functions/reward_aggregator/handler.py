"""reward-aggregator: GAE(gamma, lambda) advantages and returns over all shards -> one training batch.

For an off-policy (DQN, Q-learning) run it appends the shards to the replay buffer instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ftg_common import faas, layout
from ftg_common.batch import (
    RolloutSummary,
    assemble_batch,
    read_trajectories,
    rollout_summary,
    shard_keys,
)
from ftg_common.checkpoints import read_policy_file
from ftg_common.config import OffPolicyHParams
from ftg_common.errors import Conflict
from ftg_common.guards import check_iteration, require_committed
from ftg_common.normalize import merge_increments, stats_from_tensors, stats_to_tensors
from ftg_common.policy.spec import NORM_PREFIX
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import AggregateRequest, AggregateResult, AppendResult


def aggregate(req: AggregateRequest, ctx: FunctionContext) -> AggregateResult | AppendResult:
    """Read the iteration's shards, write its batch, and answer the batch's summary.

    Of the collectors' results in the request only each shard's ``key`` is used (checked against the
    run's layout); steps, episodes and the mean return are computed from the stored trajectories.
    """
    hp = ctx.config.hparams
    check_iteration(ctx.config, req.iteration)
    keys = shard_keys(req.shards, req.run_id, req.iteration, hp.shards)
    # Iteration i's trajectories were collected by policy version i.
    require_committed(
        ctx.meta, req.run_id, req.iteration, "iteration", f"aggregating iteration {req.iteration}"
    )
    shards = read_trajectories(ctx.store, keys, req.iteration)
    try:
        summary = rollout_summary(shards)
    except ValueError as exc:
        raise Conflict(f"stored trajectories of iteration {req.iteration}: {exc}", "shards") from exc
    off = ctx.config.off_policy_hparams
    if off is not None:
        return append_to_replay(req, ctx, off, keys, shards, summary)
    ppo = ctx.config.ppo_config
    batch = assemble_batch(shards, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda)
    if ppo.normalize is not None:
        batch.update(merged_norm_tensors(ctx, req.run_id, req.iteration, keys, shards))
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


def merged_norm_tensors(
    ctx: FunctionContext, run_id: str, iteration: int, keys: list[str], shards: list[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The next policy version's normalisation statistics, as ``norm.*`` tensors of the batch.

    Version ``iteration``'s statistics merged with every shard's increment: exact and independent of
    the shards' order, so a retried or reordered fan-in writes the same bytes.

    Raises:
        Conflict: the version has no statistics, or a shard holds none or unreadable ones (``shards``).
    """
    base = read_policy_file(ctx.store, run_id, iteration).norm
    if base is None:
        raise Conflict(f"policy version {iteration} of a normalising run holds no statistics", "iteration")
    increments = []
    for key, arrays in zip(keys, shards, strict=True):
        try:
            increments.append(stats_from_tensors(arrays, NORM_PREFIX))
        except ValueError as exc:
            why = f"{key}: no usable normalisation increment ({exc}): collect it again"
            raise Conflict(why, "shards") from exc
    return stats_to_tensors(merge_increments(base, increments), NORM_PREFIX)


def append_to_replay(
    req: AggregateRequest,
    ctx: FunctionContext,
    dqn: OffPolicyHParams,
    keys: list[str],
    shards: list[dict[str, np.ndarray]],
    summary: RolloutSummary,
) -> AppendResult:
    """Append the iteration's shards to the replay buffer, in shard order, then evict beyond capacity.

    A retry appends nothing twice: each shard is identified by its trajectory key.
    """
    # Imported at its one use: an on-policy aggregator's cold start never loads the replay buffer.
    from ftg_common.replay import ReplayBuffer, transitions_from_shard

    buffer = ReplayBuffer(ctx.store, ctx.meta, req.run_id, dqn.buffer_size)
    chunks = [
        buffer.append(key, transitions_from_shard(arrays)).chunk
        for key, arrays in zip(keys, shards, strict=True)
    ]
    evicted = buffer.evict()
    head = ctx.meta.replay_head(req.run_id)
    return AppendResult(
        key=layout.replay_prefix(req.run_id),
        iteration=req.iteration,
        chunks=chunks,
        evicted=evicted,
        replay_size=min(head.next_first, dqn.buffer_size),
        steps=summary.steps,
        episodes=summary.episodes,
        mean_return=summary.mean_return,
    )


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return faas.serve(event, AggregateRequest, aggregate)
