"""Environment carry-over between stateless invocations must be exact, for both codecs."""

from __future__ import annotations

import numpy as np
import pytest

from ftg_common.envs.factory import UnknownEnvError, validate_env
from ftg_common.envs.vector import REPLAY_CODEC, STATE_CODEC, CarryMismatchError, EnvCarry, ShardEnvs


def _actions(envs: ShardEnvs, rng: np.random.Generator) -> np.ndarray:
    space = envs.envs[0].action_space
    if envs.box_actions:
        return rng.uniform(space.low, space.high, size=(envs.n_envs, *space.shape)).astype(np.float32)
    return rng.integers(0, space.n, size=envs.n_envs)


def _trace(envs: ShardEnvs, actions: list[np.ndarray]) -> list[tuple]:
    out = []
    for a in actions:
        obs, r, te, tr, final, finished = envs.step(a)
        out.append((obs.copy(), r.copy(), te.copy(), tr.copy(), final.copy(), list(finished)))
    return out


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x[:5], y[:5], strict=True):
            np.testing.assert_array_equal(u, v)
        assert x[5] == y[5]


@pytest.mark.parametrize(
    ("env_id", "codec", "steps"),
    [
        ("CartPole-v1", STATE_CODEC, 40),
        ("CartPole-v1", REPLAY_CODEC, 40),
        (
            "Pendulum-v1",
            STATE_CODEC,
            230,
        ),  # crosses Pendulum's 200-step time limit: truncation survives the carry
        ("Pendulum-v1", REPLAY_CODEC, 150),
        ("Acrobot-v1", STATE_CODEC, 30),
    ],
)
def test_carried_envs_continue_exactly_like_uninterrupted_ones(env_id: str, codec: str, steps: int) -> None:
    rng = np.random.default_rng(7)
    a = ShardEnvs(env_id, {}, 3, run_seed=11, global_offset=3)
    a.codec = codec
    a.start(None)
    prefix = [_actions(a, rng) for _ in range(steps)]
    _trace(a, prefix)
    carry = a.carry()
    assert carry.codec == codec
    suffix = [_actions(a, rng) for _ in range(steps)]
    expected = _trace(a, suffix)

    b = ShardEnvs(env_id, {}, 3, run_seed=11, global_offset=3)
    b.codec = codec
    stored = EnvCarry.from_stored(carry.arrays, carry.metadata())
    b.start(stored)
    np.testing.assert_array_equal(b.ep_length, carry.arrays["ep_length"])
    _assert_same(_trace(b, suffix), expected)


def test_pendulum_episode_longer_than_a_rollout_is_truncated_at_its_time_limit() -> None:
    """Rollouts of 64 steps; the 200-step time limit must still truncate the episode at step 200."""
    envs = ShardEnvs("Pendulum-v1", {}, 1, run_seed=0, global_offset=0)
    envs.start(None)
    lengths, carry = [], None
    for _ in range(4):
        fresh = ShardEnvs("Pendulum-v1", {}, 1, run_seed=0, global_offset=0)
        fresh.start(carry)
        for _ in range(64):
            _, _, te, tr, _, finished = fresh.step(np.zeros((1, 1), np.float32))
            lengths += [n for _, n in finished]
            assert not te.any()
        carry = fresh.carry()
    assert lengths == [200]


def test_episode_seeds_do_not_depend_on_sharding() -> None:
    whole = ShardEnvs("CartPole-v1", {}, 4, run_seed=3, global_offset=0)
    first = whole.start(None).copy()
    half = ShardEnvs("CartPole-v1", {}, 2, run_seed=3, global_offset=2)
    np.testing.assert_array_equal(half.start(None), first[2:])
    other_seed = ShardEnvs("CartPole-v1", {}, 4, run_seed=4, global_offset=0)
    assert not np.array_equal(other_seed.start(None), first)


def test_carry_of_another_shape_is_refused() -> None:
    a = ShardEnvs("CartPole-v1", {}, 2, run_seed=0, global_offset=0)
    a.start(None)
    b = ShardEnvs("CartPole-v1", {}, 3, run_seed=0, global_offset=0)
    with pytest.raises(CarryMismatchError, match="obs"):
        b.start(a.carry())
    with pytest.raises(CarryMismatchError, match="codec"):
        EnvCarry.from_stored(a.carry().arrays, {"codec": "pickle"})


def test_unknown_or_unsupported_envs_are_named() -> None:
    with pytest.raises(UnknownEnvError, match="CartPol-v1"):
        validate_env("CartPol-v1")
    # Discrete observations are one-hot encoded now: the toy-text envs validate.
    validate_env("FrozenLake-v1").close()


@pytest.mark.parametrize(
    "env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1"]
)
def test_classic_control_envs_carry_their_state_not_a_replay(env_id: str) -> None:
    # Replaying a 500-step episode at every invocation costs more than the rollout itself.
    envs = ShardEnvs(env_id, {}, 2, run_seed=0, global_offset=0)
    assert envs.codec == STATE_CODEC
    envs.start(None)
    carry = envs.carry()
    assert carry.codec == STATE_CODEC and carry.arrays["state"].shape[0] == 2
