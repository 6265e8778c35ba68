"""Where a DAG iteration's wall time goes: inside function bodies on the critical path, or around them.

Every function answers with ``seconds``, the time its handler spent working (after the request was
parsed and validated, before the response is serialised). The iteration DAG is a chain of levels
(collect x K -> aggregate -> update -> evaluate when due), so the critical path through the function
bodies is the sum over levels of the slowest node's ``seconds``. Everything else is overhead:

- in calls, outside bodies: per level, the slowest node's call time as the engine measured it (submit ->
  response handled) minus the slowest body: process-pool round trip, byte frames, JSON and pydantic in the
  handler wrapper, and any work a handler does after it stops its own clock;
- engine: iteration wall minus the critical path of call times: scheduling, substitution, fan-in,
  success conditions, thread hand-offs.

:class:`RecordingEngine` wraps any engine and keeps each iteration's WorkflowRun and wall time (plus the
driver's time between iterations) for :func:`summarise`.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

LEVELS = ("collect", "aggregate", "update", "evaluate")


@dataclass
class IterationSplit:
    """One iteration, in seconds."""

    wall_s: float  # engine.run, as the driver waits for it
    body_s: float  # sum over levels of the slowest node's reported ``seconds``
    call_s: float  # sum over levels of the slowest node's call time (engine's view)
    gap_s: float | None  # driver time between the previous iteration's end and this one's start
    evaluated: bool
    body_by_level: dict[str, float] = field(default_factory=dict)
    call_by_level: dict[str, float] = field(default_factory=dict)

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.body_s


def split(wf: Any, wall_s: float, gap_s: float | None) -> IterationSplit:
    """The split of one finished WorkflowRun (its HTTP nodes' results carry ``seconds``)."""
    body: dict[str, float] = {}
    call: dict[str, float] = {}
    for node in wf.http_nodes():
        if node.result is None:
            continue
        try:
            seconds = float(json.loads(node.result)["seconds"])
        except (ValueError, KeyError, TypeError):
            continue
        body[node.task] = max(body.get(node.task, 0.0), seconds)
        call[node.task] = max(call.get(node.task, 0.0), node.call_s)
    return IterationSplit(
        wall_s, sum(body.values()), sum(call.values()), gap_s, "evaluate" in body, body, call
    )


class RecordingEngine:
    """Delegates to ``engine`` and records every ``run``: the WorkflowRun, its wall time, the gap before it.

    The results are parsed only when :attr:`splits` is read, so recording adds nothing measurable to
    the run being measured.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._runs: list[tuple[Any, float, float | None]] = []
        self._last_end: float | None = None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        wf = self._engine.run(*args, **kwargs)
        t1 = time.perf_counter()
        self._runs.append((wf, t1 - t0, None if self._last_end is None else t0 - self._last_end))
        self._last_end = t1
        return wf

    def run_iterations(self, *args: Any, **kwargs: Any) -> Any:
        """The engine's stream of runs, each recorded with its share of the stream as its wall time."""
        for wf in self._engine.run_iterations(*args, **kwargs):
            self._runs.append((wf, wf.duration_s, None))
            yield wf

    def reset(self) -> None:
        """Forget what was recorded (between runs sharing one engine)."""
        self._runs.clear()
        self._last_end = None

    @property
    def splits(self) -> list[IterationSplit]:
        return [split(wf, wall, gap) for wf, wall, gap in self._runs if wf.succeeded]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def _ms(xs: list[float]) -> float | None:
    return round(statistics.median(xs) * 1e3, 3) if xs else None


def summarise(splits: list[IterationSplit], skip: int = 5) -> dict[str, Any]:
    """Medians (ms) and overhead shares over iterations, the first ``skip`` left out (caches warming).

    ``overhead_pct`` is 100 * (1 - sum of bodies / sum of walls) over the iterations: the share of
    iteration time spent outside function bodies, weighting each iteration by its length.
    """
    its = splits[skip:] if len(splits) > skip else splits

    def block(group: list[IterationSplit]) -> dict[str, Any]:
        if not group:
            return {}
        wall = sum(s.wall_s for s in group)
        body = sum(s.body_s for s in group)
        calls = sum(s.call_s for s in group)
        return {
            "iterations": len(group),
            "wall_ms": _ms([s.wall_s for s in group]),
            "body_ms": _ms([s.body_s for s in group]),
            "overhead_ms": _ms([s.overhead_s for s in group]),
            "overhead_pct": round(100.0 * (1.0 - body / wall), 2) if wall > 0 else None,
            "in_calls_outside_bodies_ms": _ms([s.call_s - s.body_s for s in group]),
            "engine_ms": _ms([s.wall_s - s.call_s for s in group]),
            "in_calls_outside_bodies_pct": round(100.0 * (calls - body) / wall, 2) if wall > 0 else None,
            "engine_pct": round(100.0 * (wall - calls) / wall, 2) if wall > 0 else None,
            "by_level": {
                level: {
                    "body_ms": _ms([s.body_by_level[level] for s in group if level in s.body_by_level]),
                    "call_minus_body_ms": _ms(
                        [
                            s.call_by_level[level] - s.body_by_level[level]
                            for s in group
                            if level in s.body_by_level
                        ]
                    ),
                }
                for level in LEVELS
                if any(level in s.body_by_level for s in group)
            },
        }

    gaps = [s.gap_s for s in its if s.gap_s is not None]
    return {
        "all": block(its),
        "without_evaluation": block([s for s in its if not s.evaluated]),
        "with_evaluation": block([s for s in its if s.evaluated]),
        "driver_gap_ms": _ms(gaps),
        "skipped_first": min(skip, len(splits)),
    }


def combine(per_run: list[dict[str, Any]], key: str) -> float | None:
    """Median over runs of ``summary['all'][key]``."""
    xs = [r["all"][key] for r in per_run if r.get("all", {}).get(key) is not None]
    return statistics.median(xs) if xs else None


def as_dict(s: IterationSplit) -> dict[str, Any]:
    return {**asdict(s), "overhead_s": s.overhead_s}
