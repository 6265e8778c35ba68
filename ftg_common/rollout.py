"""On-policy rollout of one shard: no I/O, numpy only (the rollout path never imports torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftg_common.envs.vector import ShardEnvs
from ftg_common.policy.numpy_policy import NumpyPolicy


@dataclass
class Rollout:
    """T steps of M envs, time-major, as sampled by the behaviour policy.

    Attributes:
        obs: [T, M, obs_dim] float32 observation each action was taken in.
        actions: [T, M] int64 (discrete) or [T, M, action_dim] float32 (box).
        log_probs: [T, M] float32 log pi(a|s) at collection time.
        values: [T, M] float32 V(obs).
        rewards: [T, M] float32.
        terminated: [T, M] bool.
        truncated: [T, M] bool (time limit, and not also terminated).
        trunc_values: [T, M] float32 V(final obs) where truncated, zero elsewhere.
        last_values: [M] float32 V(obs after the last step).
        episode_returns: returns of the episodes that finished during the rollout.
        episode_lengths: lengths of those episodes, in the same order.
    """

    obs: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray
    values: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    trunc_values: np.ndarray
    last_values: np.ndarray
    episode_returns: list[float]
    episode_lengths: list[int]

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays as a trajectory object stores them (bool flags as uint8)."""
        return {
            "obs": self.obs,
            "actions": self.actions,
            "log_probs": self.log_probs,
            "values": self.values,
            "rewards": self.rewards,
            "terminated": self.terminated.astype(np.uint8),
            "truncated": self.truncated.astype(np.uint8),
            "trunc_values": self.trunc_values,
            "last_values": self.last_values,
        }


def collect_rollout(envs: ShardEnvs, policy: NumpyPolicy, n_steps: int, rng: np.random.Generator) -> Rollout:
    """Step ``envs`` (already started) ``n_steps`` times with actions sampled from ``policy``.

    ``policy`` is a NumpyPolicy: ``act(obs, rng) -> (actions, values, log_probs)`` and ``value(obs)``.
    """
    m, d = envs.n_envs, envs.obs_dim
    obs_buf = np.empty((n_steps, m, d), dtype=np.float32)
    act_buf: np.ndarray | None = None
    logp_buf = np.empty((n_steps, m), dtype=np.float32)
    val_buf = np.empty((n_steps, m), dtype=np.float32)
    rew_buf = np.empty((n_steps, m), dtype=np.float32)
    term_buf = np.zeros((n_steps, m), dtype=bool)
    trunc_buf = np.zeros((n_steps, m), dtype=bool)
    tval_buf = np.zeros((n_steps, m), dtype=np.float32)
    returns: list[float] = []
    lengths: list[int] = []
    obs = envs.obs
    for t in range(n_steps):
        obs_buf[t] = obs
        actions, values, log_probs = policy.act(obs, rng)
        if act_buf is None:
            act_buf = np.empty((n_steps, *actions.shape), dtype=actions.dtype)
        act_buf[t] = actions
        val_buf[t] = values
        logp_buf[t] = log_probs
        obs, rewards, terminated, truncated, final_obs, finished = envs.step(actions)
        rew_buf[t] = rewards
        term_buf[t] = terminated
        trunc_buf[t] = truncated
        if truncated.any():
            tval_buf[t, truncated] = policy.value(final_obs[truncated])
        for ret, length in finished:
            returns.append(ret)
            lengths.append(length)
    assert act_buf is not None
    return Rollout(
        obs=obs_buf,
        actions=act_buf,
        log_probs=logp_buf,
        values=val_buf,
        rewards=rew_buf,
        terminated=term_buf,
        truncated=trunc_buf,
        trunc_values=tval_buf,
        last_values=policy.value(obs).astype(np.float32),
        episode_returns=returns,
        episode_lengths=lengths,
    )
