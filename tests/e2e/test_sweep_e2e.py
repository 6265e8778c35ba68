"""End to end: the CLI runs a real sweep through the DAG, the warm pool and the four functions,
CartPole-v1 is actually learned, and MLflow holds the parent/child runs and the champion model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.reliability.procs import scratch_stores_env
from benchmarks.reliability.sweep_specs import ZOO_CARTPOLE
from tests.e2e.sweep_cli import run_cli, sweep_mlflow_runs


@pytest.mark.slow
def test_sweep_learns_cartpole_and_is_tracked(tmp_path: Path) -> None:
    sweep = tmp_path / "e2e.yaml"
    sweep.write_text(
        json.dumps(
            {
                "name": "e2e",
                "seeds": [0, 1],
                "max_parallel": 2,
                "defaults": {
                    "env_id": "CartPole-v1",
                    "total_steps": 256 * 160,
                    "eval_every_steps": 2048,
                    "eval_episodes": 10,
                    "threshold": 475,
                },
                "configs": {"zoo": ZOO_CARTPOLE},
            }
        )
    )
    env = scratch_stores_env(tmp_path)
    out = run_cli(["submit", "--config", str(sweep)], env, tmp_path, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "A/B comparison" in out.stdout

    import mlflow

    client, parent, children = sweep_mlflow_runs(env["MLFLOW_TRACKING_URI"])
    assert len(children) == 2 and {c.data.params["seed"] for c in children} == {"0", "1"}
    for child in children:
        assert child.info.status == "FINISHED"
        # Learning, measured: every seed's evaluation reached the CartPole-v1 threshold (the RL Zoo's
        # "solved"), and the last one is still far above an untrained policy's ~20. The last one alone
        # is not the criterion: PPO's return on CartPole can dip after reaching 500, and where it ends
        # depends on float rounding that differs between CPU models (seed 1 solves it at 20,480 steps
        # and ends at 388 on an AMD EPYC host, at 500 on the hosts before it).
        history = client.get_metric_history(child.info.run_id, "eval/mean_return")
        assert max(m.value for m in history) >= 475, child.data.metrics
        assert child.data.metrics["steps_to_threshold"] <= 256 * 160, child.data.metrics
        assert child.data.metrics["final_return"] >= 200, child.data.metrics
        assert child.data.params["ppo.gamma"] == "0.98"
        assert child.data.tags["ftg.checkpoint_uri"].startswith(f"file://{tmp_path}/store/runs/")
        local = client.download_artifacts(child.info.run_id, "checkpoints.json", str(tmp_path))
        ckpts = json.loads(Path(local).read_text())
        assert len(ckpts) == 20 and ckpts[-1]["version"] == 160
        assert len(history) == 20 and max(m.step for m in history) == 256 * 160
    assert parent.info.status == "FINISHED"
    champion = client.get_model_version_by_alias("ftg-e2e", "champion")
    assert champion.run_id in {c.info.run_id for c in children}
    assert parent.data.tags["ftg.champion_model"] == "models:/ftg-e2e@champion"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"compare.md", "compare.json"} <= artifacts

    # The registered champion serves batches of observations; a pole falling right is pushed right.
    model = mlflow.pyfunc.load_model("models:/ftg-e2e@champion")
    obs = np.array([[0.0, 0.0, 0.1, 0.5], [0.0, 0.0, -0.1, -0.5], [0.0, 0.0, 0.12, 0.6]], dtype=np.float32)
    logits = np.asarray(model.predict(obs))
    assert logits.shape == (3, 2) and list(logits.argmax(axis=1)) == [1, 0, 1]

    sweep_id = parent.data.tags["ftg.sweep_id"]
    cmp = run_cli(["compare", sweep_id, "--json"], env, tmp_path, timeout=120)
    assert cmp.returncode == 0, cmp.stderr
    (row,) = json.loads(cmp.stdout)["configs"]
    finals = [c.data.metrics["final_return"] for c in children]
    # Both seeds solved it; with two seeds the interquartile mean is the mean.
    assert row["config"] == "zoo" and row["reached"] == 2
    assert row["final_iqm"] == pytest.approx(sum(finals) / 2)
    st = run_cli(["status", sweep_id], env, tmp_path, timeout=120)
    assert st.returncode == 0 and st.stdout.count("finished") == 2
