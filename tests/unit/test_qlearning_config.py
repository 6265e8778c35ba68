"""The ``algo: qlearning`` config: validation errors name their field; other families' digests stay put."""

from __future__ import annotations

import pytest

from ftg_common.config import DQNConfig, PPOConfig, QLearningConfig, RunConfig, SweepError, load_sweep

# Digests of default PPO and DQN run configs as stored before Q-learning existed.
PINNED = {"ppo": "573c0421a0fa8dc4", "dqn": "9db9056374cd7d72"}


@pytest.mark.parametrize("hp", [PPOConfig(), DQNConfig()], ids=["ppo", "dqn"])
def test_ppo_and_dqn_digests_do_not_change(hp: PPOConfig | DQNConfig) -> None:
    cfg = RunConfig.for_algo("x", 3, hp, sweep_id="s", config_name="c")
    assert cfg.digest() == PINNED[hp.algo]
    assert "qlearning" not in cfg.model_dump(mode="json")


def test_a_qlearning_run_config_round_trips_and_runs_off_policy() -> None:
    hp = QLearningConfig(total_steps=1024, train_freq=64, n_envs=2)
    cfg = RunConfig(run_id="q", seed=1, qlearning=hp)
    assert cfg.algo == "qlearning" and cfg.off_policy and cfg.off_policy_hparams is hp
    assert cfg.hparams.n_iterations == 8 and cfg.hparams.rollout_size == 128
    stored = cfg.to_stored()
    assert {"ppo", "dqn"}.isdisjoint(stored) and stored["qlearning"]["algo"] == "qlearning"
    assert RunConfig.from_stored(stored) == cfg
    assert RunConfig.for_algo("q", 1, hp) == cfg
    with pytest.raises(ValueError, match="not dqn"):
        _ = cfg.dqn_config


def _sweep(config: str) -> None:
    load_sweep(f"name: q\nconfigs:\n  tab: {config}\n").trial_configs()


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ("{algo: qlearning, learning_rate: 1.5}", r"configs\.tab\.learning_rate: "),
        ("{algo: qlearning, bins: [4, 0]}", r"configs\.tab\.bins: .*1\.\.1048576"),
        (
            "{algo: qlearning, low: [0, 0], high: [1, 0]}",
            r"configs\.tab\.high: .*dimension 1: 0\.0 is not above",
        ),
        ("{algo: qlearning, low: [0], high: [1, 2]}", r"configs\.tab\.high: .*2 edges but low has 1"),
        ("{algo: qlearning, low: [.nan], high: [1]}", r"configs\.tab\.low: .*finite"),
        ("{algo: qlearning, total_steps: 10}", r"configs\.tab: .*less than one iteration"),
        ("{algo: qlearning, gradient_steps: 4}", r"configs\.tab\.gradient_steps: "),
        (
            "{algo: sarsa}",
            r"configs\.tab\.algo: unsupported algorithm 'sarsa' \(supported: ppo, dqn, qlearning\)",
        ),
    ],
)
def test_invalid_qlearning_configs_name_their_field(config: str, match: str) -> None:
    with pytest.raises(SweepError, match=match):
        _sweep(config)
