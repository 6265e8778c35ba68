"""Benchmark-only environments: CartPole whose every step waits, standing for a latency-bound simulator.

``FTG/SlowCartPole-v1`` is CartPole-v1 (same dynamics, spaces, rewards, 500-step limit) whose ``step``
first waits ``step_seconds`` (2 ms by default), as a step of a remote simulator or a slow physics engine
would. A rollout of it is dominated by waiting, not computing, so collecting it through many function
replicas can scale beyond the machine's core count: ``benchmarks/bench_runtime.py`` measures exactly
that. It is not meant for training anything.

The waiting is a wrapper around the plain ``CartPoleEnv``, so ``env.unwrapped`` is CartPole's and a
shard's episodes are carried between iterations by its physical state, exactly as for CartPole-v1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

SLOW_CARTPOLE_ID = "FTG/SlowCartPole-v1"
STEP_SECONDS = 0.002
"""What one step waits by default: about a round trip to a simulator on the same network."""

Sleep = Callable[[float], None]


class SlowCartPole(gym.Wrapper[np.ndarray, Any, np.ndarray, Any]):
    """CartPole whose every step first waits ``step_seconds`` through ``sleep``.

    Args:
        step_seconds: the wait of each step (0 makes it plain CartPole).
        sleep: what waits; ``time.sleep`` unless a test injects a recorder.
        render_mode: passed to ``CartPoleEnv``.
    """

    def __init__(
        self, step_seconds: float = STEP_SECONDS, sleep: Sleep = time.sleep, render_mode: str | None = None
    ) -> None:
        # Imported here: registering the id (at every factory import) must not load CartPole's module.
        from gymnasium.envs.classic_control.cartpole import CartPoleEnv

        if step_seconds < 0:
            raise ValueError(f"step_seconds must not be negative, got {step_seconds}")
        super().__init__(CartPoleEnv(render_mode=render_mode))
        self.step_seconds = float(step_seconds)
        self._sleep = sleep

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Wait ``step_seconds``, then step CartPole."""
        if self.step_seconds > 0:
            self._sleep(self.step_seconds)
        return self.env.step(action)


def register_benchmark_envs() -> None:
    """Add the benchmark envs to gymnasium's registry (idempotent; nothing is imported until made)."""
    if SLOW_CARTPOLE_ID not in gym.envs.registry:
        gym.register(
            id=SLOW_CARTPOLE_ID,
            entry_point=f"{__name__}:SlowCartPole",
            max_episode_steps=500,
            reward_threshold=475.0,
        )
