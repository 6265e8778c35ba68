"""DQNConfig: SB3 names, RL-Zoo CartPole defaults, field-named errors, the ppo|dqn union."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from ftg_common.config import (
    AlgoConfig,
    DQNConfig,
    PPOConfig,
    RunConfig,
    SweepError,
    validate_algo_config,
)


def test_defaults_are_the_rl_zoo_cartpole_hyperparameters() -> None:
    c = DQNConfig()
    assert c.algo == "dqn" and c.env_id == "CartPole-v1"
    assert (c.learning_rate, c.batch_size, c.buffer_size, c.learning_starts) == (2.3e-3, 64, 100_000, 1000)
    assert (c.gamma, c.target_update_interval, c.train_freq, c.gradient_steps) == (0.99, 10, 256, 128)
    assert (c.exploration_fraction, c.exploration_initial_eps, c.exploration_final_eps) == (0.16, 1.0, 0.04)
    assert (c.net_arch, c.total_steps, c.tau, c.max_grad_norm) == ([256, 256], 50_000, 1.0, 10.0)
    assert (c.n_envs, c.shards, c.activation, c.adam_eps) == (1, 1, "relu", 1e-8)


def test_iteration_arithmetic_follows_sb3() -> None:
    c = DQNConfig()
    # SB3 keeps collecting while fewer than total_timesteps were taken: 196 collections of 256 for 5e4.
    assert (c.rollout_size, c.n_iterations, c.eval_every_iterations) == (256, 196, 8)
    assert c.gradient_steps_per_iteration == 128
    minus_one = DQNConfig(n_envs=4, shards=2, train_freq=8, gradient_steps=-1, total_steps=64)
    assert minus_one.gradient_steps_per_iteration == 32 and minus_one.envs_per_shard == 2


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"buffer_size": 0}, "buffer_size"),
        ({"tau": 1.5}, "tau"),
        ({"gradient_steps": 0}, "gradient_steps"),
        ({"gradient_steps": -2}, "gradient_steps"),
        ({"exploration_final_eps": 1.2}, "exploration_final_eps"),
        ({"exploration_fraction": 0}, "exploration_fraction"),
        ({"train_freq": [4, "episode"]}, "train_freq"),
        ({"net_arch": [0]}, "net_arch"),
        ({"learning_starts": -1}, "learning_starts"),
        ({"n_steps": 32}, "n_steps"),  # a PPO field is not a DQN field
    ],
)
def test_errors_name_the_field(patch: dict[str, object], field: str) -> None:
    with pytest.raises(SweepError, match=rf"configs\.d\.{field}"):
        validate_algo_config({"algo": "dqn", **patch}, prefix="configs.d")


def test_cross_field_errors_say_what_disagrees() -> None:
    with pytest.raises(SweepError, match="divisible by shards"):
        validate_algo_config({"algo": "dqn", "n_envs": 3, "shards": 2})
    with pytest.raises(SweepError, match="exceeds buffer_size"):
        validate_algo_config({"algo": "dqn", "batch_size": 128, "buffer_size": 64})
    with pytest.raises(SweepError, match="less than one iteration"):
        validate_algo_config({"algo": "dqn", "total_steps": 100})


def test_train_freq_accepts_the_sb3_step_tuple() -> None:
    assert DQNConfig(train_freq=[16, "step"]).train_freq == 16  # type: ignore[arg-type]


def test_algo_selects_the_model_and_absent_algo_is_ppo() -> None:
    assert isinstance(validate_algo_config({}), PPOConfig)
    assert isinstance(validate_algo_config({"algo": "dqn"}), DQNConfig)
    with pytest.raises(SweepError, match=r"configs\.x\.algo: unsupported algorithm 'a2c'"):
        validate_algo_config({"algo": "a2c"}, prefix="configs.x")
    adapter: TypeAdapter[PPOConfig | DQNConfig] = TypeAdapter(AlgoConfig)
    assert isinstance(adapter.validate_python({"n_envs": 8}), PPOConfig)
    assert isinstance(adapter.validate_python({"algo": "dqn"}), DQNConfig)
    # Round trips: a PPO dump has no algo (digest compatibility) and still reads back as PPO.
    assert adapter.validate_python(PPOConfig().model_dump()) == PPOConfig()
    assert adapter.validate_python(DQNConfig().model_dump()) == DQNConfig()
    with pytest.raises(ValidationError, match="unsupported algorithm"):
        adapter.validate_python({"algo": "sac"})


def test_ppo_config_digests_are_unchanged_by_the_algo_field() -> None:
    # Values computed with the config module before DQN existed: stored runs keep verifying.
    assert "algo" not in PPOConfig().model_dump()
    assert RunConfig(run_id="r1", seed=0, ppo=PPOConfig()).digest() == "e76940bd0aa1ef1d"
    cfg = RunConfig(run_id="r1", seed=3, ppo=PPOConfig(gamma=0.99, n_envs=4, batch_size=64))
    assert cfg.digest() == "1463e95f28084beb"
