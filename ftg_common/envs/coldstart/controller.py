"""The interface of a scaling policy, and the loop that runs one on a simulation.

A controller sees the simulator between control steps and acts through it: :meth:`Simulator.scale`
(pre-warm or release replicas), :meth:`Simulator.set_keep_alive` (a function's idle window),
:meth:`Simulator.set_windows` (the hybrid policy's keep-alive and pre-warm windows). What it
can read after each step: :attr:`Simulator.stats` (arrivals, cold starts, failures, CPU utilisation,
replicas, ... per function), :attr:`Simulator.idle_times` (the idle times between invocations that ended
in the step, per function: a hybrid-histogram policy's samples), :attr:`Simulator.latencies`,
:meth:`Simulator.replicas`, :meth:`Simulator.warm_replicas`, :meth:`Simulator.idle_replicas` and
:meth:`Simulator.last_completion`.

To compare a controller with a policy trained on the env on exactly the same episodes, reset the env
with the episode's seed and run the controller on its simulator:
``env.unwrapped.reset(seed=s); run_controller(env.unwrapped.sim, controller)`` (same functions, trace and
cold-start latency stream as the env's episode with that seed).
"""

from __future__ import annotations

from typing import Protocol

from ftg_common.envs.coldstart.metrics import EpisodeMetrics
from ftg_common.envs.coldstart.simulator import Simulator

__all__ = ["Controller", "NoOp", "run_controller"]


class Controller(Protocol):
    """A scaling policy driven at control-step boundaries."""

    def reset(self, sim: Simulator) -> None:
        """Called once before the first step (set keep-alive windows, pre-warm, clear state)."""

    def act(self, sim: Simulator) -> None:
        """Called after every step, at the start of the next one (``sim.t``): read and scale."""


class NoOp:
    """Does nothing: on-demand scaling with the simulator's keep-alive."""

    def reset(self, sim: Simulator) -> None:
        """Nothing to set up."""

    def act(self, sim: Simulator) -> None:
        """Nothing to do."""


def run_controller(
    sim: Simulator, controller: Controller, steps: int | None = None, keep_latencies: bool = True
) -> EpisodeMetrics:
    """Run ``controller`` on ``sim`` for ``steps`` steps (None: to the trace's horizon); the totals."""
    metrics = EpisodeMetrics(sim.n_functions, keep_latencies)
    controller.reset(sim)
    n = 0
    while (steps is None and not sim.done) or (steps is not None and n < steps):
        sim.step()
        metrics.add(sim)
        controller.act(sim)
        n += 1
    return metrics
