"""The PPO optimisation loop, shared by every backend.

Epochs of shuffled minibatches, advantage normalisation, the ``target_kl`` early stop, and the mean of
each loss statistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from ftg_common.algos.minibatch import LossCoefs, Minibatch
from ftg_common.algos.ppo_numpy import normalize
from ftg_common.update.common import CheckpointedBackend, StepSums
from ftg_common.update.plan import UpdatePlan

STAT_KEYS = ("pg_loss", "value_loss", "entropy_loss", "approx_kl", "clip_fraction")


class PPOBackend(CheckpointedBackend, Protocol):
    """One network + optimizer that the loop drives.

    ``evaluate`` computes the loss of a minibatch and keeps its gradient pending; ``apply`` clips that
    gradient to the backend's max norm and takes one optimizer step. Two calls, so the loop can stop on
    the KL of a minibatch before its gradient is applied (SB3 semantics).
    """

    def evaluate(self, mb: Minibatch[np.ndarray], coefs: LossCoefs) -> dict[str, float]:
        """Loss statistics of ``mb`` (keys :data:`STAT_KEYS`); the gradient is kept for ``apply``."""
        ...

    def apply(self, learning_rate: float) -> float:
        """Clip the pending gradient and step the optimizer; returns the gradient norm before clipping."""
        ...


@dataclass
class LoopStats(StepSums):
    """Sums of the per-minibatch statistics of applied steps."""

    KEYS: ClassVar[tuple[str, ...]] = STAT_KEYS

    stopped_early: bool = False


def run_epochs(
    backend: PPOBackend,
    batch: dict[str, np.ndarray],
    plan: UpdatePlan,
    *,
    normalize_advantage: bool,
    target_kl: float | None,
) -> LoopStats:
    """Run the planned epochs over ``batch`` (keys as the reward-aggregator writes them)."""
    stats = LoopStats()
    for epoch in plan.epochs:
        for idx in epoch:
            mb: Minibatch[np.ndarray] = Minibatch.take(batch, idx)
            if normalize_advantage:
                mb = mb.with_advantages(normalize(mb.advantages))
            step = backend.evaluate(mb, plan.coefs)
            if target_kl is not None and step["approx_kl"] > 1.5 * target_kl:
                stats.stopped_early = True
                return stats
            backend.apply(plan.learning_rate)
            stats.add(step)
    return stats
