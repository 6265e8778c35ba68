"""DQN math as pure numpy functions (no torch: the rollout-collector imports the exploration part).

Semantics follow Stable-Baselines3's DQN; every function states its shapes:

- exploration: the linear epsilon schedule, uniform actions before ``learning_starts``, and
  epsilon-greedy selection that also reports the behaviour probability mu(a|s) of the chosen action;
- learning: TD targets from the target network (bootstrapping unless *terminated*), the Huber loss,
  polyak averaging, and how many target updates fall in a stretch of environment steps.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "behaviour_epsilon",
    "epsilon_greedy",
    "epsilon_greedy_probs",
    "greedy_actions",
    "huber_loss",
    "linear_epsilon",
    "polyak_update",
    "should_train",
    "target_syncs",
    "td_targets",
]


# --- exploration -------------------------------------------------------------------------------------
def linear_epsilon(progress_remaining: float, initial: float, final: float, fraction: float) -> float:
    """Exploration rate of SB3's linear schedule.

    Epsilon moves linearly from ``initial`` to ``final`` over the first ``fraction`` of training, then
    stays at ``final``.

    Args:
        progress_remaining: 1 - steps_done / total_steps (1 at the start, 0 at the end).
        initial: ``exploration_initial_eps``.
        final: ``exploration_final_eps``.
        fraction: ``exploration_fraction`` (> 0).

    Returns:
        epsilon = initial + (1 - progress_remaining) * (final - initial) / fraction while
        1 - progress_remaining <= fraction, else final.
    """
    progress = 1.0 - progress_remaining
    if progress > fraction:
        return final
    return initial + progress * (final - initial) / fraction


def behaviour_epsilon(
    steps_done: int,
    total_steps: int,
    learning_starts: int,
    initial: float,
    final: float,
    fraction: float,
) -> float:
    """Epsilon of the vectorised step taken after ``steps_done`` environment steps.

    Before ``learning_starts`` steps the action is uniformly random (SB3's warm-up), which is
    epsilon-greedy with epsilon 1. Afterwards the schedule is read at the progress reached so far, as
    SB3 updates its exploration rate after every step.
    """
    if steps_done < learning_starts:
        return 1.0
    return linear_epsilon(1.0 - steps_done / total_steps, initial, final, fraction)


def greedy_actions(q: np.ndarray) -> np.ndarray:
    """argmax_a Q(s, a) for q [B, A]: [B] int64; ties go to the lowest action (as torch's argmax)."""
    actions: np.ndarray = np.argmax(q, axis=1).astype(np.int64)
    return actions


def epsilon_greedy_probs(q: np.ndarray, epsilon: float | np.ndarray) -> np.ndarray:
    """The epsilon-greedy distribution over actions.

    Args:
        q: [B, A] Q-values.
        epsilon: scalar or [B].

    Returns:
        [B, A] float64: epsilon / A everywhere, plus 1 - epsilon on the greedy action.
    """
    b, a = q.shape
    eps = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (b,))
    probs = np.repeat((eps / a)[:, None], a, axis=1)
    probs[np.arange(b), greedy_actions(q)] += 1.0 - eps
    return probs


def epsilon_greedy(q: np.ndarray, epsilon: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Epsilon-greedy actions and their behaviour probabilities.

    Each environment flips its own coin (SB3 flips one coin for the whole vector of environments; per
    environment keeps the logged mu(a|s) exact per row). Both draws are made for every row whatever the
    outcome, so the generator advances by the same amount on every call: a seeded rollout is
    reproducible step by step.

    Args:
        q: [B, A] Q-values of the online network.
        epsilon: probability of a uniformly random action.
        rng: the rollout's generator.

    Returns:
        (actions [B] int64, mu(a|s) [B] float32 = epsilon / A + (1 - epsilon) [a is greedy]).
    """
    b, a = q.shape
    explore = rng.random(b) < epsilon
    random_actions = rng.integers(0, a, size=b, dtype=np.int64)
    actions = np.where(explore, random_actions, greedy_actions(q))
    probs = epsilon_greedy_probs(q, epsilon)[np.arange(b), actions]
    return actions, probs.astype(np.float32)


# --- learning ------------------------------------------------------------------------------------------
def td_targets(
    rewards: np.ndarray, next_q_target: np.ndarray, terminated: np.ndarray, gamma: float
) -> np.ndarray:
    """One-step TD targets y = r + gamma * (1 - terminated) * max_a Q_target(s', a).

    A truncated (time-limit) transition bootstraps like any other: only termination ends the return.

    Args:
        rewards: [B].
        next_q_target: [B, A] target-network Q-values of the next observations.
        terminated: [B] bool.
        gamma: discount.

    Returns:
        [B] targets, in the dtype of ``next_q_target``.
    """
    dtype = next_q_target.dtype
    alive = 1.0 - terminated.astype(dtype)
    targets: np.ndarray = rewards.astype(dtype) + dtype.type(gamma) * alive * next_q_target.max(axis=1)
    return targets.astype(dtype)


def huber_loss(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean smooth-L1 (Huber, delta 1) loss and its gradient w.r.t. ``pred``, as torch's smooth_l1_loss.

    Per row, with x = pred - target: 0.5 x^2 if |x| < 1, else |x| - 0.5; the loss is the mean over rows.

    Args:
        pred: [B] Q(s, a) of the taken actions.
        target: [B] TD targets (no gradient flows into them).

    Returns:
        (loss, d loss / d pred [B] = clip(x, -1, 1) / B).
    """
    x = pred - target
    ax = np.abs(x)
    loss = np.where(ax < 1.0, 0.5 * x * x, ax - 0.5)
    grad = np.clip(x, -1.0, 1.0) / x.shape[0]
    return float(loss.mean()), grad.astype(pred.dtype)


def polyak_update(
    target: Mapping[str, np.ndarray], online: Mapping[str, np.ndarray], tau: float, times: int = 1
) -> dict[str, np.ndarray]:
    """Target parameters moved ``times`` times towards fixed online ones: t <- (1 - tau) t + tau o.

    Args:
        target: name -> array of the target network.
        online: the same names and shapes for the online network.
        tau: 1 copies (a hard update); smaller values average.
        times: how many updates (0 returns copies of ``target``).

    Returns:
        New arrays (the inputs are not modified).
    """
    if set(target) != set(online):
        raise ValueError(f"polyak update needs the same names, got {sorted(target)} and {sorted(online)}")
    out = {name: np.array(t, copy=True) for name, t in target.items()}
    if times <= 0:
        return out
    if tau == 1.0:
        return {name: np.array(online[name], dtype=out[name].dtype, copy=True) for name in out}
    for name, t in out.items():
        keep, move = t.dtype.type(1.0 - tau), t.dtype.type(tau)
        for _ in range(times):
            t *= keep
            t += move * online[name]
    return out


def target_syncs(steps_before: int, steps_after: int, target_update_interval: int, n_envs: int) -> int:
    """Target updates SB3 makes while the environment steps go from ``steps_before`` to ``steps_after``.

    SB3 counts ``target_update_interval`` in environment steps: after every vectorised step (``n_envs``
    environment steps) it increments a call counter and updates the target when the counter is a
    multiple of max(target_update_interval // n_envs, 1). The online network does not change while
    collecting, so the updates of one collection are ``k`` polyak steps towards the same weights, applied
    before that iteration's gradient steps.

    Args:
        steps_before: environment steps taken before the collection.
        steps_after: environment steps taken after it.
        target_update_interval: SB3's ``target_update_interval``.
        n_envs: environments stepped together.

    Returns:
        k >= 0.
    """
    every = max(target_update_interval // n_envs, 1)
    return (steps_after // n_envs) // every - (steps_before // n_envs) // every


def should_train(steps_done: int, learning_starts: int) -> bool:
    """SB3 trains after a collection once more than ``learning_starts`` steps were taken."""
    return steps_done > 0 and steps_done > learning_starts
