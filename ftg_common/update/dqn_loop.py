"""The DQN update loop, shared by every DQN backend.

Target updates first (the ones SB3 makes while this iteration's transitions were collected), then one
gradient step per planned minibatch, each on the target network as it stood after those updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from ftg_common.replay.transitions import Transitions
from ftg_common.update.common import CheckpointedBackend, StepSums
from ftg_common.update.dqn_plan import DQNPlan

DQN_STAT_KEYS = ("loss", "q_mean", "target_mean", "grad_norm")


class DQNBackend(CheckpointedBackend, Protocol):
    """An online Q-network, its target copy and an optimizer, driven by :func:`run_gradient_steps`.

    Its ``weights`` are the online (``q.*``) and target (``q_target.*``) parameters.
    """

    def sync_target(self, tau: float, times: int) -> None:
        """Move the target ``times`` times towards the online network: t <- (1 - tau) t + tau o."""
        ...

    def train_step(self, batch: Transitions, gamma: float, learning_rate: float) -> dict[str, float]:
        """One gradient step on the Huber TD loss of ``batch``, clipped to the backend's max norm.

        Returns:
            Statistics of the step (keys :data:`DQN_STAT_KEYS`; ``grad_norm`` before clipping).
        """
        ...

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Online Q(s, .) for obs [B, obs_dim]: [B, n_actions] float32."""
        ...


@dataclass
class DQNLoopStats(StepSums):
    """Sums of the per-step statistics, and the target updates made."""

    KEYS: ClassVar[tuple[str, ...]] = DQN_STAT_KEYS

    target_syncs: int = 0


def run_gradient_steps(backend: DQNBackend, batches: list[Transitions], plan: DQNPlan) -> DQNLoopStats:
    """The planned target updates, then one gradient step per minibatch of ``batches``.

    Args:
        backend: the networks and optimizer.
        batches: ``plan.gradient_steps`` minibatches of ``plan.batch_size`` rows, in order.
        plan: the update's plan.

    Raises:
        ValueError: the number of minibatches is not the planned one.
    """
    if len(batches) != plan.gradient_steps:
        raise ValueError(f"plan has {plan.gradient_steps} gradient steps, got {len(batches)} minibatches")
    stats = DQNLoopStats(target_syncs=plan.target_syncs)
    backend.sync_target(plan.tau, plan.target_syncs)
    for batch in batches:
        stats.add(backend.train_step(batch, plan.gamma, plan.learning_rate))
    return stats
