"""Sweep files: a wrong key or value is reported by its field path, by the loader and by the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ftg_common.config import PPOConfig, RunConfig, SweepError, load_sweep

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
name: demo
seeds: [0, 1]
defaults: {env_id: CartPole-v1, total_steps: 4096}
configs:
  a: {n_envs: 4, n_steps: 32, batch_size: 64}
  b: {n_envs: 2, n_steps: 64, batch_size: 128, learning_rate: 0.0003}
"""


def test_default_sweep_file_is_valid_and_describes_the_ab_test() -> None:
    sweep = load_sweep((ROOT / "sweeps" / "cartpole_ab.yaml").read_text())
    trials = sweep.trial_configs()
    assert set(trials) == {"zoo", "cleanrl"} and sweep.seeds == [0, 1, 2]
    zoo = trials["zoo"]
    assert (zoo.n_envs, zoo.n_steps, zoo.batch_size, zoo.n_epochs) == (8, 32, 256, 20)
    assert (zoo.gamma, zoo.gae_lambda, zoo.learning_rate, zoo.ent_coef) == (0.98, 0.8, 1e-3, 0.0)
    assert zoo.lr_schedule == zoo.clip_schedule == "linear" and zoo.total_steps == 100_000


def test_defaults_merge_under_each_config() -> None:
    trials = load_sweep(GOOD).trial_configs()
    assert trials["a"].total_steps == trials["b"].total_steps == 4096
    assert trials["b"].learning_rate == 0.0003 and trials["a"].learning_rate == PPOConfig().learning_rate


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        (("a: {n_envs: 4,", "a: {n_env: 4,"), "configs.a.n_env"),
        (("learning_rate: 0.0003", "learning_rate: fast"), "configs.b.learning_rate"),
        (("learning_rate: 0.0003", "learning_rate: -1"), "configs.b.learning_rate"),
        (("seeds: [0, 1]", "seeds: [0, 0]"), "seeds"),
        (("name: demo", "name: Demo/../x"), "name"),
        (("name: demo", "nmae: demo"), "nmae"),
        (("batch_size: 64}", "batch_size: 4096}"), "batch_size"),
        (("  a: {", "  A B: {"), "config name"),
    ],
)
def test_errors_name_the_field(patch: tuple[str, str], needle: str) -> None:
    with pytest.raises(SweepError, match=needle.replace(".", r"\.")):
        load_sweep(GOOD.replace(*patch))


def test_not_yaml_or_not_a_mapping() -> None:
    with pytest.raises(SweepError, match="YAML"):
        load_sweep("name: [unclosed")
    with pytest.raises(SweepError, match="mapping"):
        load_sweep("- 1\n- 2\n")


def test_config_digest_is_stable_and_sensitive() -> None:
    a = RunConfig(run_id="r1", seed=0, ppo=PPOConfig())
    assert a.digest() == RunConfig(run_id="r1", seed=0, ppo=PPOConfig()).digest()
    assert a.digest() != RunConfig(run_id="r1", seed=0, ppo=PPOConfig(gamma=0.99)).digest()
    assert RunConfig.from_stored(a.to_stored()) == a
    tampered = {**a.to_stored(), "seed": 1}
    with pytest.raises(ValueError, match="digest"):
        RunConfig.from_stored(tampered)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_cli_rejects_a_bad_sweep_file_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("n_steps: 64", "n_stepz: 64"))
    proc = _cli("submit", "--config", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "configs.b.n_stepz" in proc.stderr
    unknown_env = tmp_path / "env.yaml"
    unknown_env.write_text(GOOD.replace("env_id: CartPole-v1", "env_id: CartPole-v9"))
    proc = _cli("submit", "--config", str(unknown_env), cwd=tmp_path)
    assert proc.returncode == 2 and "env_id" in proc.stderr and "CartPole-v9" in proc.stderr
    proc = _cli("submit", "--config", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr
    assert not (tmp_path / ".ftg").exists()  # nothing was started


def test_cli_status_and_compare_of_unknown_ids(tmp_path: Path) -> None:
    proc = _cli("status", "nope", cwd=tmp_path)
    assert proc.returncode == 2 and "nope" in proc.stderr
    proc = _cli("compare", "nope", cwd=tmp_path)
    assert proc.returncode == 2 and "nope" in proc.stderr
    proc = _cli("resume", "../../etc", cwd=tmp_path)
    assert proc.returncode == 2


def test_iterations_cover_total_steps_like_sb3() -> None:
    # SB3 keeps collecting while fewer than total_timesteps were taken: 391 rollouts of 256 for 1e5.
    assert PPOConfig(total_steps=100_000, n_envs=8, n_steps=32).n_iterations == 391
    assert PPOConfig(total_steps=4096, n_envs=8, n_steps=32, batch_size=256).n_iterations == 16
    assert PPOConfig(eval_every_steps=2048, n_envs=8, n_steps=32).eval_every_iterations == 8
