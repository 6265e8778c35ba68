"""A short DQN run on FrozenLake (not slippery) through the four functions, in-process."""

from __future__ import annotations

from typing import Any

from ftg_common import layout, runtime
from ftg_common.config import DQNConfig, RunConfig
from tests.funcs import post

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


def ref(cfg: RunConfig, iteration: int) -> dict[str, Any]:
    """The fields every request of iteration ``iteration`` of the run carries."""
    return {"run_id": cfg.run_id, "iteration": iteration, "config_digest": cfg.digest()}


def start_dqn_run(run_id: str, seed: int = 0, **kw: Any) -> RunConfig:
    """Freeze a FrozenLake DQN config (``kw`` overrides), create the run record and version 0."""
    cfg = RunConfig(run_id=run_id, seed=seed, dqn=DQNConfig(**{**FROZEN_LAKE_DQN, **kw}))
    runtime.store().put_json(layout.config_key(run_id), cfg.to_stored())
    runtime.meta().create_run(run_id)
    r = post("policy-updater", {**ref(cfg, 0), "mode": "init"})
    assert r.status == 200, r.body
    return cfg


def dqn_iteration(cfg: RunConfig, i: int) -> dict[str, Any]:
    """Collect, append to the replay buffer and update: the update's JSON result."""
    shards = []
    for s in range(cfg.hparams.shards):
        r = post("rollout-collector", {**ref(cfg, i), "shard": s})
        assert r.status == 200, r.body
        shards.append(r.json())
    agg = post("reward-aggregator", {**ref(cfg, i), "shards": shards})
    assert agg.status == 200, agg.body
    upd = post("policy-updater", {**ref(cfg, i), "replay": agg.json()})
    assert upd.status == 200, upd.body
    out: dict[str, Any] = upd.json()
    return out


def train_dqn_run(run_id: str, seed: int = 0, **kw: Any) -> RunConfig:
    """Every iteration of a FrozenLake DQN run; its last version is ``cfg.hparams.n_iterations``."""
    cfg = start_dqn_run(run_id, seed, **kw)
    for i in range(cfg.hparams.n_iterations):
        dqn_iteration(cfg, i)
    return cfg
