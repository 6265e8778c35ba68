"""Random streams of the rollout collector: every shard of an iteration explores its own episodes with its
own action noise, and a retried shard rewrites identical bytes.

Episode k of env j is reset with seed (run seed, EPISODE, global env index, k), where env j of shard s
has global index s * m + j for m envs per shard; actions are drawn from (run seed, ACTIONS, iteration,
shard). If two shards shared either stream, a run with K shards would collect K copies of one shard's
data, which trains silently worse rather than failing.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from ftg_common.envs.seeding import ACTIONS, EPISODE, derive_rng, derive_seed
from ftg_common.envs.vector import ShardEnvs
from ftg_common.policy.numpy_policy import NumpyPolicy
from ftg_common.policy.spec import PolicySpec, tensor_shapes
from ftg_common.rollout import Rollout, collect_rollout
from ftg_common.tensorio import encode

ENV = "CartPole-v1"
SEED = 11
M = 3  # envs per shard
STEPS = 48  # long enough for CartPole episodes to end and restart within the rollout


def _policy(seed: int = 0) -> NumpyPolicy:
    """A small random-weight policy: near-uniform over CartPole's two actions, so actions are noisy."""
    env = gym.make(ENV)
    spec = PolicySpec.from_spaces(env.observation_space, env.action_space, net_arch=[8])
    rng = np.random.default_rng(seed)
    return NumpyPolicy(
        spec, {k: 0.3 * rng.standard_normal(s).astype(np.float32) for k, s in tensor_shapes(spec).items()}
    )


def _reset_obs(episode_seed: int) -> np.ndarray:
    obs, _ = gym.make(ENV).reset(seed=episode_seed)
    return np.asarray(obs, dtype=np.float32)


def _shard(shard: int) -> ShardEnvs:
    envs = ShardEnvs(ENV, {}, M, run_seed=SEED, global_offset=shard * M)
    envs.start(None)
    return envs


def _collect(shard: int, iteration: int, envs: ShardEnvs | None = None) -> Rollout:
    """What the collector does for (iteration 0, shard): fresh episodes, actions from the shard's stream."""
    envs = envs if envs is not None else _shard(shard)
    return collect_rollout(envs, _policy(), STEPS, derive_rng(SEED, ACTIONS, iteration, shard))


def _bytes(rollout: Rollout, envs: ShardEnvs) -> tuple[bytes, bytes]:
    """The two objects a collector stores: its trajectory and the carry, as safetensors bytes."""
    carry = envs.carry()
    return encode(rollout.tensors()), encode(carry.arrays, carry.metadata())


@pytest.mark.parametrize("shard", [0, 1, 2])
def test_env_j_of_shard_s_starts_the_episode_of_global_env_s_times_m_plus_j(shard: int) -> None:
    envs = _shard(shard)
    for j in range(M):
        expected = _reset_obs(derive_seed(SEED, EPISODE, shard * M + j, 0))
        np.testing.assert_array_equal(envs.obs[j], expected, err_msg=f"shard {shard} env {j}")


def test_later_episodes_are_seeded_by_their_episode_index() -> None:
    envs = _shard(1)
    pushes_left = np.zeros(M, dtype=np.int64)  # CartPole falls within a few dozen steps
    restarted: dict[int, np.ndarray] = {}
    for _ in range(200):
        obs, _, terminated, truncated, _, _ = envs.step(pushes_left)
        for j in np.flatnonzero(terminated | truncated):
            restarted.setdefault(int(j), obs[j].copy())
        if len(restarted) == M:
            break
    assert sorted(restarted) == list(range(M))
    for j, obs in restarted.items():
        np.testing.assert_array_equal(obs, _reset_obs(derive_seed(SEED, EPISODE, M + j, 1)))


def test_shards_of_one_iteration_start_different_episodes() -> None:
    starts = np.concatenate([_shard(s).obs for s in range(3)])
    assert len({row.tobytes() for row in starts}) == 3 * M, "two envs of the run share an episode seed"


def test_collector_places_each_shards_envs_at_its_global_offset() -> None:
    from ftg_common.collector import shard_envs
    from ftg_common.config import PPOConfig, RunConfig

    cfg = RunConfig(
        run_id="streams",
        seed=SEED,
        ppo=PPOConfig(
            env_id=ENV, n_envs=2 * M, shards=2, n_steps=8, batch_size=2 * M * 8, total_steps=2 * M * 8
        ),
    )
    for shard in range(2):
        with shard_envs(cfg, shard) as envs:
            assert (envs.n_envs, envs.global_offset, envs.run_seed) == (M, shard * M, SEED)
            envs.start(None)
            np.testing.assert_array_equal(envs.obs, _shard(shard).obs)


def test_shards_draw_different_action_streams() -> None:
    # Same envs (same offset) for both, so only the action stream can tell the rollouts apart.
    a = collect_rollout(_shard(0), _policy(), STEPS, derive_rng(SEED, ACTIONS, 0, 0))
    b = collect_rollout(_shard(0), _policy(), STEPS, derive_rng(SEED, ACTIONS, 0, 1))
    assert not np.array_equal(a.actions, b.actions)
    assert not np.array_equal(a.log_probs, b.log_probs)


def test_iterations_draw_different_action_streams() -> None:
    a = collect_rollout(_shard(0), _policy(), STEPS, derive_rng(SEED, ACTIONS, 0, 0))
    b = collect_rollout(_shard(0), _policy(), STEPS, derive_rng(SEED, ACTIONS, 1, 0))
    assert not np.array_equal(a.actions, b.actions)


def test_shard_rollouts_of_one_iteration_differ() -> None:
    first, second = _collect(0, 0), _collect(1, 0)
    assert not np.array_equal(first.obs, second.obs)
    assert not np.array_equal(first.actions, second.actions)


@pytest.mark.parametrize("shard", [0, 1])
def test_rerunning_a_shard_writes_identical_bytes(shard: int) -> None:
    envs = _shard(shard)
    once = _bytes(_collect(shard, 0, envs), envs)
    fresh = _shard(shard)
    assert _bytes(_collect(shard, 0, fresh), fresh) == once
    # A warm instance reuses its env objects: restarting them must not leak the previous call's state.
    envs.start(None)
    assert _bytes(_collect(shard, 0, envs), envs) == once
