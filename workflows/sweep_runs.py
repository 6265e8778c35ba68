"""A sweep's MLflow runs (one parent, one child per trial), found or created by FaaSTrainGym's own ids.

Opening MLflow takes about two seconds (imports and the SQL store), longer than a short trial's first
iterations, so ``submit`` does not wait for it: :func:`open_sweep_runs` runs on the tracker's job pool
while the trials start, and each driver holds a :class:`~workflows.tracking.RunRef` that resolves once
its child run exists (metrics of the iterations before that are kept and logged then).

Runs are looked up by their tags (``ftg.sweep_id``; ``ftg.kind = sweep`` for the parent, ``ftg.run_id``
for a trial) before any is created, so calling :func:`open_sweep_runs` again, after a crash that came
before some runs existed, creates only the missing ones. Each child's id is also merged into its trial's
run record (``extra.mlflow_run_id``), where ``resume`` and ``finalize`` read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ftg_common.meta.base import MetaStore

if TYPE_CHECKING:
    from workflows.tracking import Tracker

PARENT = ""
"""The key of the parent run in the mapping :func:`open_sweep_runs` returns."""


@dataclass(frozen=True)
class TrialTags:
    """What a trial's child run is created with.

    Attributes:
        run_id: the trial's FaaSTrainGym run id.
        config_name: its sweep configuration.
        seed: its seed.
        params: MLflow params logged when the run is created.
    """

    run_id: str
    config_name: str
    seed: int
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepTags:
    """What a sweep's parent run is created with: params and a text artifact (name -> text)."""

    params: Mapping[str, Any] = field(default_factory=dict)
    texts: Mapping[str, str] = field(default_factory=dict)


def _existing(tracker: Tracker, sweep_id: str) -> dict[str, str]:
    """Runs of the sweep already in MLflow: PARENT -> parent id, trial run id -> child id."""
    found: dict[str, str] = {}
    # sweep ids are validated ([a-z0-9-]), so quoting them in the filter is safe.
    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`ftg.sweep_id` = '{sweep_id}'", max_results=50000
    )
    for run in runs:
        tags = run.data.tags
        if tags.get("ftg.kind") == "sweep":
            found.setdefault(PARENT, run.info.run_id)
        elif "ftg.run_id" in tags:
            found.setdefault(tags["ftg.run_id"], run.info.run_id)
    return found


def open_sweep_runs(
    tracker: Tracker,
    meta: MetaStore,
    sweep_id: str,
    sweep: SweepTags,
    trials: Sequence[TrialTags],
) -> dict[str, str]:
    """Find or create the sweep's parent run and every trial's child run; idempotent.

    Args:
        tracker: the MLflow tracker (waits for MLflow to open).
        meta: where each trial's run record gets ``extra.mlflow_run_id``.
        sweep_id: the sweep.
        sweep: params and texts of the parent run, logged only when it is created.
        trials: the trials whose child runs are wanted.

    Returns:
        ``{PARENT: parent id, trial run id: child id, ...}``.
    """
    runs = _existing(tracker, sweep_id)
    if PARENT not in runs:
        parent = tracker.start_parent(sweep_id, {"ftg.sweep_id": sweep_id, "ftg.kind": "sweep"})
        tracker.log_params(parent, dict(sweep.params))
        for name, text in sweep.texts.items():
            tracker.log_text(parent, text, name)
        runs[PARENT] = parent
    for trial in trials:
        if trial.run_id not in runs:
            tags = {
                "ftg.sweep_id": sweep_id,
                "ftg.config": trial.config_name,
                "ftg.seed": str(trial.seed),
                "ftg.run_id": trial.run_id,
            }
            child = tracker.start_child(runs[PARENT], trial.run_id, tags)
            tracker.log_params(child, dict(trial.params))
            runs[trial.run_id] = child
        meta.update_extra(trial.run_id, {"mlflow_run_id": runs[trial.run_id]})
    return runs


def parent_run(tracker: Tracker, sweep_id: str, recorded: str | None = None) -> str | None:
    """The sweep's parent run id, or None if it has none.

    ``recorded`` is the id a sweep record made before runs were opened in the background holds.
    """
    return recorded or _existing(tracker, sweep_id).get(PARENT)
