"""Sweep configurations that the reliability benchmarks and the end-to-end tests run."""

from __future__ import annotations

from typing import Any

__all__ = ["ZOO_CARTPOLE"]

# The RL Zoo's PPO hyperparameters for CartPole-v1 (hyperparams/ppo.yml) as one config of a sweep file,
# in two collector shards; the Zoo's linear schedules are the config's defaults.
ZOO_CARTPOLE: dict[str, Any] = {
    "n_envs": 8,
    "n_steps": 32,
    "shards": 2,
    "batch_size": 256,
    "n_epochs": 20,
    "gamma": 0.98,
    "gae_lambda": 0.8,
    "learning_rate": 0.001,
    "ent_coef": 0.0,
}
