"""The plan of one tabular Q-learning update: a pure function of the config and the counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ftg_common.algos.dqn import should_train
from ftg_common.config import QLearningConfig
from ftg_common.update.offpolicy_plan import CollectionWindow, window_after


@dataclass(frozen=True)
class QLearningPlan(CollectionWindow):
    """Everything a Q-learning update decides before it reads any transition.

    Attributes (besides the :class:`CollectionWindow`'s):
        train: False before ``learning_starts``: the version only counts the steps.
        learning_rate: the step size alpha, from its schedule at this point of training.
        gamma: discount of the TD target.
        replay_batches: minibatches replayed from the buffer after the online pass (0 when not training).
        batch_size: transitions per replayed minibatch.
    """

    train: bool
    learning_rate: float
    gamma: float
    replay_batches: int
    batch_size: int


def plan_qlearning_update(hp: QLearningConfig, steps_before: int, iteration: int) -> QLearningPlan:
    """Plan the update that follows the collection of ``iteration``.

    Args:
        hp: the run's Q-learning config.
        steps_before: environment steps taken before this iteration's collection.
        iteration: the iteration.
    """
    window, learning_rate = window_after(hp, steps_before, iteration)
    train = should_train(window.total_steps, hp.learning_starts)
    return QLearningPlan(
        **asdict(window),
        learning_rate=learning_rate,
        gamma=hp.gamma,
        train=train,
        replay_batches=hp.replay_batches if train else 0,
        batch_size=hp.batch_size,
    )
