"""Streamed iterations (LocalEngine.run_iterations): the same runs as one ``run`` each, back to back.

Each run must come out as ``run`` makes it (nodes, phases, results), in order, each timed from the end
of the one before; a failed run ends the stream; closing it starts nothing new.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ftg_common.faas import Response
from tests.workflows.test_local_engine import (
    FAKE_MODULES,
    ITERATION_MODULES,
    fast_retries,
    iteration_params,
    without_process,
)
from workflows.engines.invokers import InProcessInvoker, PoolInvoker
from workflows.engines.local import LocalEngine, compile_workflow
from workflows.iteration import iteration_manifest

MODULES = {**FAKE_MODULES, **ITERATION_MODULES}
COMPILED = compile_workflow(iteration_manifest())


class CountingPool(PoolInvoker):
    """The warm pool, counting the collect calls each iteration made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.collects: dict[int, int] = {}

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        if url.endswith("/rollout-collector"):
            i = json.loads(body)["iteration"]
            self.collects[i] = self.collects.get(i, 0) + 1
        return super().submit(url, method, headers, body, timeout)


@pytest.fixture()
def pool() -> Iterator[CountingPool]:
    with CountingPool(2, modules=MODULES, spin_us=300) as inv:
        inv.warmup()
        yield inv


def _params(n: int, shards: list[int] | None = None, failing: int | None = None) -> list[dict[str, str]]:
    """Iterations 0..n-1 of a run evaluating every 2nd; iteration ``failing`` has a shard that fails."""
    return [
        iteration_params([1, 7] if i == failing else (shards or [1, 2]), iteration=i, iterations=n, every=2)
        for i in range(n)
    ]


def _shape(run: Any) -> tuple[Any, ...]:
    """A run's phase, nodes and what its aggregate got, whichever process ran the collectors."""
    results = {
        n.name: without_process(json.loads(n.result)["echo"]) if n.name == "aggregate" else None
        for n in run.nodes
    }
    return run.phase, [(n.name, n.phase, n.attempts) for n in run.nodes], results


def test_a_stream_yields_each_run_in_order_as_run_makes_it(pool: CountingPool) -> None:
    params = _params(4)
    runs = list(LocalEngine(pool, COMPILED).run_iterations(params))
    assert [r.parameters["iteration"] for r in runs] == ["0", "1", "2", "3"]
    reference = [LocalEngine(InProcessInvoker(MODULES), COMPILED).run(p) for p in params]
    assert [_shape(r) for r in runs] == [_shape(r) for r in reference]
    assert [r.node("evaluate").phase for r in runs] == ["Skipped", "Succeeded", "Skipped", "Succeeded"]
    # Back to back: each run is timed from the end of the one before, so the durations tile the stream.
    for before, after in zip(runs, runs[1:], strict=False):
        assert after.started == before.finished
        assert after.duration_s > 0
    assert pool.collects == {0: 2, 1: 2, 2: 2, 3: 2}


def test_a_failed_run_ends_the_stream(pool: CountingPool) -> None:
    quick = compile_workflow(fast_retries(iteration_manifest()))  # shard 7's retries, 1 ms apart
    runs = list(LocalEngine(pool, quick).run_iterations(_params(4, failing=1)))
    assert [(r.parameters["iteration"], r.phase) for r in runs] == [("0", "Succeeded"), ("1", "Failed")]
    assert set(pool.collects) == {0, 1}, "no iteration after the failed one may start"


def test_closing_a_stream_starts_nothing_new(pool: CountingPool) -> None:
    stream = LocalEngine(pool, COMPILED).run_iterations(_params(6))
    first = next(stream)
    stream.close()  # the driver stopping after it recorded iteration 0
    assert first.parameters["iteration"] == "0" and first.succeeded
    # Iteration 1 was already under way when 0 was handed over; nothing after it starts.
    assert set(pool.collects) <= {0, 1}
    again = list(LocalEngine(pool, COMPILED).run_iterations(_params(6)[2:4]))
    assert [r.parameters["iteration"] for r in again] == ["2", "3"]


def test_an_in_process_stream_of_many_runs_does_not_nest_them() -> None:
    # In-process calls end on the consumer's thread: each next run must start from its loop, not
    # inside the step of the run before (which would nest 200 runs deep).
    runs = list(LocalEngine(InProcessInvoker(MODULES), COMPILED).run_iterations(_params(200, shards=[6])))
    assert len(runs) == 200 and all(r.succeeded for r in runs)


def test_one_iteration_is_a_plain_run(pool: CountingPool) -> None:
    (run,) = LocalEngine(pool, COMPILED).run_iterations(_params(1))
    assert run.succeeded and pool.collects == {0: 2}


def test_a_stream_length_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="iterations_per_workflow"):
        LocalEngine(InProcessInvoker(MODULES), COMPILED, iterations_per_workflow=0)
