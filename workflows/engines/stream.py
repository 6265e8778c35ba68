"""Consecutive iterations on the embedded engine with no gap between them: a stream of runs.

One ``LocalEngine.run`` per iteration costs, between the last body of iteration i and the first of
i+1, a hand-off to the thread that called ``run`` (a wake-up), the driver's bookkeeping of iteration i,
and the engine's set-up of i+1, all on the critical path: about 1 ms a 20 ms iteration on a 2-core VM.

A stream runs the same compiled DAG once per parameter set, in order, and starts run i+1 on the thread
that ended run i, the moment its last call ends (under one condition shared by all runs). Run i is
then handed to the consumer (the driver, through :meth:`workflows.engines.local.LocalEngine.run_iterations`),
which records it while run i+1 runs, but only once run i+1 has fewer calls in flight than there are
CPUs: on a machine with as many CPUs as workers, recording it during the fan-out would take CPU from
the fan-out's functions and move the time into their bodies instead of saving it. Each run is the same
WorkflowRun as ``run`` returns; its ``duration_s`` is the time since the previous run ended (the
stream's share).

A run that does not succeed ends the stream (the next would fail its version fence anyway). Stopping
(:meth:`IterationStream.stop`) starts nothing new, lets the calls in flight end and hands over nothing
more: the driver resumes from the iterations it recorded, and every step is idempotent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

from workflows.engines.base import WorkflowRun
from workflows.engines.compiler import CompiledWorkflow
from workflows.engines.invokers import Invoker
from workflows.engines.local import _Execution

__all__ = ["IterationStream"]


class IterationStream:
    """Runs ``compiled`` once per parameter set, back to back; :meth:`next_run` hands each one over.

    Args:
        invoker: how calls reach the functions.
        compiled: the DAG each run executes.
        parameters: each run's resolved workflow parameters, in order.
    """

    def __init__(
        self, invoker: Invoker, compiled: CompiledWorkflow, parameters: Sequence[dict[str, str]]
    ) -> None:
        self.invoker = invoker
        self.compiled = compiled
        self.parameters = list(parameters)
        self.cond = threading.Condition(threading.RLock())
        self.current: _Execution | None = None
        self.started = 0  # runs begun
        self.handed = 0  # runs handed over
        self.done: dict[int, WorkflowRun] = {}  # finished runs not handed over yet, by position
        self._position: dict[int, int] = {}  # id(run) -> its position in the stream
        self.stopping = False
        self.last_end: tuple[float, float] | None = None  # (wall, perf_counter) of the last run's end
        # A run that ends on the consumer's own thread (a timer, an in-process call) leaves the next
        # run's start to the consumer's loop: starting it inside the ending run's step would nest one
        # run in another, as deep as the stream is long.
        self._consumer: int | None = None
        self._deferred = False
        # A finished run is handed over once the next one has a CPU to spare: the consumer's work on it
        # then runs beside one function, not against a fan-out that keeps every CPU busy.
        self._cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def _begin_next(self) -> None:
        """Start the next run, if any is left and nothing stopped the stream; ``cond`` held."""
        if self.stopping or self.started >= len(self.parameters):
            self.current = None
            return
        run = _Execution(
            self.invoker, self.compiled, self.parameters[self.started], None, self.cond, self._finished
        )
        self.current = run
        self._position[id(run)] = self.started
        self.started += 1
        wall, t0 = self.last_end if self.last_end is not None else (None, None)
        run.begin(wall, t0)

    def _finished(self, run: _Execution) -> None:
        """A run's last call ended (on whichever thread saw it): start the next, hand this one over.

        The next run starts before this one's verdict is assembled: that is off the critical path.
        """
        self.last_end = ended = (time.time(), time.perf_counter())
        if run.failed or run.expired:  # it did not succeed: nothing follows
            self.current = None
        elif threading.get_ident() == self._consumer:
            self._deferred = True
        else:
            self._begin_next()
        self.done[self._position.pop(id(run))] = run.result(ended)
        self.cond.notify_all()

    def next_run(self) -> WorkflowRun | None:
        """The next finished run, in order; None once every run (or the stream) has ended."""
        with self.cond:
            self._consumer = threading.get_ident()
            if self.started == 0 and not self.stopping:
                self._begin_next()
            while True:
                if self._deferred:
                    self._deferred = False
                    self._begin_next()
                run = self.current
                if self.handed in self.done and (run is None or run.inflight < self._cpus or self.stopping):
                    self.handed += 1
                    return self.done.pop(self.handed - 1)
                if run is None:
                    return None
                # Woken when a run ends, a timer is due, or (with a run to hand over) a CPU comes free.
                run.wake_below = self._cpus if self.handed in self.done else 0
                run.wait_once()

    def stop(self) -> None:
        """Start no new run nor task; wait for the calls in flight, and drop what is not handed over."""
        with self.cond:
            self.stopping = True
            run = self.current
            if run is not None:
                run.stop()
                while run.inflight:
                    run.wait_once()
            self.current = None
            self.done.clear()
