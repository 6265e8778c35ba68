"""policy-updater: PPO epochs on the iteration's batch, then checkpoint i+1 and a fenced version commit.

The only function that imports torch. It keeps no state between calls: each update starts from the
checkpoint in the store, so a resumed run computes exactly what an uninterrupted one does.
"""

from __future__ import annotations

from ftg_common import layout, runtime
from ftg_common.schemas import UpdateRequest, UpdateResult
from ftg_common.settings import get_settings


def _already_committed(req: UpdateRequest) -> UpdateResult:
    prior = runtime.store().get_json(layout.update_key(req.run_id, req.iteration))
    prior["already_committed"] = True
    return UpdateResult.model_validate(prior)


def _torch_trainer():
    from ftg_common import trainer  # torch lives behind this import

    trainer.set_threads(get_settings().torch_threads)
    return trainer


def update(req: UpdateRequest) -> UpdateResult:
    clock = runtime.Stopwatch()
    cfg = runtime.run_config(req.run_id, req.config_digest)
    store, meta = runtime.store(), runtime.meta()
    if req.mode == "init":
        if req.iteration != 0:
            raise runtime.BadRequest("mode 'init' creates version 0 and needs iteration 0", "iteration")
        return _torch_trainer().initialise(store, cfg, clock)
    if req.batch is None:
        raise runtime.BadRequest("mode 'update' needs the aggregator's result in 'batch'", "batch")
    expected = layout.batch_key(req.run_id, req.iteration)
    if req.batch.key != expected:
        raise runtime.BadRequest(f"batch.key {req.batch.key!r} is not {expected!r}", "batch.key")
    run = meta.get_run(req.run_id)
    if run["last_iteration"] >= req.iteration:
        return _already_committed(req)
    if run["version"] != req.iteration:
        raise runtime.Conflict(
            f"run {req.run_id} is at policy version {run['version']}; iteration {req.iteration} needs version "
            f"{req.iteration}",
            "iteration",
        )
    if cfg.ppo.update_backend == "torch":
        result = _torch_trainer().ppo_update(store, cfg, req.iteration, clock)
    else:
        from ftg_common import trainer_numpy

        result = trainer_numpy.ppo_update(store, cfg, req.iteration, clock)
    if not meta.commit_version(req.run_id, req.iteration, req.iteration):
        # Another updater committed first (a retry raced us); its checkpoint has identical bytes.
        if meta.get_run(req.run_id)["last_iteration"] >= req.iteration:
            return _already_committed(req)
        raise runtime.Conflict(f"policy version of run {req.run_id} moved during the update", "iteration")
    return result


def handle(event, context):
    return runtime.serve(event, UpdateRequest, update)


def warmup() -> None:
    """Called once when a warm worker starts: pay torch's import before the first request, not during it."""
    _torch_trainer().warm_up()
