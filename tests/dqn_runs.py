"""A short DQN run on FrozenLake (not slippery) through the four functions, in-process."""

from __future__ import annotations

from typing import Any

from ftg_common import layout, runtime
from ftg_common.config import DQNConfig, RunConfig
from tests.funcs import collect_and_aggregate, post
from tests.funcs import request_ref as ref

FROZEN_LAKE_DQN: dict[str, Any] = dict(
    env_id="FrozenLake-v1",
    env_kwargs={"is_slippery": False},  # deterministic: the greedy policy either reaches the goal or not
    n_envs=4,
    shards=2,
    train_freq=16,
    gradient_steps=16,
    batch_size=32,
    learning_starts=256,
    buffer_size=5000,
    net_arch=[32],
    total_steps=4096,
    learning_rate=1e-3,
    exploration_fraction=0.6,
    exploration_final_eps=0.05,
    target_update_interval=64,
    gamma=0.9,
    eval_episodes=2,
    eval_every_steps=1024,
    threshold=1.0,
)


# A CartPole DQN run of 32-step iterations in two shards, training from the first iteration on.
SMALL_DQN: dict[str, Any] = dict(
    n_envs=2,
    shards=2,
    train_freq=16,
    gradient_steps=4,
    batch_size=8,
    learning_starts=16,
    buffer_size=64,
    net_arch=[16],
    total_steps=32 * 6,
    eval_episodes=2,
)


def start_dqn_run(run_id: str, seed: int = 0, base: dict[str, Any] = FROZEN_LAKE_DQN, **kw: Any) -> RunConfig:
    """Freeze a DQN config (``base``, FrozenLake unless told; ``kw`` overrides), create the run, version 0."""
    cfg = RunConfig(run_id=run_id, seed=seed, dqn=DQNConfig(**{**base, **kw}))
    runtime.store().put_json(layout.config_key(run_id), cfg.to_stored())
    runtime.meta().create_run(run_id)
    r = post("policy-updater", {**ref(cfg, 0), "mode": "init"})
    assert r.status == 200, r.body
    return cfg


def dqn_iteration(cfg: RunConfig, i: int) -> dict[str, Any]:
    """Collect, append to the replay buffer and update: the update's JSON result."""
    _, aggregate = collect_and_aggregate(cfg, ref(cfg, i))
    upd = post("policy-updater", {**ref(cfg, i), "replay": aggregate})
    assert upd.status == 200, upd.body
    out: dict[str, Any] = upd.json()
    return out


def train_dqn_run(run_id: str, seed: int = 0, **kw: Any) -> RunConfig:
    """Every iteration of a FrozenLake DQN run; its last version is ``cfg.hparams.n_iterations``."""
    cfg = start_dqn_run(run_id, seed, **kw)
    for i in range(cfg.hparams.n_iterations):
        dqn_iteration(cfg, i)
    return cfg
