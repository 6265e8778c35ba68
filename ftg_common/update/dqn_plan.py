"""The plan of one DQN update: a pure function of the config and the counters (no data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from ftg_common.algos.dqn import should_train, target_syncs
from ftg_common.config import DQNConfig
from ftg_common.update.plan import scheduled


@dataclass(frozen=True)
class DQNPlan:
    """Everything a DQN update decides before it looks at the replay buffer.

    Attributes:
        iteration: the iteration whose collection precedes this update (version ``iteration`` -> +1).
        steps_before: environment steps taken before that collection.
        total_steps: environment steps taken after it; also the transitions appended to the replay
            buffer so far, which fixes the sampling window (``upto``).
        learning_rate: from its schedule at this point of training.
        gamma: discount of the TD target.
        tau: polyak coefficient of the target updates.
        target_syncs: target updates SB3 makes during this collection (before the gradient steps).
        gradient_steps: minibatch steps of this update (0 before ``learning_starts``).
        batch_size: rows per minibatch.
        capacity: replay capacity in transitions.
    """

    iteration: int
    steps_before: int
    total_steps: int
    learning_rate: float
    gamma: float
    tau: float
    target_syncs: int
    gradient_steps: int
    batch_size: int
    capacity: int

    @property
    def upto(self) -> int:
        """Transitions appended once this iteration's collection is in (the end of the window)."""
        return self.total_steps


def plan_dqn_update(dqn: DQNConfig, steps_before: int, iteration: int) -> DQNPlan:
    """Plan the update that follows the collection of ``iteration``.

    Args:
        dqn: the run's DQN config.
        steps_before: environment steps taken before this iteration's collection.
        iteration: the iteration.
    """
    total = steps_before + dqn.rollout_size
    # SB3 convention: the learning rate is read at the progress reached after the collection.
    progress_remaining = max(0.0, 1.0 - total / dqn.total_steps)
    return DQNPlan(
        iteration=iteration,
        steps_before=steps_before,
        total_steps=total,
        learning_rate=scheduled(dqn.lr_schedule, dqn.learning_rate, progress_remaining),
        gamma=dqn.gamma,
        tau=dqn.tau,
        target_syncs=target_syncs(steps_before, total, dqn.target_update_interval, dqn.n_envs),
        gradient_steps=dqn.gradient_steps_per_iteration if should_train(total, dqn.learning_starts) else 0,
        batch_size=dqn.batch_size,
        capacity=dqn.buffer_size,
    )
