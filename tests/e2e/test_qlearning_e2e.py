"""Tabular Q-learning through the four functions and the off-policy iteration template (embedded engine).

FrozenLake-v1 4x4 without slipping learns to reach the goal on every greedy episode; an interrupted
run, resumed, ends with the same table, counters and replay buffer, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from ftg_common import layout, runtime
from ftg_common.checkpoints import read_qtable_version
from ftg_common.config import QLearningConfig, RunConfig
from ftg_common.policy.qtable import load_qtable_policy
from tests.funcs import collect_and_aggregate, request_ref, straight_and_interrupted
from tests.funcs import driver as _driver

# 4 envs over 2 shards, 64 environment steps per iteration, 20 iterations. Every entry starts at 1.0, the
# largest return there is (optimistic initialisation): the greedy part of the behaviour tries each action
# until it is known to be worse, so the goal is found without waiting for a random walk to stumble on it.
FROZEN = dict(
    env_id="FrozenLake-v1",
    env_kwargs={"is_slippery": False},
    n_envs=4,
    shards=2,
    train_freq=16,
    total_steps=64 * 20,
    learning_rate=0.5,
    gamma=0.95,
    initial_q=1.0,
    exploration_fraction=0.5,
    exploration_final_eps=0.1,
    buffer_size=512,
    replay_batches=4,
    batch_size=32,
    eval_every_steps=64 * 10,
    eval_episodes=4,
)


def test_qlearning_learns_frozenlake_and_evaluates_greedy_episodes(services) -> None:
    cfg = RunConfig(run_id="frozen", seed=0, qlearning=QLearningConfig(**FROZEN))
    summary = _driver(cfg, services).drive()
    hp = cfg.hparams
    assert services.meta.get_run("frozen")["status"] == "finished"
    assert summary.steps == hp.total_steps
    # Every greedy evaluation episode of the final table reaches the goal (reward 1) the shortest way.
    record = runtime.store().get_json(layout.eval_key("frozen", hp.n_iterations - 1))
    assert record["version"] == hp.n_iterations
    assert record["returns"] == [1.0] * hp.eval_episodes and record["lengths"] == [6] * hp.eval_episodes
    assert summary.final_return == 1.0
    # Off-policy estimates of the greedy table from the epsilon-greedy shards that trained it.
    assert record["ope"] is not None and record["ope_error"] is None
    table = load_qtable_policy(runtime.store(), "frozen", hp.n_iterations).table
    assert table.shape == (16, 4)
    # Start to goal is 6 steps: the start's greedy value approaches gamma**5 (reward on the 6th step).
    assert table[0].max() == pytest.approx(hp.gamma**5, abs=0.02)


def test_an_interrupted_qlearning_run_resumes_bit_for_bit(services) -> None:
    hp = QLearningConfig(**{**FROZEN, "total_steps": 64 * 10, "buffer_size": 256, "eval_every_steps": 256})
    _, broken = straight_and_interrupted(services, hp, seed=5, n=4)
    assert services.meta.get_run("broken")["version"] == 4
    # A crash inside iteration 4: its shards collected and appended, its update never committed.
    collect_and_aggregate(broken, request_ref(broken, 4))

    _driver(broken, services).drive()
    assert services.meta.get_run("broken")["status"] == "finished"
    store, last = runtime.store(), hp.n_iterations
    for key in (layout.ckpt_weights_key, layout.ckpt_optim_key, layout.policy_key):
        a, b = store.get_tensors(key("straight", last)), store.get_tensors(key("broken", last))
        assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert store.get_json(layout.ckpt_state_key("straight", last)) == store.get_json(
        layout.ckpt_state_key("broken", last)
    )
    version = read_qtable_version(store, "broken", last)
    assert version.state.total_steps == hp.total_steps and version.state.n_updates > 0
    assert np.any(version.table != 0.0)
    assert services.meta.replay_head("straight") == services.meta.replay_head("broken")


@pytest.mark.slow
def test_a_killed_qlearning_sweep_resumes_bit_for_bit(tmp_path) -> None:
    """kill -9 of the whole sweep (driver and warm workers) mid-run; ``resume`` ends identical."""
    from tests.e2e.sweep_kill import straight_and_killed

    n_iter = 40
    hp = {
        **FROZEN,
        "algo": "qlearning",
        "total_steps": 64 * n_iter,
        "buffer_size": 640,
        "eval_every_steps": 640,
    }
    spec = {"name": "ql-kill", "seeds": [4], "configs": {"lake": hp}}
    ref, killed, at_kill = straight_and_killed(tmp_path, spec, seed=4, kill_after=8)
    assert at_kill is not None and at_kill[0] == "running" and 8 <= at_kill[1] < n_iter - 1
    assert killed.row(4) == ("finished", n_iter - 1)
    assert killed.version_bytes(4, n_iter) == ref.version_bytes(4, n_iter)
    assert killed.replay_arrays(4) == ref.replay_arrays(4)
