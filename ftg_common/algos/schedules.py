"""Hyperparameter schedules (pure functions)."""

from __future__ import annotations


def linear_schedule(initial: float, progress_remaining: float) -> float:
    """Linearly decayed hyperparameter, SB3 convention.

    Args:
        initial: value at the start of training.
        progress_remaining: 1 - steps_done / total_steps, going from 1 down to 0.
    """
    return progress_remaining * initial
