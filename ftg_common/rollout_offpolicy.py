"""Off-policy rollout of one shard: epsilon-greedy on the online Q-network; no I/O, numpy only.

The shard it produces is what the replay buffer stores (``transitions_from_shard``): every step's
observation, action, reward, next observation (the final one where an episode ended, not the reset
one), termination and truncation kept apart, and the behaviour probability mu(a|s) of the action taken,
which off-policy evaluation weighs by.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ftg_common.envs.vector import ShardEnvs
from ftg_common.policy.qpolicy import QPolicy
from ftg_common.transition_arrays import TransitionArrays

__all__ = ["OffPolicyRollout", "collect_transitions"]


@dataclass(frozen=True)
class OffPolicyRollout(TransitionArrays):
    """T steps of M envs, time-major, as the epsilon-greedy behaviour policy took them.

    Attributes:
        obs: [T, M, obs_dim] float32 observation each action was taken in.
        actions: [T, M] int64.
        rewards: [T, M] float32.
        next_obs: [T, M, obs_dim] float32 observation after the step (final one where the episode ended).
        terminated: [T, M] bool.
        truncated: [T, M] bool (time limit, and not also terminated).
        behaviour_probs: [T, M] float32 mu(a|s) of the action taken.
        epsilons: [T] float32 the exploration rate of each vectorised step.
        episode_returns: returns of the episodes that finished during the rollout.
        episode_lengths: lengths of those episodes, in the same order.
    """

    epsilons: np.ndarray
    episode_returns: list[float]
    episode_lengths: list[int]

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays as a trajectory object stores them (bool flags as uint8)."""
        return {
            "obs": self.obs,
            "actions": self.actions,
            "rewards": self.rewards,
            "next_obs": self.next_obs,
            "terminated": self.terminated.astype(np.uint8),
            "truncated": self.truncated.astype(np.uint8),
            "behaviour_probs": self.behaviour_probs,
            "epsilons": self.epsilons,
        }


def collect_transitions(
    envs: ShardEnvs,
    policy: QPolicy,
    n_steps: int,
    epsilon_at: Callable[[int], float],
    rng: np.random.Generator,
) -> OffPolicyRollout:
    """Step ``envs`` (already started) ``n_steps`` times with epsilon-greedy actions.

    Args:
        envs: the shard's envs.
        policy: the online Q-network of the version collecting.
        n_steps: vectorised steps.
        epsilon_at: exploration rate of vectorised step ``t`` of this rollout (a function of the run's
            environment steps before it, so the schedule does not depend on how envs are sharded).
        rng: the rollout's generator (advanced by the same amount on every step).
    """
    m, d = envs.n_envs, envs.obs_dim
    obs_buf = np.empty((n_steps, m, d), dtype=np.float32)
    next_buf = np.empty((n_steps, m, d), dtype=np.float32)
    act_buf = np.empty((n_steps, m), dtype=np.int64)
    mu_buf = np.empty((n_steps, m), dtype=np.float32)
    rew_buf = np.empty((n_steps, m), dtype=np.float32)
    term_buf = np.zeros((n_steps, m), dtype=bool)
    trunc_buf = np.zeros((n_steps, m), dtype=bool)
    eps_buf = np.empty(n_steps, dtype=np.float32)
    returns: list[float] = []
    lengths: list[int] = []
    obs = envs.obs
    for t in range(n_steps):
        obs_buf[t] = obs
        eps = epsilon_at(t)
        eps_buf[t] = eps
        actions, mu = policy.act(obs, eps, rng)
        act_buf[t], mu_buf[t] = actions, mu
        obs, rewards, terminated, truncated, final_obs, finished = envs.step(actions)
        ended = terminated | truncated
        next_buf[t] = np.where(ended[:, None], final_obs, obs)
        rew_buf[t], term_buf[t], trunc_buf[t] = rewards, terminated, truncated
        for ret, length in finished:
            returns.append(ret)
            lengths.append(length)
    return OffPolicyRollout(
        obs=obs_buf,
        actions=act_buf,
        rewards=rew_buf,
        next_obs=next_buf,
        terminated=term_buf,
        truncated=trunc_buf,
        behaviour_probs=mu_buf,
        epsilons=eps_buf,
        episode_returns=returns,
        episode_lengths=lengths,
    )
