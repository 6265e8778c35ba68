"""Batch assembly: GAE per shard, env-major flattening, shard concatenation, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from ftg_common.batch import assemble_batch, shard_keys
from ftg_common.errors import BadRequest
from ftg_common.layout import traj_key
from ftg_common.schemas import CollectResult


def _tiny_shard() -> dict[str, np.ndarray]:
    """T=3 steps of M=2 envs. Env 0 terminates at t=1; env 1 is truncated at t=0 with V(final obs) = 4.

    Each per-step array holds ``10*j + t`` for env j at step t, so the flattened order is readable.
    """
    tag = np.array([[0, 10], [1, 11], [2, 12]], dtype=np.float32)  # [T, M]
    return {
        "obs": np.stack([tag, -tag], axis=-1),  # [T, M, 2]
        "actions": tag.astype(np.int64),
        "log_probs": -tag / 100,
        "values": np.array([[0.5, 1.0], [1.0, 0.0], [0.0, 2.0]], dtype=np.float32),
        "rewards": np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=np.float32),
        "terminated": np.array([[0, 0], [1, 0], [0, 0]], dtype=np.uint8),
        "truncated": np.array([[0, 1], [0, 0], [0, 0]], dtype=np.uint8),
        "trunc_values": np.array([[0.0, 4.0], [0.0, 0.0], [0.0, 0.0]], dtype=np.float32),
        "last_values": np.array([2.0, 1.0], dtype=np.float32),
    }


def test_gae_and_env_major_order_by_hand() -> None:
    batch = assemble_batch([_tiny_shard()], gamma=0.5, gae_lambda=0.5)
    # Env-major: env 0's steps 0..2, then env 1's.
    assert batch["obs"].tolist() == [[0, 0], [1, -1], [2, -2], [10, -10], [11, -11], [12, -12]]
    assert batch["actions"].tolist() == [0, 1, 2, 10, 11, 12] and batch["actions"].dtype == np.int64
    np.testing.assert_allclose(batch["log_probs"], [0, -0.01, -0.02, -0.1, -0.11, -0.12], rtol=1e-6)
    assert batch["values"].tolist() == [0.5, 1.0, 0.0, 1.0, 0.0, 2.0]
    # gamma = lambda = 0.5, so an advantage carries 0.25 of the next one within an episode.
    # Env 0: next values 1.0, 0 (terminated), 2.0 (last_values)
    #   d0 = 1 + 0.5*1 - 0.5 = 1.0   d1 = 0 + 0 - 1 = -1.0   d2 = 1 + 0.5*2 - 0 = 2.0
    #   A2 = 2.0   A1 = -1.0 (episode ended: nothing carried)   A0 = 1.0 + 0.25*(-1.0) = 0.75
    # Env 1: next values 4.0 (truncated: V(final obs)), 2.0, 1.0 (last_values)
    #   d0 = 0 + 0.5*4 - 1 = 1.0     d1 = 2 + 0.5*2 - 0 = 3.0  d2 = 1 + 0.5*1 - 2 = -0.5
    #   A2 = -0.5  A1 = 3.0 + 0.25*(-0.5) = 2.875  A0 = 1.0 (episode ended: nothing carried)
    # Returns are A + V.
    assert batch["advantages"].tolist() == [0.75, -1.0, 2.0, 1.0, 2.875, -0.5]
    assert batch["returns"].tolist() == [1.25, 0.0, 2.0, 2.0, 2.875, 1.5]
    assert batch["advantages"].dtype == np.float32 and batch["returns"].dtype == np.float32


def test_shards_are_concatenated_in_order_each_with_its_own_bootstrap() -> None:
    # One env, one step: d = 1 + 0.5*2 - 0 = 2, from this shard's own last value.
    second: dict[str, np.ndarray] = {
        "obs": np.array([[[7.0, -7.0]]], dtype=np.float32),
        "actions": np.array([[7]], dtype=np.int64),
        "log_probs": np.array([[-0.5]], dtype=np.float32),
        "values": np.array([[0.0]], dtype=np.float32),
        "rewards": np.array([[1.0]], dtype=np.float32),
        "terminated": np.zeros((1, 1), dtype=np.uint8),
        "truncated": np.zeros((1, 1), dtype=np.uint8),
        "trunc_values": np.zeros((1, 1), dtype=np.float32),
        "last_values": np.array([2.0], dtype=np.float32),
    }
    batch = assemble_batch([_tiny_shard(), second], gamma=0.5, gae_lambda=0.5)
    assert batch["actions"].tolist() == [0, 1, 2, 10, 11, 12, 7]
    assert batch["advantages"].tolist() == [0.75, -1.0, 2.0, 1.0, 2.875, -0.5, 2.0]
    assert batch["returns"][-1] == 2.0 and batch["obs"].shape == (7, 2)


def test_box_actions_keep_their_action_axis() -> None:
    shard = _tiny_shard()
    shard["actions"] = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)  # [T, M, A]
    batch = assemble_batch([shard], gamma=0.5, gae_lambda=0.5)
    assert batch["actions"].shape == (6, 2)
    assert batch["actions"][:, 0].tolist() == [0, 4, 8, 2, 6, 10]  # env 0 at t=0,1,2, then env 1


def test_no_shards_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        assemble_batch([], gamma=0.99, gae_lambda=0.95)


def _result(shard: int, key: str | None = None) -> CollectResult:
    return CollectResult(
        key=key or traj_key("r", 4, shard),
        carry_key="c",
        shard=shard,
        steps=1,
        policy_version=4,
        episode_returns=[],
        episode_lengths=[],
    )


def test_shard_keys_come_in_shard_order_and_are_checked() -> None:
    assert shard_keys([_result(1), _result(0)], "r", 4, 2) == [traj_key("r", 4, 0), traj_key("r", 4, 1)]
    for shards in ([_result(0)], [_result(0), _result(0)], [_result(0), _result(2)]):
        with pytest.raises(BadRequest, match="exactly one result") as err:
            shard_keys(shards, "r", 4, 2)
        assert err.value.field == "shards"
    with pytest.raises(BadRequest, match="is not"):
        shard_keys([_result(0, traj_key("other", 4, 0))], "r", 4, 1)
