"""The per-step arrays of off-policy experience, declared once for the rollout and the replay buffer.

What an epsilon-greedy rollout records (:class:`~ftg_common.rollout_offpolicy.OffPolicyRollout`,
time-major ``[T, M, ...]``) is exactly what the replay buffer stores
(:class:`~ftg_common.replay.transitions.Transitions`, one row each ``[N, ...]``): one declaration keeps
the two field sets equal. numpy only, and outside the replay package, so the rollout path can import it
without loading the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TransitionArrays"]


@dataclass(frozen=True)
class TransitionArrays:
    """One entry per environment step in every array; the subclasses give the leading shape.

    Attributes:
        obs: float32 observation the action was taken in (trailing dimension obs_dim).
        actions: int64 discrete action.
        rewards: float32.
        next_obs: float32 observation after the step (where an episode ended, its final observation,
            not the reset one).
        terminated: bool, the episode reached a terminal state.
        truncated: bool, the episode was cut (time limit) without terminating.
        behaviour_probs: float32 mu(a|s), the probability the collecting policy gave the action (what
            off-policy evaluation weighs by).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    behaviour_probs: np.ndarray
