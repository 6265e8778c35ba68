"""The CI gate of examples/ci: a short real sweep, passing for a better candidate, failing otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.reliability.procs import scratch_stores_env

ROOT = Path(__file__).resolve().parents[2]

# A candidate with the RL-Zoo CartPole settings against a "champion" that barely learns (a learning rate
# a thousand times smaller): 8,192 steps separate them on every seed.
SWEEP = """
name: gate-test
seeds: [0, 1, 2]
max_parallel: 2
defaults:
  env_id: CartPole-v1
  total_steps: 8192
  eval_every_steps: 2048
  eval_episodes: 5
  threshold: 475
  n_envs: 8
  n_steps: 32
  shards: 2
  batch_size: 256
  n_epochs: 20
  gamma: 0.98
  gae_lambda: 0.8
  ent_coef: 0.0
configs:
  candidate: {learning_rate: 0.001}
  champion: {learning_rate: 0.000001}
"""


@pytest.mark.slow
def test_gate_passes_a_better_candidate_and_fails_a_worse_one(tmp_path: Path) -> None:
    (tmp_path / "gate.yaml").write_text(SWEEP)
    env = scratch_stores_env(tmp_path, tracking=False)
    gate = [sys.executable, str(ROOT / "examples" / "ci" / "gate.py"), "--config", "gate.yaml"]
    run = subprocess.run(
        [*gate, "--candidate", "candidate", "--report", "gate.json", "--plots", "plots"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "gate passed: candidate beats champion: P = 1.00 [1.00, 1.00]" in run.stderr
    report = json.loads((tmp_path / "gate.json").read_text())
    (pair,) = report["probability_of_improvement"]
    assert pair["winner"] == "candidate" and pair["ci_low"] > 0.5
    assert (tmp_path / "plots" / "learning_curves.png").exists()
    # No tracking unless asked: the gate needs no MLflow.
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()

    # The same sweep gating the other way: compare's exit code fails the job.
    (sweep_id,) = report["sweeps"]
    cli = [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py")]
    worse = subprocess.run(
        [*cli, "compare", sweep_id, "--json", "--require-winner", "champion"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worse.returncode == 1 and "gate failed: champion is not better" in worse.stderr
    # A sweep that cannot run is an error (2), not a pass.
    broken = subprocess.run(
        [*gate, "--candidate", "candidate", "--total-steps", "-5"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert broken.returncode == 2 and "the sweep failed" in broken.stderr
