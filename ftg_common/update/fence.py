"""The version fence: the one place that decides whether an update of iteration i may commit.

Policy version i+1 is committed by compare-and-set on the run record (version i -> i+1,
last_iteration i-1 -> i), so two updaters racing on the same iteration (a retry and the original, or
two drivers) can never both commit. The loser answers with the winner's recorded result: its own
checkpoint had identical bytes, so nothing is lost either way.
"""

from __future__ import annotations

from ftg_common import layout
from ftg_common.errors import Conflict
from ftg_common.meta.base import MetaStore
from ftg_common.schemas import UpdateResult
from ftg_common.store.base import ObjectStore


def _recorded(store: ObjectStore, run_id: str, iteration: int) -> UpdateResult:
    prior = store.get_json(layout.update_key(run_id, iteration))
    return UpdateResult.model_validate({**prior, "already_committed": True})


def committed_result(store: ObjectStore, meta: MetaStore, run_id: str, iteration: int) -> UpdateResult | None:
    """The recorded result if iteration ``iteration`` is already committed, None if it may be trained now.

    Raises:
        Conflict: the run's policy version is not ``iteration`` (an update out of order).
    """
    run = meta.get_run(run_id)
    if run["last_iteration"] >= iteration:
        return _recorded(store, run_id, iteration)
    if run["version"] != iteration:
        raise Conflict(
            f"run {run_id} is at policy version {run['version']}; "
            f"iteration {iteration} needs version {iteration}",
            "iteration",
        )
    return None


def commit(store: ObjectStore, meta: MetaStore, run_id: str, result: UpdateResult) -> UpdateResult:
    """Record ``result`` and commit its version; answers what the committed update reported.

    Raises:
        Conflict: the version moved to something else while this update ran.
    """
    iteration = result.iteration
    # Recorded before the commit, so a retry that finds the iteration committed can answer the same.
    store.put_json(layout.update_key(run_id, iteration), result.model_dump(mode="json"))
    if meta.commit_version(run_id, iteration, iteration):
        return result
    if meta.get_run(run_id)["last_iteration"] >= iteration:
        return _recorded(store, run_id, iteration)
    raise Conflict(f"policy version of run {run_id} moved during the update", "iteration")
