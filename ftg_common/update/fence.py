"""The version fence: the one place that decides whether an update of iteration i may commit.

Policy version i+1 is committed by compare-and-set on the run record (version i -> i+1,
last_iteration i-1 -> i), so two updaters racing on the same iteration (a retry and the original, or
two drivers) can never both commit. The loser answers with the winner's recorded result: its own
checkpoint had identical bytes, so nothing is lost either way.

The commit records, in the same atomic step, the SHA-256 of every object the version wrote (its
checkpoint, its policy file and the iteration's ``update.json``), so ``verify`` can later tell an intact
version from a damaged one. Version 0 is written by the updater's ``init`` mode, outside the fence; its
digests are recorded by :func:`record_initial_version`, or at the latest when version 1 commits.
"""

from __future__ import annotations

from collections.abc import Mapping

from ftg_common import checkpoints, layout
from ftg_common.checkpoints import VersionKeys
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


def record_initial_version(meta: MetaStore, run_id: str, keys: VersionKeys) -> bool:
    """Record the digests of version 0 as ``init`` wrote it; the first record stays.

    Returns:
        True if recorded now; False if version 0 already had a record.
    """
    return meta.record_version_digests(run_id, 0, keys.digests)


def commit(
    store: ObjectStore,
    meta: MetaStore,
    run_id: str,
    result: UpdateResult,
    digests: Mapping[str, str] | None = None,
) -> UpdateResult:
    """Record ``result`` and commit its version with the digests of what it wrote.

    Args:
        store: the object store holding the new version.
        meta: the metadata store holding the run record.
        run_id: the run.
        result: the update's result; ``result.iteration`` is the iteration trained on.
        digests: the new version's object digests as ``checkpoints.write_version`` answered them
            (``VersionKeys.digests``). Without them the version is read back, checked and hashed.

    Returns:
        What the committed update reported (this one's, or the winner's if another committed first).

    Raises:
        Conflict: the version moved to something else while this update ran.
        CorruptObjectError: without ``digests``, an object of the new version reads back damaged;
            nothing is committed.
    """
    iteration = result.iteration
    written = (
        dict(digests) if digests is not None else checkpoints.stored_digests(store, run_id, iteration + 1)
    )
    if iteration == 0 and meta.version_digests(run_id, 0) is None:
        # Version 0 was written by init, outside the fence; it has been read (and checked) since.
        meta.record_version_digests(run_id, 0, checkpoints.stored_digests(store, run_id, 0))
    # Recorded before the commit, so a retry that finds the iteration committed can answer the same.
    update = layout.update_key(run_id, iteration)
    written[update] = store.put_json(update, result.model_dump(mode="json"))
    if meta.commit_version(run_id, iteration, iteration, written):
        return result
    if meta.get_run(run_id)["last_iteration"] >= iteration:
        return _recorded(store, run_id, iteration)
    raise Conflict(f"policy version of run {run_id} moved during the update", "iteration")
