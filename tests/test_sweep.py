"""Sweep orchestration in-process: one failing trial does not stop the others, and is reported."""

from __future__ import annotations

import pytest
from rich.console import Console

from ftg_common.config import load_sweep

SWEEP = """
name: mixed
seeds: [0]
max_parallel: 2
defaults: {total_steps: 1024, n_envs: 4, n_steps: 32, shards: 2, batch_size: 64, n_epochs: 2,
           eval_every_steps: 512, eval_episodes: 2}
configs:
  good: {}
  broken: {env_kwargs: {no_such_kwarg: 1}}
"""


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
