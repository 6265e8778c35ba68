"""What the off-policy plans (DQN, tabular Q-learning) share: the counters around one collection."""

from __future__ import annotations

from dataclasses import dataclass

from ftg_common.config import DQNConfig, QLearningConfig
from ftg_common.update.plan import scheduled

__all__ = ["CollectionWindow", "window_after"]


@dataclass(frozen=True)
class CollectionWindow:
    """The collection an off-policy update follows.

    Attributes:
        iteration: the iteration whose collection precedes this update (version ``iteration`` -> +1).
        steps_before: environment steps taken before that collection.
        total_steps: environment steps taken after it; also the transitions appended to the replay
            buffer so far, which fixes the sampling window (``upto``).
    """

    iteration: int
    steps_before: int
    total_steps: int

    @property
    def upto(self) -> int:
        """Transitions appended once this iteration's collection is in (the end of the sampling window)."""
        return self.total_steps


def window_after(
    hp: DQNConfig | QLearningConfig, steps_before: int, iteration: int
) -> tuple[CollectionWindow, float]:
    """The window of ``iteration``'s collection and the learning rate scheduled for the update after it.

    SB3 convention: the schedule is read at the progress reached after the collection.
    """
    total = steps_before + hp.rollout_size
    progress_remaining = max(0.0, 1.0 - total / hp.total_steps)
    window = CollectionWindow(iteration=iteration, steps_before=steps_before, total_steps=total)
    return window, scheduled(hp.lr_schedule, hp.learning_rate, progress_remaining)
