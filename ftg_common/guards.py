"""Caller fields checked against the run before a function writes anything.

A request names a run, an iteration and (for some functions) a shard or policy version; the pydantic
models only bound them. Here they are checked against what the run can be at: its frozen config (how
many iterations it has) and its committed state in the metadata store (which policy versions exist).
A field no run of this config could hold is a 400; a field this run cannot hold *yet* is a 409. Both
name the field, and both are raised before any object is written.

The rules, per function (i = ``iteration``, V = the run's committed policy version):

* every function: ``i < n_iterations`` of the run's config;
* rollout-collector: policy version i acts in iteration i, so ``i <= V`` (version i is committed);
* reward-aggregator: the trajectories of iteration i were collected by version i, so ``i <= V``;
* policy-updater: the version fence (``update.fence``) admits i == V, or answers the recorded result
  of an iteration already committed;
* policy-evaluator: iteration i's eval record holds version i + 1, so ``i + 1 <= V``.

The run's status is not consulted: a finished or interrupted run still answers retried steps (they
rewrite identical bytes), and ``resume`` needs exactly that.
"""

from __future__ import annotations

from ftg_common.config import RunConfig
from ftg_common.errors import BadRequest, Conflict
from ftg_common.meta.base import MetaStore

__all__ = ["check_iteration", "require_committed"]


def check_iteration(cfg: RunConfig, iteration: int) -> None:
    """Refuse an iteration the run's config does not have.

    Raises:
        BadRequest: ``iteration >= n_iterations`` of the run's hyperparameters (field ``iteration``).
    """
    n = cfg.hparams.n_iterations
    if iteration >= n:
        raise BadRequest(
            f"iteration {iteration} out of range: run {cfg.run_id} has {n} iterations (0..{n - 1})",
            "iteration",
        )


def require_committed(meta: MetaStore, run_id: str, version: int, field: str, purpose: str) -> int:
    """Refuse to use policy ``version`` of run ``run_id`` before it is committed.

    Args:
        meta: the metadata store holding the run record.
        run_id: the run.
        version: the policy version the request needs.
        field: the request field the version comes from, named in the refusal.
        purpose: what the version is needed for, for the message (e.g. ``"collect iteration 3"``).

    Returns:
        The run's committed policy version.

    Raises:
        RunNotFoundError: the run has no record (``faas.serve`` answers 400, field ``run_id``).
        Conflict: ``version`` is past the committed version (409 naming ``field``).
    """
    committed = int(meta.get_run(run_id)["version"])
    if version > committed:
        raise Conflict(
            f"run {run_id} has committed policy version {committed}; {purpose} needs version {version}",
            field,
        )
    return committed
