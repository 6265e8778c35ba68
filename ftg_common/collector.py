"""The rollout-collector's steps around the pure rollout.

Its shard's envs, the env state carried from the previous iteration, and the objects it leaves in the
store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ftg_common import layout
from ftg_common.batch import EPISODE_LENGTHS, EPISODE_RETURNS
from ftg_common.config import RunConfig
from ftg_common.envs.vector import CarryMismatchError, EnvCarry, ShardEnvs
from ftg_common.errors import Conflict
from ftg_common.normalize import (
    NormalizeSettings,
    NormStats,
    begin_shard,
    observe_reset,
    shard_carry_from_tensors,
    shard_carry_to_tensors,
)
from ftg_common.rollout import Rollout, RolloutNorm
from ftg_common.store.base import ObjectStore
from ftg_common.warm import WarmPool

if TYPE_CHECKING:  # annotations only: a PPO collector never loads the off-policy rollout
    from ftg_common.rollout_offpolicy import OffPolicyRollout

__all__ = ["resume_envs", "rollout_norm", "save_shard", "shard_envs"]


def _build(env_id: str, kwargs_json: str, n_envs: int, seed: int, offset: int) -> ShardEnvs:
    return ShardEnvs(env_id, json.loads(kwargs_json), n_envs, seed, offset)


_ENVS: WarmPool[ShardEnvs] = WarmPool(_build, max_idle=16)


@contextmanager
def shard_envs(cfg: RunConfig, shard: int) -> Iterator[ShardEnvs]:
    """Shard ``shard``'s envs for the length of the block (reused by a warm instance).

    Their state is whatever the last call left: :func:`resume_envs` restores the run's.
    """
    hp = cfg.hparams
    m = hp.envs_per_shard
    with _ENVS.lend(hp.env_id, json.dumps(hp.env_kwargs, sort_keys=True), m, cfg.seed, shard * m) as envs:
        yield envs


def resume_envs(
    envs: ShardEnvs, store: ObjectStore, run_id: str, iteration: int, shard: int
) -> dict[str, np.ndarray] | None:
    """Start ``envs`` where the shard's collector of the previous iteration left its episodes.

    Iteration 0 starts fresh episodes.

    Returns:
        The carry's arrays (None at iteration 0), for what else it holds (normalisation state).

    Raises:
        KeyNotFoundError: the previous iteration left no carry for the shard.
        Conflict: the stored carry does not fit these envs (field ``shard``).
    """
    try:
        carry = None
        if iteration > 0:
            arrays, meta = store.get_tensors_with_metadata(layout.carry_key(run_id, iteration - 1, shard))
            carry = EnvCarry.from_stored(arrays, meta)
        envs.start(carry)
    except CarryMismatchError as exc:
        raise Conflict(str(exc), "shard") from exc
    return None if carry is None else carry.arrays


def rollout_norm(
    settings: NormalizeSettings,
    base: NormStats | None,
    envs: ShardEnvs,
    carried: dict[str, np.ndarray] | None,
) -> RolloutNorm:
    """What a normalising rollout of ``envs`` (already started) starts from.

    At the run's start (``carried`` None) the envs' first observations are added to the statistics,
    as SB3's ``VecNormalize.reset``; afterwards the carry holds the per-env discounted returns and the
    normalised observation the next step acts on.

    Raises:
        Conflict: the policy version holds no statistics (field ``iteration``), or the carry holds no
            normalisation state or one that does not fit the envs (field ``shard``).
    """
    if base is None:
        raise Conflict("the run normalises, but the acting policy version holds no statistics", "iteration")
    shape = (envs.obs_dim,)
    if carried is None:
        inc, _ = observe_reset(base, begin_shard(shape, envs.n_envs), envs.obs, settings)
    else:
        try:
            inc = begin_shard(shape, envs.n_envs, shard_carry_from_tensors(carried))
        except ValueError as exc:
            raise Conflict(f"stored carry: {exc}", "shard") from exc
    return RolloutNorm(base, settings, inc)


def save_shard(
    store: ObjectStore,
    run_id: str,
    iteration: int,
    shard: int,
    rollout: Rollout | OffPolicyRollout,
    envs: ShardEnvs,
) -> tuple[str, str]:
    """Write the shard's trajectory and the carry the next iteration resumes from.

    Besides the rollout's arrays the trajectory holds ``episode_returns`` [E] float64 and
    ``episode_lengths`` [E] int64 of the E episodes that finished in it, so the reward-aggregator
    reports episode statistics from the store, never from a caller's copy of the collector's answer.

    Returns:
        (trajectory key, carry key).
    """
    key = layout.traj_key(run_id, iteration, shard)
    tensors = {
        **rollout.tensors(),
        EPISODE_RETURNS: np.asarray(rollout.episode_returns, dtype=np.float64),
        EPISODE_LENGTHS: np.asarray(rollout.episode_lengths, dtype=np.int64),
    }
    # The policy that acts in iteration i is version i.
    store.put_tensors(key, tensors, metadata={"policy_version": str(iteration)})
    carry = envs.carry()
    carry_key = layout.carry_key(run_id, iteration, shard)
    arrays = carry.arrays
    inc = getattr(rollout, "norm_increment", None)
    if inc is not None:
        arrays = {**arrays, **shard_carry_to_tensors(inc)}
    store.put_tensors(carry_key, arrays, metadata=carry.metadata())
    return key, carry_key
