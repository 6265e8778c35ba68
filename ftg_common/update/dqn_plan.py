"""The plan of one DQN update: a pure function of the config and the counters (no data, no I/O)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ftg_common.algos.dqn import should_train, target_syncs
from ftg_common.config import DQNConfig
from ftg_common.update.offpolicy_plan import CollectionWindow, window_after


@dataclass(frozen=True)
class DQNPlan(CollectionWindow):
    """Everything a DQN update decides before it looks at the replay buffer.

    Attributes (besides the :class:`CollectionWindow`'s):
        learning_rate: from its schedule at this point of training.
        gamma: discount of the TD target.
        tau: polyak coefficient of the target updates.
        target_syncs: target updates SB3 makes during this collection (before the gradient steps).
        gradient_steps: minibatch steps of this update (0 before ``learning_starts``).
        batch_size: rows per minibatch.
        capacity: replay capacity in transitions.
    """

    learning_rate: float
    gamma: float
    tau: float
    target_syncs: int
    gradient_steps: int
    batch_size: int
    capacity: int


def plan_dqn_update(dqn: DQNConfig, steps_before: int, iteration: int) -> DQNPlan:
    """Plan the update that follows the collection of ``iteration``.

    Args:
        dqn: the run's DQN config.
        steps_before: environment steps taken before this iteration's collection.
        iteration: the iteration.
    """
    window, learning_rate = window_after(dqn, steps_before, iteration)
    total = window.total_steps
    return DQNPlan(
        **asdict(window),
        learning_rate=learning_rate,
        gamma=dqn.gamma,
        tau=dqn.tau,
        target_syncs=target_syncs(steps_before, total, dqn.target_update_interval, dqn.n_envs),
        gradient_steps=dqn.gradient_steps_per_iteration if should_train(total, dqn.learning_starts) else 0,
        batch_size=dqn.batch_size,
        capacity=dqn.buffer_size,
    )
