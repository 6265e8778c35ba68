"""The plan of one PPO update: a pure function of the config, the counters and the run seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftg_common.algos.minibatch import LossCoefs
from ftg_common.algos.schedules import linear_schedule
from ftg_common.config import PPOConfig
from ftg_common.envs.seeding import MINIBATCH, derive_rng


@dataclass(frozen=True)
class UpdatePlan:
    """Everything an update decides before it looks at the data.

    Attributes:
        iteration: the iteration whose batch is trained on (policy version ``iteration`` -> ``+1``).
        batch_size: rows in the batch (n_envs * n_steps).
        total_steps: environment steps trained on once this update is done.
        learning_rate: from its schedule at this point of training.
        coefs: loss coefficients, the clip range from its schedule.
        epochs: per epoch, the minibatches as row-index arrays (each [<= minibatch size] int64).
    """

    iteration: int
    batch_size: int
    total_steps: int
    learning_rate: float
    coefs: LossCoefs
    epochs: tuple[tuple[np.ndarray, ...], ...]


def scheduled(kind: str, initial: float, progress_remaining: float) -> float:
    """A hyperparameter's value under its schedule (``constant`` or ``linear``, SB3 semantics)."""
    return linear_schedule(initial, progress_remaining) if kind == "linear" else initial


def minibatch_order(
    seed: int, iteration: int, n_rows: int, minibatch: int, n_epochs: int
) -> tuple[tuple[np.ndarray, ...], ...]:
    """A fresh permutation of the rows per epoch, cut into minibatches; seeded by (run seed, iteration)."""
    rng = derive_rng(seed, MINIBATCH, iteration)
    epochs = []
    for _ in range(n_epochs):
        perm = rng.permutation(n_rows)
        epochs.append(tuple(perm[start : start + minibatch] for start in range(0, n_rows, minibatch)))
    return tuple(epochs)


def plan_update(ppo: PPOConfig, seed: int, steps_before: int, iteration: int, batch_size: int) -> UpdatePlan:
    """Plan the update of ``iteration``.

    Args:
        ppo: the run's PPO config.
        seed: the run seed (for the minibatch order).
        steps_before: environment steps trained on before this batch.
        iteration: the iteration being trained on.
        batch_size: rows in its batch.
    """
    total_steps = steps_before + batch_size
    # SB3 convention: progress is measured after the rollout that is being trained on.
    progress_remaining = max(0.0, 1.0 - total_steps / ppo.total_steps)
    coefs = LossCoefs(
        clip_range=scheduled(ppo.clip_schedule, ppo.clip_range, progress_remaining),
        vf_coef=ppo.vf_coef,
        ent_coef=ppo.ent_coef,
        clip_range_vf=ppo.clip_range_vf,
    )
    return UpdatePlan(
        iteration=iteration,
        batch_size=batch_size,
        total_steps=total_steps,
        learning_rate=scheduled(ppo.lr_schedule, ppo.learning_rate, progress_remaining),
        coefs=coefs,
        epochs=minibatch_order(seed, iteration, batch_size, ppo.batch_size, ppo.n_epochs),
    )
