"""Evaluation measures the greedy policy, reproducibly: a retried or repeated evaluation of one policy
version reports the same returns, and they are the returns of the policy's greedy actions, not of
actions sampled from it (which would add exploration noise to every learning curve)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from ftg_common.envs.seeding import EVAL, derive_seed
from ftg_common.evaluation import run_episodes
from ftg_common.policy.numpy_policy import NumpyPolicy
from ftg_common.policy.spec import PolicySpec, load_policy_bytes, save_policy_bytes, tensor_shapes

RUN_SEED, VERSION, EPISODES = 3, 7, 6


def _seeds() -> list[int]:
    # The evaluator's seeds for a policy version: the same episodes every time that version is evaluated.
    return [derive_seed(RUN_SEED, EVAL, VERSION, k) for k in range(EPISODES)]


def _constant_policy(env_id: str, out: dict[str, list[float]]) -> bytes:
    """Stored weights of a policy that ignores its observation: every tensor zero except those in ``out``
    (the actor's output bias, which then is the logits or the Gaussian mean, or ``log_std``)."""
    env = gym.make(env_id)
    spec = PolicySpec.from_spaces(env.observation_space, env.action_space, net_arch=[8])
    tensors = {name: np.zeros(shape, np.float32) for name, shape in tensor_shapes(spec).items()}
    for name, value in out.items():
        tensors[name] = np.asarray(value, np.float32)
    return save_policy_bytes(spec, tensors)


def _load(data: bytes) -> NumpyPolicy:
    spec, tensors, _ = load_policy_bytes(data)
    return NumpyPolicy(spec, tensors)


def _returns_of_constant_action(env_id: str, action: int | np.ndarray) -> tuple[list[float], list[int]]:
    """Oracle: each evaluation seed's episode played with one fixed action throughout."""
    returns, lengths = [], []
    for seed in _seeds():
        env = gym.make(env_id)
        env.reset(seed=seed)
        total, n, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(action)
            total, n, done = total + float(reward), n + 1, terminated or truncated
        returns.append(total)
        lengths.append(n)
    return returns, lengths


# Discrete: p(push left) = 0.6 > p(push right) = 0.4, so the greedy action is always "left" while 40 % of
# samples push right. Box: mean torque 0 with std e, so every sample differs from the greedy action.
CASES = {
    "discrete": ("CartPole-v1", {"pi.out.bias": [np.log(0.6), np.log(0.4)]}, 0),
    "box": ("Pendulum-v1", {"log_std": [1.0]}, np.zeros(1, np.float32)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluation_plays_the_greedy_action(case: str) -> None:
    env_id, out, greedy = CASES[case]
    returns, lengths = run_episodes(env_id, {}, _load(_constant_policy(env_id, out)), _seeds())
    expected_returns, expected_lengths = _returns_of_constant_action(env_id, greedy)
    np.testing.assert_allclose(returns, expected_returns, rtol=1e-6)
    assert lengths.tolist() == expected_lengths


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluating_one_policy_version_twice_gives_identical_returns(case: str) -> None:
    env_id, out, _ = CASES[case]
    stored = _constant_policy(env_id, out)
    first = run_episodes(env_id, {}, _load(stored), _seeds())
    # A retry loads the version again; a warm instance also reuses the envs of its previous call.
    envs = [gym.make(env_id) for _ in range(EPISODES)]
    second = run_episodes(env_id, {}, _load(stored), _seeds(), envs)
    third = run_episodes(env_id, {}, _load(stored), _seeds(), envs)
    for again in (second, third):
        assert again[0].tolist() == first[0].tolist()
        assert again[1].tolist() == first[1].tolist()


def test_a_trained_looking_policy_is_evaluated_identically_twice() -> None:
    """Weights that depend on the observation (a random MLP), so the episodes differ from one another."""
    env = gym.make("CartPole-v1")
    spec = PolicySpec.from_spaces(env.observation_space, env.action_space, net_arch=[16, 16])
    rng = np.random.default_rng(5)
    stored = save_policy_bytes(
        spec,
        {name: rng.standard_normal(shape).astype(np.float32) for name, shape in tensor_shapes(spec).items()},
    )
    first_returns, first_lengths = run_episodes("CartPole-v1", {}, _load(stored), _seeds())
    second_returns, second_lengths = run_episodes("CartPole-v1", {}, _load(stored), _seeds())
    assert first_returns.tobytes() == second_returns.tobytes()
    assert first_lengths.tolist() == second_lengths.tolist()
