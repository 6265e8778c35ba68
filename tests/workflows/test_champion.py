"""Champion with evidence: the alias moves only when the new configuration beats the champion's.

Real sweeps, stores and MLflow (SQLite); the champion's evidence is re-read from its own sweep.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ftg_common.config import load_sweep
from tests.funcs import small_sweep

SWEEP = small_sweep("champ", {"good": {}, "slow": {"learning_rate": 0.00001}}, seeds=[0, 1])


def _submit(sweep_id: str) -> str:
    from ftg_common.settings import get_settings
    from workflows.sweep import finalize_trials_as_they_finish, open_services, submit

    console = Console(record=True, width=200)
    services = open_services(get_settings(), tracking=True)
    try:
        finalize_trials_as_they_finish(services)
        submit(load_sweep(SWEEP), services, console, sweep_id=sweep_id)
    finally:
        services.close()
    return console.export_text()


def _parent(client, sweep_id: str):  # type: ignore[no-untyped-def]
    exp = client.get_experiment_by_name("faastraingym")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`ftg.sweep_id` = '{sweep_id}'")
    (parent,) = [r for r in runs if r.data.tags.get("ftg.kind") == "sweep"]
    return parent


def test_champion_moves_only_on_evidence_and_versions_carry_their_statistics(ftg_env: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from ftg_common.settings import get_settings
    from workflows.sweep import finalize, open_services

    first = _submit("champ-1")
    mlflow.set_tracking_uri(f"sqlite:///{ftg_env}/mlflow.db")
    client = MlflowClient()
    champion = client.get_model_version_by_alias("ftg-champ", "champion")
    assert champion.tags["ftg.sweep_id"] == "champ-1"
    assert champion.tags["ftg.config"] in {"good", "slow"} and len(champion.tags["ftg.config_digest"]) == 16
    assert {"ftg.stats.final_iqm", "ftg.stats.final_return", "ftg.stats.seeds"} <= champion.tags.keys()
    other = {"good": "slow", "slow": "good"}[champion.tags["ftg.config"]]
    assert f"ftg.stats.p_improvement_vs.{other}" in champion.tags
    assert "champion: champ-1-" in first and "the first of ftg-champ)" in first
    # The output ends with the verdict on the pair.
    assert first.rstrip().splitlines()[-2].strip().startswith("verdicts (probability of improvement")
    assert "good" in first.rstrip().splitlines()[-1] and "slow" in first.rstrip().splitlines()[-1]
    parent = _parent(client, "champ-1")
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {
        "plots/learning_curves.png",
        "plots/performance_profile.png",
        "plots/probability_of_improvement.png",
    }
    assert "ab.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}

    # The same configurations and seeds again: the same returns, P = 0.5, so the champion stays.
    second = _submit("champ-2")
    kept = client.get_model_version_by_alias("ftg-champ", "champion")
    assert kept.version == champion.version
    line = f"kept champion {champion.tags['ftg.run_id']} (version {champion.version}): "
    assert line in second and "no decision at this number of seeds: P = 0.50" in second
    assert _parent(client, "champ-2").data.tags["ftg.champion_kept"] == champion.tags["ftg.run_id"]

    # Were the champion's own trials far worse, the second sweep's best would beat it for sure: it moves.
    services = open_services(get_settings(), tracking=True)
    try:
        for rec in services.meta.list_runs("champ-1"):
            summary = {**rec["extra"]["summary"], "final_return": -1000.0 - rec["extra"]["seed"]}
            services.meta.update_extra(rec["run_id"], {"summary": summary})
        console = Console(record=True, width=200)
        finalize("champ-2", services, console)
    finally:
        services.close()
    moved = client.get_model_version_by_alias("ftg-champ", "champion")
    assert moved.tags["ftg.sweep_id"] == "champ-2"
    assert "P = 1.00 [1.00, 1.00]" in moved.tags["ftg.stats.p_vs_previous_champion"]
    assert f"champion moved to {moved.tags['ftg.run_id']}" in console.export_text()
    assert _parent(client, "champ-2").data.tags["ftg.champion_run"] == moved.tags["ftg.run_id"]
