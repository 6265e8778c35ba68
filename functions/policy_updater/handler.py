"""policy-updater: train version i on batch i, write version i+1, commit it through the version fence.

PPO trains on the iteration's batch; DQN takes its gradient steps on minibatches sampled from the
replay buffer (reading only the chunks the sample falls in); Q-learning applies the iteration's
transitions to its table in the order they were collected (then, optionally, replayed minibatches).

Keeps no state between calls: each update starts from the version in the store, so a resumed run
computes exactly what an uninterrupted one does. The default path is numpy only; torch is imported
on the first call of a run with ``update_backend: torch``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ftg_common import checkpoints, faas, layout
from ftg_common.config import DQNConfig, QLearningConfig
from ftg_common.errors import BadRequest
from ftg_common.guards import check_iteration
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import UpdateRequest, UpdateResult
from ftg_common.update import fence, ppo

if TYPE_CHECKING:  # the off-policy modules load on an off-policy run's first update, not at start
    from ftg_common.replay import ChunkCache, ReplaySample


def initialise(req: UpdateRequest, ctx: FunctionContext) -> UpdateResult:
    """Write version 0 (idempotent: the seeded weights are the same bytes every time)."""
    if req.iteration != 0:
        raise BadRequest("mode 'init' creates version 0 and needs iteration 0", "iteration")
    # Imported at its one use: version 0 needs the env's spaces (gymnasium), an update never does.
    from ftg_common.update.initial import initial_run_version

    keys = checkpoints.write_version(ctx.store, req.run_id, initial_run_version(ctx.config))
    fence.record_initial_version(ctx.meta, req.run_id, keys)
    return UpdateResult(
        key=keys.policy, ckpt_key=keys.checkpoint, version=0, iteration=0, total_steps=0, seconds=0.0
    )


def update(req: UpdateRequest, ctx: FunctionContext) -> UpdateResult:
    """Load version i, train it on batch i, write version i+1, compare-and-set.

    Refused before anything is written: an iteration past the run's last (400), a batch that is not
    iteration i's (400), and an iteration the run's committed version is not at (409, the fence).
    """
    check_iteration(ctx.config, req.iteration)
    if req.mode == "init":
        return initialise(req, ctx)
    if ctx.config.qlearning is not None:
        return update_qlearning(req, ctx, ctx.config.qlearning)
    if ctx.config.dqn is not None:
        return update_off_policy(req, ctx, ctx.config.dqn)
    expected = layout.batch_key(req.run_id, req.iteration)
    if req.batch is None or req.batch.key != expected:
        raise BadRequest(
            f"mode 'update' needs the aggregator's result for {expected!r} in 'batch'", "batch.key"
        )
    prior = fence.committed_result(ctx.store, ctx.meta, req.run_id, req.iteration)
    if prior is not None:
        return prior
    version = checkpoints.read_version(ctx.store, req.run_id, req.iteration)
    new, stats = ppo.train(version, ctx.store.get_tensors(expected), ctx.config, req.iteration)
    keys = checkpoints.write_version(ctx.store, req.run_id, new)
    return fence.commit(ctx.store, ctx.meta, req.run_id, stats.result(keys), keys.digests)


# Decoded replay chunks of this warm instance, one cache per object store: a chunk never changes once
# indexed (its entry is keyed by its digest), so consecutive updates of a run read each chunk from the
# store once. A chunk already read and checked is served from here even if its object was lost since.
_REPLAY_CACHES: dict[str, ChunkCache] = {}


def update_off_policy(req: UpdateRequest, ctx: FunctionContext, dqn: DQNConfig) -> UpdateResult:
    """Sample the iteration's minibatches from the replay buffer, train version i, commit version i+1.

    Refused before anything is written: a request without this iteration's replay append (400), and
    an iteration the run's committed version is not at (409, the fence). A sampled chunk that is
    missing (409) or damaged (422) is named, never resampled.
    """
    from ftg_common.update.dqn import train_dqn
    from ftg_common.update.dqn_plan import plan_dqn_update

    prior = _off_policy_prior(req, ctx)
    if prior is not None:
        return prior
    version = checkpoints.read_dqn_version(ctx.store, req.run_id, req.iteration)
    plan = plan_dqn_update(dqn, version.state.total_steps, req.iteration)
    batches, chunks_read = [], 0
    if plan.gradient_steps:
        sample = _replay_sample(req, ctx, dqn.buffer_size, plan.upto, plan.gradient_steps, plan.batch_size)
        batches = [sample.batch(g) for g in range(sample.n_batches)]
        chunks_read = len(sample.chunks)
    new, stats = train_dqn(version, plan, batches, dqn)
    keys = checkpoints.write_version(ctx.store, req.run_id, new)
    return fence.commit(ctx.store, ctx.meta, req.run_id, stats.result(keys, chunks_read), keys.digests)


def _off_policy_prior(req: UpdateRequest, ctx: FunctionContext) -> UpdateResult | None:
    """Check the request names its iteration's replay append; the committed result if there is one.

    Raises:
        BadRequest: no replay append of this iteration in ``replay`` (400).
        Conflict: the run's committed version is not at this iteration (409, the fence).
    """
    prefix = layout.replay_prefix(req.run_id)
    if req.replay is None or req.replay.key != prefix or req.replay.iteration != req.iteration:
        raise BadRequest(
            f"an off-policy update needs the aggregator's replay append of iteration {req.iteration} "
            f"(key {prefix!r}) in 'replay'",
            "replay",
        )
    return fence.committed_result(ctx.store, ctx.meta, req.run_id, req.iteration)


def _replay_sample(
    req: UpdateRequest, ctx: FunctionContext, capacity: int, upto: int, n_batches: int, batch_size: int
) -> ReplaySample:
    """The update's minibatches from the run's replay buffer (chunks cached per warm instance)."""
    from ftg_common.replay import ChunkCache, ReplayBuffer

    cache = _REPLAY_CACHES.setdefault(ctx.store.url, ChunkCache())
    buffer = ReplayBuffer(ctx.store, ctx.meta, req.run_id, capacity, cache=cache)
    return buffer.sample(ctx.config.seed, req.iteration, upto, n_batches, batch_size)


def update_qlearning(req: UpdateRequest, ctx: FunctionContext, hp: QLearningConfig) -> UpdateResult:
    """Apply iteration i's transitions (then any replayed minibatches) to table i, commit table i+1.

    The transitions are read from the iteration's trajectory shards, in shard order, each in the order
    it was collected. Refused as :func:`update_off_policy` refuses; a shard that is missing (400) or was
    collected by another version (409) is named.
    """
    from ftg_common.batch import read_trajectories
    from ftg_common.replay import transitions_from_shard
    from ftg_common.update.qlearning import train_qlearning
    from ftg_common.update.qlearning_plan import plan_qlearning_update

    prior = _off_policy_prior(req, ctx)
    if prior is not None:
        return prior
    version = checkpoints.read_qtable_version(ctx.store, req.run_id, req.iteration)
    plan = plan_qlearning_update(hp, version.state.total_steps, req.iteration)
    collected, replayed, chunks_read = [], None, 0
    if plan.train:
        keys = [layout.traj_key(req.run_id, req.iteration, k) for k in range(hp.shards)]
        collected = [transitions_from_shard(t) for t in read_trajectories(ctx.store, keys, req.iteration)]
    if plan.replay_batches:
        sample = _replay_sample(req, ctx, hp.buffer_size, plan.upto, plan.replay_batches, plan.batch_size)
        replayed, chunks_read = sample.transitions, len(sample.chunks)
    new, stats = train_qlearning(version, plan, collected, replayed)
    written = checkpoints.write_version(ctx.store, req.run_id, new)
    return fence.commit(ctx.store, ctx.meta, req.run_id, stats.result(written, chunks_read), written.digests)


def handle(event: faas.Event, context: faas.Context) -> dict[str, Any]:
    """The python3-http entry point."""
    return faas.serve(event, UpdateRequest, update)
