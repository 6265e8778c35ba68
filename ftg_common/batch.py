"""One iteration's training batch from its trajectory shards: GAE per shard, then env-major flattening.

``assemble_batch`` and ``rollout_summary`` are pure (arrays in, arrays or numbers out); ``shard_keys``
checks the collectors' results that name the shards before anything is read, and ``read_trajectories``
checks that what it reads was collected for the iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ftg_common import layout
from ftg_common.algos.gae import compute_gae
from ftg_common.errors import BadRequest, Conflict
from ftg_common.schemas import CollectResult
from ftg_common.store.base import ObjectStore

__all__ = [
    "BATCH_KEYS",
    "EPISODE_LENGTHS",
    "EPISODE_RETURNS",
    "RolloutSummary",
    "assemble_batch",
    "read_trajectories",
    "rollout_summary",
    "shard_keys",
]

BATCH_KEYS = ("obs", "actions", "log_probs", "values", "advantages", "returns")
# Trajectory tensors the collector adds beside the rollout: the episodes that finished in it.
EPISODE_RETURNS = "episode_returns"
EPISODE_LENGTHS = "episode_lengths"


def _env_major(x: np.ndarray) -> np.ndarray:
    """[T, M, ...] -> [M*T, ...], each env's steps contiguous and in time order."""
    return x.swapaxes(0, 1).reshape(-1, *x.shape[2:])


def assemble_batch(
    trajectories: Sequence[dict[str, np.ndarray]], *, gamma: float, gae_lambda: float
) -> dict[str, np.ndarray]:
    """GAE(gamma, lambda) advantages and returns for each shard, flattened and concatenated.

    Each shard's GAE runs on its own arrays (a shard's envs are independent, and its rollout ends with
    its own bootstrap values). Flattening is env-major, as Stable-Baselines3's rollout buffer does: row
    ``offset_k + j*T_k + t`` of the batch is step ``t`` of env ``j`` of shard ``k``, where ``offset_k`` is
    the number of rows of the shards before ``k``.

    Args:
        trajectories: one dict per shard, in shard order, with time-major arrays:
            ``obs`` [T, M, D], ``actions`` [T, M] (discrete) or [T, M, A] (continuous),
            ``log_probs``, ``values``, ``rewards``, ``terminated``, ``truncated`` (0/1),
            ``trunc_values`` all [T, M], and ``last_values`` [M]. T and M may differ between shards.
        gamma: discount factor.
        gae_lambda: GAE's lambda.

    Returns:
        ``obs`` [B, D], ``actions`` [B] or [B, A], ``log_probs`` [B], ``values`` [B] in the stored dtypes,
        and ``advantages`` [B], ``returns`` [B] as float32, where B is the sum of T*M over the shards.

    Raises:
        ValueError: no trajectories, or arrays whose shapes disagree.
    """
    if not trajectories:
        raise ValueError("a batch needs at least one trajectory shard")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in BATCH_KEYS}
    for t in trajectories:
        gae = compute_gae(
            t["rewards"],
            t["values"],
            t["terminated"].astype(bool),
            t["truncated"].astype(bool),
            t["trunc_values"],
            t["last_values"],
            gamma=gamma,
            gae_lambda=gae_lambda,
        )
        for name in ("obs", "actions", "log_probs", "values"):
            parts[name].append(_env_major(t[name]))
        parts["advantages"].append(_env_major(gae.advantages))
        parts["returns"].append(_env_major(gae.returns))
    batch = {name: np.concatenate(arrays) for name, arrays in parts.items()}
    batch["advantages"] = batch["advantages"].astype(np.float32, copy=False)
    batch["returns"] = batch["returns"].astype(np.float32, copy=False)
    return batch


@dataclass(frozen=True)
class RolloutSummary:
    """What an iteration's trajectories hold: environment steps and the episodes that finished.

    Attributes:
        steps: transitions, the sum of T*M over the shards.
        episodes: episodes that finished during the iteration's rollouts.
        mean_return: their mean return, None when none finished.
    """

    steps: int
    episodes: int
    mean_return: float | None


def rollout_summary(trajectories: Sequence[dict[str, np.ndarray]]) -> RolloutSummary:
    """Steps and finished episodes of stored trajectories (the shapes of ``assemble_batch``'s input).

    Args:
        trajectories: one dict per shard with ``rewards`` [T, M], ``episode_returns`` [E] and
            ``episode_lengths`` [E] (E may be 0 and differ between shards).

    Raises:
        ValueError: a trajectory lacks its episode record, or the record is inconsistent (lengths that
            differ in count from the returns, non-positive lengths, non-finite returns).
    """
    steps, returns = 0, []
    for k, t in enumerate(trajectories):
        if EPISODE_RETURNS not in t or EPISODE_LENGTHS not in t:
            raise ValueError(f"trajectory {k} has no episode record ({EPISODE_RETURNS}, {EPISODE_LENGTHS})")
        rets, lens = t[EPISODE_RETURNS], t[EPISODE_LENGTHS]
        if rets.ndim != 1 or lens.shape != rets.shape:
            raise ValueError(
                f"trajectory {k}: episode returns {rets.shape} and lengths {lens.shape} disagree"
            )
        if not np.all(np.isfinite(rets)) or np.any(lens <= 0):
            raise ValueError(f"trajectory {k}: episode record holds non-finite returns or empty episodes")
        steps += int(t["rewards"].size)
        returns.append(rets.astype(np.float64, copy=False))
    every = np.concatenate(returns) if returns else np.zeros(0)
    mean = float(every.mean()) if every.size else None
    return RolloutSummary(steps=steps, episodes=int(every.size), mean_return=mean)


def read_trajectories(store: ObjectStore, keys: Sequence[str], iteration: int) -> list[dict[str, np.ndarray]]:
    """The trajectories at ``keys``, after checking each was collected by policy version ``iteration``.

    Raises:
        KeyNotFoundError: a shard was not collected.
        Conflict: a stored trajectory says another policy version collected it, or has no episode
            record (written by an older collector: collect the shard again); field ``shards``.
    """
    out = []
    for key in keys:
        arrays, meta = store.get_tensors_with_metadata(key)
        if meta.get("policy_version") != str(iteration):
            raise Conflict(
                f"{key} was collected by policy version {meta.get('policy_version')!r}, "
                f"not {iteration}: collect the shard again",
                "shards",
            )
        if EPISODE_RETURNS not in arrays or EPISODE_LENGTHS not in arrays:
            raise Conflict(f"{key} has no episode record: collect the shard again", "shards")
        out.append(arrays)
    return out


def shard_keys(shards: Sequence[CollectResult], run_id: str, iteration: int, n_shards: int) -> list[str]:
    """The trajectory keys of ``shards`` in shard order, after checking them against the run's layout.

    Keys in a request body are checked, never trusted as paths: each must be the layout's key for its
    shard of this run and iteration.

    Raises:
        BadRequest: the results are not exactly one per shard 0..n_shards-1, or a key is not the
            layout's (field ``shards``).
    """
    got = sorted(s.shard for s in shards)
    if got != list(range(n_shards)):
        raise BadRequest(
            f"shards must hold exactly one result for each of shards 0..{n_shards - 1}; got {got}", "shards"
        )
    keys = []
    for res in sorted(shards, key=lambda s: s.shard):
        expected = layout.traj_key(run_id, iteration, res.shard)
        if res.key != expected:
            raise BadRequest(f"shard {res.shard} key {res.key[:200]!r} is not {expected!r}", "shards")
        keys.append(expected)
    return keys
