"""The latency-bound benchmark env: registered, CartPole's dynamics, and a wait before every step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from ftg_common.envs.factory import make_env, validate_env
from ftg_common.envs.slow import SLOW_CARTPOLE_ID, STEP_SECONDS, SlowCartPole
from ftg_common.envs.vector import STATE_CODEC, ShardEnvs


class RecordingSleep:
    """Stands in for ``time.sleep``: records what was asked instead of waiting (no wall-clock test)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def test_slow_cartpole_is_registered_and_valid() -> None:
    assert SLOW_CARTPOLE_ID in gym.envs.registry
    env = validate_env(SLOW_CARTPOLE_ID)
    assert env.spec is not None and env.spec.max_episode_steps == 500
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == 2
    assert env.observation_space.shape == (4,)


def test_slow_cartpole_steps_like_cartpole_and_waits_each_step() -> None:
    sleep = RecordingSleep()
    slow = make_env(SLOW_CARTPOLE_ID, {"sleep": sleep})
    plain = make_env("CartPole-v1")
    obs_slow, _ = slow.reset(seed=3)
    obs_plain, _ = plain.reset(seed=3)
    np.testing.assert_array_equal(obs_slow, obs_plain)
    steps = 0
    for action in [0, 1, 1, 0, 1, 0, 0, 1] * 4:
        a = slow.step(action)
        b = plain.step(action)
        steps += 1
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
        if a[2] or a[3]:
            break
    assert len(sleep.calls) == steps
    assert all(s >= 0.002 for s in sleep.calls)
    assert STEP_SECONDS >= 0.002


def test_reset_does_not_wait_and_zero_wait_never_sleeps() -> None:
    sleep = RecordingSleep()
    env = SlowCartPole(step_seconds=0.0, sleep=sleep)
    env.reset(seed=0)
    env.step(1)
    assert sleep.calls == []
    with pytest.raises(ValueError):
        SlowCartPole(step_seconds=-1.0)


def test_shard_carries_slow_cartpole_by_its_physical_state() -> None:
    # The rollout path restores CartPole's state between invocations; the wrapper must not hide it.
    envs = ShardEnvs(SLOW_CARTPOLE_ID, {"sleep": RecordingSleep()}, n_envs=2, run_seed=0, global_offset=0)
    assert envs.codec == STATE_CODEC
    envs.start(None)
    envs.step(np.array([0, 1]))
    assert envs.carry().arrays["state"].shape == (2, 4)
