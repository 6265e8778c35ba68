"""reward-aggregator: GAE(gamma, lambda) advantages and returns over all shards -> one training batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from ftg_common import faas, layout
from ftg_common.batch import assemble_batch, shard_keys
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import AggregateRequest, AggregateResult


def aggregate(req: AggregateRequest, ctx: FunctionContext) -> AggregateResult:
    """Read the iteration's shards, write its batch, and answer the batch's summary."""
    ppo = ctx.config.ppo
    keys = shard_keys(req.shards, req.run_id, req.iteration, ppo.shards)
    shards = [ctx.store.get_tensors(k) for k in keys]
    batch = assemble_batch(shards, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda)
    key = layout.batch_key(req.run_id, req.iteration)
    ctx.store.put_tensors(key, batch)
    returns = [r for s in req.shards for r in s.episode_returns]
    adv = batch["advantages"]
    return AggregateResult(
        key=key,
        batch_size=int(adv.shape[0]),
        steps=sum(s.steps for s in req.shards),
        episodes=len(returns),
        mean_return=float(np.mean(returns)) if returns else None,
        adv_mean=float(adv.mean()),
        adv_std=float(adv.std()),
    )


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return faas.serve(event, AggregateRequest, aggregate)
