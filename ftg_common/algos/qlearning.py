"""Tabular Q-learning math as pure numpy functions: the state discretisation and the TD update.

A Q-table has one row per discrete state and one column per action, ``q [S, A]``. Observations reach
it through a discretiser that maps each raw observation vector (what a trajectory stores, see
:mod:`ftg_common.envs.encoding`) to one state index in ``0 .. S - 1``:

- Discrete, MultiDiscrete and Tuple-of-Discrete observations are already indices; their components
  are combined in mixed radix, the first component most significant
  (:func:`mixed_radix_index`). A plain Discrete(n, start) maps ``obs`` to ``obs - start``.
- Box observations are cut into ``bins[k]`` equal-width intervals of ``[low[k], high[k]]`` per
  dimension, values outside clipped to the first or last interval (:func:`bin_indices`); the
  per-dimension bin numbers are then combined in mixed radix like the discrete case.

The update is Watkins' one-step Q-learning applied to transitions one at a time, in the given order
(:func:`q_learning_pass`): a later transition sees the table as the earlier ones left it, so the
result depends on the order and is bit-for-bit reproducible for a fixed one. Only *termination* ends
the return; a transition cut by a time limit (*truncated*) bootstraps from the next state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "QPassStats",
    "bin_indices",
    "combine_passes",
    "mixed_radix_index",
    "q_learning_pass",
    "td_target",
]


def mixed_radix_index(digits: np.ndarray, sizes: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """Combine per-component values into one index, the first component most significant.

    index = sum_k (digits[:, k] - starts[k]) * prod_{j > k} sizes[j]

    Args:
        digits: [B, K] whole numbers (any numeric dtype; floats must hold integers exactly).
        sizes: [K] number of values of each component (each >= 1).
        starts: [K] smallest value of each component (default zeros).

    Returns:
        [B] int64 indices in 0 .. prod(sizes) - 1.

    Raises:
        ValueError: a value that is not a whole number, or outside its component's range (names the
            component and the value).
    """
    x = np.asarray(digits)
    if x.ndim != 2 or x.shape[1] != len(sizes):
        raise ValueError(f"digits must be [B, {len(sizes)}], got shape {x.shape}")
    whole = np.rint(x).astype(np.int64)
    if not np.array_equal(whole, x):
        raise ValueError("discrete observations must be whole numbers")
    sz = np.asarray(sizes, dtype=np.int64)
    st = np.zeros_like(sz) if starts is None else np.asarray(starts, dtype=np.int64)
    rel = whole - st
    bad = (rel < 0) | (rel >= sz)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"observation component {col} = {x[row, col]} is outside [{st[col]}, {st[col] + sz[col]})"
        )
    # Place value of component k: the product of the sizes after it.
    place = np.concatenate([np.cumprod(sz[::-1])[::-1][1:], [1]]).astype(np.int64)
    index: np.ndarray = rel @ place
    return index


def bin_indices(x: np.ndarray, bins: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Uniform bin number of every value, per dimension, values outside ``[low, high]`` clipped.

    Bin k of dimension d covers ``[low + k w, low + (k + 1) w)`` with ``w = (high - low) / bins``;
    the last bin also holds ``high`` itself. A value below ``low`` falls in bin 0, above ``high`` in
    the last bin, NaN in bin 0.

    Args:
        x: [B, D] observations.
        bins: [D] intervals per dimension (each >= 1).
        low: [D] lower edges (finite).
        high: [D] upper edges (finite, each > low).

    Returns:
        [B, D] int64 bin numbers in 0 .. bins[d] - 1.
    """
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    nb = np.asarray(bins, dtype=np.int64)
    frac = (np.asarray(x, dtype=np.float64) - lo) / (hi - lo)
    frac = np.nan_to_num(frac, nan=0.0, posinf=1.0, neginf=0.0)
    raw = np.floor(frac * nb).astype(np.int64)
    clipped: np.ndarray = np.clip(raw, 0, nb - 1)
    return clipped


def td_target(reward: float, next_q: np.ndarray, terminated: bool, gamma: float) -> float:
    """One-step target r + gamma * max_a Q(s', a), or r alone when the episode terminated.

    Args:
        reward: r.
        next_q: [A] the table's row of the next state s'.
        terminated: the episode ended in s' (a truncation is not a termination: it bootstraps).
        gamma: discount.
    """
    if terminated:
        return float(reward)
    return float(reward) + gamma * float(next_q.max())


@dataclass(frozen=True)
class QPassStats:
    """What a pass of updates did.

    Attributes:
        n_updates: transitions applied.
        td_loss: mean of the squared TD errors (before each update); None when nothing was applied.
        q_mean: mean of Q(s, a) of the updated entries before their update; None likewise.
    """

    n_updates: int
    td_loss: float | None
    q_mean: float | None


def combine_passes(passes: list[QPassStats]) -> QPassStats:
    """The statistics of several passes as one: counts added, means weighted by their counts."""
    done = [p for p in passes if p.n_updates]
    n = sum(p.n_updates for p in done)
    if not n:
        return QPassStats(0, None, None)
    td = sum(p.n_updates * (p.td_loss or 0.0) for p in done) / n
    q = sum(p.n_updates * (p.q_mean or 0.0) for p in done) / n
    return QPassStats(n, td, q)


def q_learning_pass(
    q: np.ndarray,
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    next_states: np.ndarray,
    terminated: np.ndarray,
    alpha: float,
    gamma: float,
) -> QPassStats:
    """Apply Q(s, a) <- Q(s, a) + alpha * (target - Q(s, a)) for each transition, in order, in place.

    Args:
        q: [S, A] float64 table, modified in place.
        states: [N] int state indices.
        actions: [N] int actions.
        rewards: [N] rewards.
        next_states: [N] int state indices after the step (the final state where an episode ended).
        terminated: [N] bool; truncated transitions are *not* terminated here.
        alpha: step size (learning rate) in (0, 1].
        gamma: discount.

    Returns:
        The pass's statistics.
    """
    n = len(states)
    if not (len(actions) == len(rewards) == len(next_states) == len(terminated) == n):
        raise ValueError("states, actions, rewards, next_states and terminated must have the same length")
    sq, qs = 0.0, 0.0
    # Sequential by definition: each update reads the table the previous ones wrote.
    for s, a, r, s2, done in zip(
        states.tolist(),
        actions.tolist(),
        rewards.tolist(),
        next_states.tolist(),
        terminated.tolist(),
        strict=True,
    ):
        current = float(q[s, a])
        error = td_target(r, q[s2], bool(done), gamma) - current
        q[s, a] = current + alpha * error
        sq += error * error
        qs += current
    if n == 0:
        return QPassStats(0, None, None)
    return QPassStats(n, sq / n, qs / n)
