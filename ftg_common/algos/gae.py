"""Generalised advantage estimation (Schulman et al., 2016) over a [T, N] rollout.

Time runs along axis 0 and the N vectorised environments along axis 1. A rollout may contain
episode boundaries anywhere; each one is either a termination (the MDP really ended, so the
future is worth 0) or a truncation (a time limit cut the episode, so the future is worth
V(final observation), which the collector evaluates before the auto-reset hides it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["GAE", "compute_gae", "discounted_returns"]


class GAE(NamedTuple):
    """Result of :func:`compute_gae`: both arrays [T, N] float32, ``returns = advantages + values``."""

    advantages: np.ndarray
    returns: np.ndarray


def _check_inputs(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    trunc_values: np.ndarray,
    last_values: np.ndarray,
    values: np.ndarray | None = None,
) -> tuple[int, int]:
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [T, N], got shape {rewards.shape}")
    t, n = rewards.shape
    if t == 0 or n == 0:
        raise ValueError(f"rollout must have at least one step and one env, got shape {rewards.shape}")
    named = {"terminated": terminated, "truncated": truncated, "trunc_values": trunc_values}
    if values is not None:
        named["values"] = values
    for name, arr in named.items():
        if arr.shape != (t, n):
            raise ValueError(f"{name} must have shape {(t, n)} like rewards, got {arr.shape}")
    if last_values.shape != (n,):
        raise ValueError(f"last_values must have shape {(n,)}, got {last_values.shape}")
    return t, n


def _bootstrap_targets(
    values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    trunc_values: np.ndarray,
    last_values: np.ndarray,
) -> np.ndarray:
    """Value of the state after each step: [T, N] float64.

    Termination wins over truncation when both flags are set: gymnasium reports both when the
    last allowed step also reaches a terminal state, and a terminal state has no future.
    """
    nxt = np.empty(values.shape, dtype=np.float64)
    nxt[:-1] = values[1:]
    nxt[-1] = last_values
    nxt = np.where(truncated, trunc_values, nxt)
    return np.where(terminated, 0.0, nxt)


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    trunc_values: np.ndarray,
    last_values: np.ndarray,
    *,
    gamma: float,
    gae_lambda: float,
) -> GAE:
    """GAE(gamma, lambda) advantages and value targets.

    Args:
        rewards: [T, N] reward received after the action at step t.
        values: [T, N] V(obs_t) under the behaviour policy's critic.
        terminated: [T, N] bool, the step ended the episode in a terminal state.
        truncated: [T, N] bool, the step ended the episode by a time limit.
        trunc_values: [T, N] V(true final obs) where truncated; ignored elsewhere.
        last_values: [N] V(obs after the final step T-1).
        gamma: discount factor.
        gae_lambda: bias/variance trade-off; 0 is one-step TD, 1 is Monte Carlo with bootstrap.

    Returns:
        GAE(advantages [T, N], returns [T, N]) as float32, with returns = advantages + values.
    """
    rewards = np.asarray(rewards)
    values = np.asarray(values)
    terminated = np.asarray(terminated, dtype=bool)
    truncated = np.asarray(truncated, dtype=bool)
    trunc_values = np.asarray(trunc_values)
    last_values = np.asarray(last_values)
    t, n = _check_inputs(rewards, terminated, truncated, trunc_values, last_values, values)

    # float64 accumulation keeps long horizons (gamma*lambda close to 1) from drifting.
    v = values.astype(np.float64)
    nxt = _bootstrap_targets(v, terminated, truncated, trunc_values, last_values)
    deltas = rewards.astype(np.float64) + gamma * nxt - v
    # An ended episode must not borrow advantage from the next episode in the same env column.
    carry = gamma * gae_lambda * (~(terminated | truncated))

    adv = np.empty((t, n), dtype=np.float64)
    running = np.zeros(n, dtype=np.float64)
    for i in range(t - 1, -1, -1):
        running = deltas[i] + carry[i] * running
        adv[i] = running
    return GAE(adv.astype(np.float32), (adv + v).astype(np.float32))


def discounted_returns(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    trunc_values: np.ndarray,
    last_values: np.ndarray,
    *,
    gamma: float,
) -> np.ndarray:
    """Discounted reward-to-go with bootstrapping at truncations and at the rollout's end.

    This is the value target of GAE with lambda = 1, and it does not depend on values[t].

    Args:
        rewards: [T, N] reward received after the action at step t.
        terminated: [T, N] bool, the step ended the episode in a terminal state.
        truncated: [T, N] bool, the step ended the episode by a time limit.
        trunc_values: [T, N] V(true final obs) where truncated; ignored elsewhere.
        last_values: [N] V(obs after the final step).
        gamma: discount factor.

    Returns:
        returns [T, N] float32.
    """
    rewards = np.asarray(rewards)
    terminated = np.asarray(terminated, dtype=bool)
    truncated = np.asarray(truncated, dtype=bool)
    trunc_values = np.asarray(trunc_values)
    last_values = np.asarray(last_values)
    t, n = _check_inputs(rewards, terminated, truncated, trunc_values, last_values)

    ended = terminated | truncated
    # Bootstrap value at an episode end (0 or V(final obs)), used instead of the running sum.
    end_value = np.where(terminated, 0.0, trunc_values.astype(np.float64))
    out = np.empty((t, n), dtype=np.float64)
    running = last_values.astype(np.float64)
    for i in range(t - 1, -1, -1):
        running = rewards[i] + gamma * np.where(ended[i], end_value[i], running)
        out[i] = running
    return out.astype(np.float32)
