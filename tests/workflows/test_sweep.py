"""Sweep orchestration in-process: one failing trial does not stop the others, and is reported."""

from __future__ import annotations

import pytest
from rich.console import Console

from ftg_common.config import load_sweep
from tests.funcs import small_sweep

SWEEP = small_sweep(
    "mixed",
    {"good": {}, "broken": {"env_kwargs": {"no_such_kwarg": 1}}},
    seeds=[0],
    total_steps=1024,
    eval_every_steps=512,
)


def test_failing_trial_is_reported_and_the_others_complete(ftg_env) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from ftg_common.settings import get_settings
    from workflows.sweep import SweepFailed, open_services, submit, trial_rows

    services = open_services(get_settings(), tracking=True)
    console = Console(record=True, width=160)
    try:
        with pytest.raises(SweepFailed, match="broken") as err:
            submit(load_sweep(SWEEP), services, console, sweep_id="mixed-1")
        assert "no_such_kwarg" in str(err.value)
        rows = {r.config: r for r in trial_rows(services, "mixed-1")}
    finally:
        services.close()
    assert rows["good"].status == "finished" and rows["good"].steps == 1024
    assert rows["broken"].status == "failed"
    assert "A/B comparison" in console.export_text()  # the finished trials still get their table

    mlflow.set_tracking_uri(f"sqlite:///{ftg_env}/mlflow.db")
    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("faastraingym").experiment_id])
    status = {r.data.tags.get("ftg.config"): r.info.status for r in runs if "ftg.config" in r.data.tags}
    assert status == {"good": "FINISHED", "broken": "FAILED"}


GOOD_ONLY = small_sweep("early", {"good": {}}, seeds=[0, 1])


def test_models_logged_as_trials_finish_are_registered_once_and_serve_any_batch(ftg_env) -> None:
    import mlflow
    import numpy as np
    from mlflow.tracking import MlflowClient

    from ftg_common.settings import get_settings
    from workflows.sweep import finalize, finalize_trials_as_they_finish, open_services, submit

    services = open_services(get_settings(), tracking=True)
    try:
        finalize_trials_as_they_finish(services)
        submit(load_sweep(GOOD_ONLY), services, Console(record=True, width=160), sweep_id="early-1")
        finalize(
            "early-1", services, Console(record=True, width=160)
        )  # a second finalize (resume) adds nothing
    finally:
        services.close()

    mlflow.set_tracking_uri(f"sqlite:///{ftg_env}/mlflow.db")
    client = MlflowClient()
    versions = client.search_model_versions("name='ftg-early'")
    assert len(versions) == 2
    assert {v.run_id for v in versions} == {
        r.info.run_id
        for r in client.search_runs([client.get_experiment_by_name("faastraingym").experiment_id])
        if r.data.tags.get("ftg.config") == "good"
    }
    # Summary and sweep metrics: one row each, however often the sweep is finalized.
    runs = client.search_runs([client.get_experiment_by_name("faastraingym").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("ftg.kind") == "sweep"]
    for key in ("good.final_iqm", "good.reached", "good.median_steps_to_threshold"):
        assert len(client.get_metric_history(parent.info.run_id, key)) <= 1, key
    assert len(client.get_metric_history(parent.info.run_id, "good.final_iqm")) == 1
    for child in (r for r in runs if r.data.tags.get("ftg.config") == "good"):
        for key in ("final_return", "invocations", "wall_s"):
            assert len(client.get_metric_history(child.info.run_id, key)) == 1, key
    model = mlflow.pyfunc.load_model("models:/ftg-early@champion")
    for batch in (1, 5):
        assert np.asarray(model.predict(np.zeros((batch, 4), dtype=np.float32))).shape == (batch, 2)


def test_tracker_that_cannot_open_mlflow_fails_on_use_not_on_construction(ftg_env) -> None:
    from ftg_common.settings import Settings
    from workflows.tracking import Tracker, TrackingUnavailable

    tracker = Tracker(Settings(tracking_uri="no-such-scheme://nowhere"))
    tracker.log_metrics("run", {"x": 1.0}, step=0)
    tracker.flush()  # queued metrics are dropped, never waited on forever
    with pytest.raises(TrackingUnavailable, match="cannot open MLflow"):
        tracker.start_parent("sweep", {})
    tracker.close()


def test_resume_creates_the_mlflow_runs_a_crash_kept_submit_from_creating(ftg_env) -> None:
    from mlflow.tracking import MlflowClient

    from ftg_common.settings import get_settings
    from workflows import metric_names as mn
    from workflows.sweep import open_services, run_trials, submit

    # The trials ran and finished, but the process died before MLflow was ever opened.
    services = open_services(get_settings(), tracking=False)
    try:
        submit(load_sweep(GOOD_ONLY), services, Console(record=True, width=160), sweep_id="late-1")
        run_ids = services.meta.get_sweep("late-1")["runs"]
    finally:
        services.close()

    services = open_services(get_settings(), tracking=True)
    try:
        run_trials("late-1", run_ids, 2, services, Console(record=True, width=160))
        ids = {rid: services.meta.get_run(rid)["extra"]["mlflow_run_id"] for rid in run_ids}
    finally:
        services.close()
    client = MlflowClient(tracking_uri=f"sqlite:///{ftg_env}/mlflow.db")
    for rid, mlflow_id in ids.items():
        run = client.get_run(mlflow_id)
        assert run.data.tags["ftg.run_id"] == rid and run.info.status == "FINISHED"
        # 512 steps of 128 per iteration: the history is rebuilt from the stored records.
        assert [m.step for m in client.get_metric_history(mlflow_id, mn.ITERATIONS)] == [128, 256, 384, 512]
