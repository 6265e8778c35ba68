"""policy-updater: train version i on batch i, write version i+1, commit it through the version fence.

Keeps no state between calls: each update starts from the version in the store, so a resumed run
computes exactly what an uninterrupted one does. The default path is numpy only; torch is imported
on the first call of a run with ``update_backend: torch``.
"""

from __future__ import annotations

from typing import Any

from ftg_common import checkpoints, faas, layout
from ftg_common.errors import BadRequest
from ftg_common.guards import check_iteration
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import UpdateRequest, UpdateResult
from ftg_common.update import fence, ppo
from ftg_common.update.initial import initial_version


def initialise(req: UpdateRequest, ctx: FunctionContext) -> UpdateResult:
    """Write version 0 (idempotent: the seeded weights are the same bytes every time)."""
    if req.iteration != 0:
        raise BadRequest("mode 'init' creates version 0 and needs iteration 0", "iteration")
    keys = checkpoints.write_version(ctx.store, req.run_id, initial_version(ctx.config))
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


def handle(event: faas.Event, context: faas.Context) -> dict[str, Any]:
    """The python3-http entry point."""
    return faas.serve(event, UpdateRequest, update)
