"""Simulated wall time of the default sweep on Argo (K iterations per Workflow) and in hybrid mode.

The default sweep (``sweeps/cartpole_ab.yaml``) is counted as it would run: every trial's iterations,
its evaluation schedule, ``max_parallel`` trials at a time (each next trial on the first free slot, in
the sweep's order; the functions scale out on a cluster, so parallel trials do not slow each other).

- **Compute per DAG level** is measured here: a short run of each configuration on the embedded engine
  (warm pool), the slowest call of each level, median over iterations (the first two left out).
- **Argo**: each Workflow's time is :func:`workflows.argo_latency.workflow_seconds` of its levels (agent
  pod start, result patch period, a reconcile per level, the driver's poll), for K = 1, 4, 16 and Argo's
  default 10 s settings and the 1 s ones shipped in ``manifests/argo/controller``.
- **Hybrid** (the embedded engine driving a remote gateway): the measured embedded iteration, plus the
  gateway's cost per iteration recorded in ``benchmarks/results/2026-11-29-runtime-quiet-sweep.json``
  (the default sweep's zoo trial through a warm gateway vs embedded), plus ``--rtt-ms`` per level for
  the network between the driver and a gateway on the cluster (an assumption; 0 on one machine).

Nothing sleeps: the cluster is simulated, only the short measuring runs take real time (~10 s).
Usage: ``.venv/bin/python benchmarks/bench_argo_latency.py [--measure-iterations 24] [--rtt-ms 1]``
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the checkout's packages, this folder included
    sys.path.insert(0, str(ROOT))

from benchmarks.machine_info import machine_info, machine_sentence  # noqa: E402
from ftg_common.catalog import AGGREGATE, COLLECT, EVALUATE, UPDATE  # noqa: E402
from workflows.argo_latency import DEFAULT, SHIPPED, ArgoTiming, workflow_seconds  # noqa: E402
from workflows.engines.base import WorkflowRun  # noqa: E402

SWEEP = ROOT / "sweeps" / "cartpole_ab.yaml"
GATEWAY_RECORD = ROOT / "benchmarks" / "results" / "2026-11-29-runtime-quiet-sweep.json"
TRAIN_LEVELS = (COLLECT, AGGREGATE, UPDATE)
KS = (1, 4, 16)


@dataclass(frozen=True)
class LevelTimes:
    """One configuration's measured iteration on the embedded engine, in seconds (medians).

    Attributes:
        levels: slowest call of each training level (collect, aggregate, update).
        evaluate: the evaluation level.
        wall: a whole iteration without evaluation (engine included).
        wall_eval: a whole iteration with evaluation.
        driver: the driver's time between two iterations.
    """

    levels: tuple[float, float, float]
    evaluate: float
    wall: float
    wall_eval: float
    driver: float


@dataclass(frozen=True)
class Trial:
    """What the schedule needs of one trial: its iterations and when it evaluates."""

    config: str
    seed: int
    iterations: int
    eval_every: int

    def evaluates(self, i: int) -> bool:
        """The iteration template's schedule (``workflows.driver.eval_due``)."""
        return (i + 1) % self.eval_every == 0 or i + 1 == self.iterations


class _Recording:
    """An engine that keeps every run and the driver's time between runs."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.runs: list[WorkflowRun] = []
        self.gaps: list[float] = []
        self._last_end: float | None = None

    @property
    def gateway(self) -> str:
        return str(self.engine.gateway)

    def run(self, parameters: Mapping[str, str]) -> WorkflowRun:
        start = time.perf_counter()
        if self._last_end is not None:
            self.gaps.append(start - self._last_end)
        wf: WorkflowRun = self.engine.run(parameters)
        self.runs.append(wf)
        self._last_end = time.perf_counter()
        return wf

    def call(
        self, function: str, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> Any:
        return self.engine.call(function, body, headers=headers)

    def close(self) -> None:
        """The services close the engine underneath."""


def _level_seconds(wf: WorkflowRun, task: str) -> float | None:
    spans = [n.duration_s or 0.0 for n in wf.http_nodes() if n.task == task]
    return max(spans) if spans else None


def measure(hp: Any, iterations: int, workdir: Path, name: str) -> LevelTimes:
    """Run ``iterations`` of configuration ``hp`` on the embedded engine and take its level times."""
    from ftg_common.config import RunConfig
    from ftg_common.settings import get_settings
    from workflows.driver import RunDriver
    from workflows.sweep import open_services

    # The warm workers read the stores from the environment they inherit.
    os.environ["FTG_STORE_URL"] = f"file://{workdir}/store"
    os.environ["FTG_META_URL"] = f"sqlite:///{workdir}/meta.db"
    get_settings.cache_clear()
    services = open_services(get_settings(), tracking=False)
    try:
        cfg_hp = hp.model_copy(update={"total_steps": iterations * hp.rollout_size})
        cfg = RunConfig(run_id=f"bench-{name}", seed=0, **{hp.algo: cfg_hp})
        engine = _Recording(services.engine)
        RunDriver(cfg, engine=engine, store=services.store, meta=services.meta).drive()  # type: ignore[arg-type]
    finally:
        services.close()
    runs = engine.runs[2:]
    plain = [r for r in runs if _level_seconds(r, EVALUATE) is None]
    evaluated = [r for r in runs if _level_seconds(r, EVALUATE) is not None] or runs[-1:]
    levels = tuple(statistics.median(_level_seconds(r, t) or 0.0 for r in plain) for t in TRAIN_LEVELS)
    return LevelTimes(
        levels=(levels[0], levels[1], levels[2]),
        evaluate=statistics.median(_level_seconds(r, EVALUATE) or 0.0 for r in evaluated),
        wall=statistics.median(r.duration_s for r in plain),
        wall_eval=statistics.median(r.duration_s for r in evaluated),
        driver=statistics.median(engine.gaps[2:] or engine.gaps),
    )


def iteration_levels(times: LevelTimes, evaluates: bool, extra: float) -> list[float]:
    """The levels of one iteration that call functions, each ``extra`` seconds slower (the network)."""
    levels = [t + extra for t in times.levels]
    return [*levels, times.evaluate + extra] if evaluates else levels


def argo_trial_seconds(trial: Trial, times: LevelTimes, k: int, timing: ArgoTiming, extra: float) -> float:
    """A trial on Argo: its Workflows of ``k`` iterations one after the other, plus the driver's time."""
    total = 0.0
    for first in range(0, trial.iterations, k):
        chain = range(first, min(first + k, trial.iterations))
        levels = [lv for i in chain for lv in iteration_levels(times, trial.evaluates(i), extra)]
        total += workflow_seconds(levels, timing) + times.driver * len(chain)
    return total


def hybrid_trial_seconds(trial: Trial, times: LevelTimes, per_iteration: float, rtt: float) -> float:
    """A trial on the embedded engine driving a remote gateway."""
    total = 0.0
    for i in range(trial.iterations):
        evaluates = trial.evaluates(i)
        wall = times.wall_eval if evaluates else times.wall
        total += wall + per_iteration + rtt * (4 if evaluates else 3) + times.driver
    return total


def makespan(durations: Sequence[float], slots: int) -> float:
    """Wall time of jobs run ``slots`` at a time, each next one on the first free slot, in order."""
    free = [0.0] * slots
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def _trials() -> tuple[list[Trial], int]:
    from ftg_common.config import load_sweep

    sweep = load_sweep(SWEEP.read_text(), str(SWEEP.parent))
    trials = [
        Trial(name, seed, hp.n_iterations, hp.eval_every_iterations)
        for name, hp in sweep.trial_configs().items()
        for seed in sweep.seeds
    ]
    return trials, sweep.max_parallel


def _gateway_per_iteration(trials: Sequence[Trial]) -> tuple[float, dict[str, Any]]:
    """Seconds the gateway adds per iteration: the recorded zoo trial through a gateway vs embedded."""
    record = json.loads(GATEWAY_RECORD.read_text())["sweep"]
    zoo = next(t for t in trials if t.config == "zoo")
    extra = (record["gateway_median_s"] - record["embedded_median_s"]) / zoo.iterations
    return extra, {
        "source": str(GATEWAY_RECORD.relative_to(ROOT)),
        "embedded_median_s": record["embedded_median_s"],
        "gateway_median_s": record["gateway_median_s"],
        "zoo_iterations": zoo.iterations,
        "per_iteration_ms": round(extra * 1000, 3),
    }


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def simulate(
    trials: Sequence[Trial], slots: int, times: Mapping[str, LevelTimes], gateway_s: float, rtt: float
) -> list[dict[str, Any]]:
    """Every mode's simulated sweep: rows for the record."""
    iterations = sum(t.iterations for t in trials)
    rows = []

    def row(mode: str, k: int | None, settings: str, per_trial: list[float]) -> None:
        rows.append(
            {
                "mode": mode,
                "iterations_per_workflow": k,
                "settings": settings,
                "sweep_s": round(makespan(per_trial, slots), 1),
                "trial_s": {
                    f"{t.config}-s{t.seed}": round(d, 1) for t, d in zip(trials, per_trial, strict=True)
                },
                "per_iteration_s": round(sum(per_trial) / iterations, 4),
            }
        )

    for label, timing in (("default 10 s", DEFAULT), ("shipped 1 s", SHIPPED)):
        for k in KS:
            per_trial = [argo_trial_seconds(t, times[t.config], k, timing, rtt) for t in trials]
            row("argo", k, label, per_trial)
    row(
        "hybrid",
        None,
        f"gateway +{gateway_s * 1000:.1f} ms/iteration, rtt {rtt * 1000:g} ms/level",
        [hybrid_trial_seconds(t, times[t.config], gateway_s, rtt) for t in trials],
    )
    row(
        "embedded",
        None,
        "warm pool, this machine",
        [hybrid_trial_seconds(t, times[t.config], 0.0, 0.0) for t in trials],
    )
    return rows


def markdown(record: dict[str, Any]) -> str:
    """The record as the results page."""
    rows = record["rows"]
    lines = [
        f"# Argo orchestration latency: the default sweep simulated ({record['date']})",
        "",
        f"{machine_sentence(record['machine'])} Revision: {record['revision']}. "
        f"Command: `{record['command']}`.",
        "",
        f"Sweep `{record['sweep']}`: {record['trials']} trials, {record['iterations']} iterations, "
        f"{record['max_parallel']} trials at a time. Simulated time (workflows/argo_latency.py: agent pod "
        f"start {DEFAULT.agent_start_s:g} s, result patches every ARGO_AGENT_PATCH_RATE, a controller "
        "reconcile per DAG level every DEFAULT_REQUEUE_TIME, the driver polling every second); compute per "
        "level measured on this machine (below).",
        "",
        "| mode | K | settings | sweep wall (h:mm:ss) | per iteration (s) | vs embedded |",
        "|---|---:|---|---:|---:|---:|",
    ]
    base = next(r for r in rows if r["mode"] == "embedded")["sweep_s"]
    for r in rows:
        k = r["iterations_per_workflow"] or "-"
        lines.append(
            f"| {r['mode']} | {k} | {r['settings']} | {_hms(r['sweep_s'])} | {r['per_iteration_s']:.3f} | "
            f"{r['sweep_s'] / base:.1f}x |"
        )
    lines += ["", "Measured per configuration (embedded engine, warm pool; ms, medians):", ""]
    lines += ["| config | collect | aggregate | update | evaluate | iteration | with evaluation | driver |"]
    lines += ["|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in record["measured"].items():
        ms = [
            round(x * 1000, 2) for x in (*t["levels"], t["evaluate"], t["wall"], t["wall_eval"], t["driver"])
        ]
        lines.append(f"| {name} | " + " | ".join(str(x) for x in ms) + " |")
    g = record["gateway"]
    lines += [
        "",
        f"Gateway per iteration: ({g['gateway_median_s']} - {g['embedded_median_s']}) s / "
        f"{g['zoo_iterations']} iterations = {g['per_iteration_ms']} ms, from `{g['source']}`.",
    ]
    if record["notes"]:
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure the level times, simulate every mode, record the result."""
    # results_io imports its sibling as a script does: this folder is on sys.path only when run as one.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from results_io import add_output_arguments, git_revision, publish

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure-iterations", type=int, default=24, help="iterations of each measuring run")
    ap.add_argument("--rtt-ms", type=float, default=1.0, help="network round trip per level to the gateway")
    add_output_arguments(ap)
    args = ap.parse_args(argv)
    if args.measure_iterations < 4:
        ap.error("--measure-iterations: at least 4 (the first two are left out)")
    load = os.getloadavg()
    trials, slots = _trials()
    gateway_s, gateway = _gateway_per_iteration(trials)
    from ftg_common.config import load_sweep

    configs = load_sweep(SWEEP.read_text(), str(SWEEP.parent)).trial_configs()
    with tempfile.TemporaryDirectory() as tmp:
        times = {
            name: measure(hp, args.measure_iterations, Path(tmp) / name, name) for name, hp in configs.items()
        }
    rows = simulate(trials, slots, times, gateway_s, args.rtt_ms / 1000)
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/bench_argo_latency.py "
        f"--measure-iterations {args.measure_iterations} --rtt-ms {args.rtt_ms:g}",
        "revision": git_revision(ROOT),
        "machine": machine_info(load),
        "sweep": str(SWEEP.relative_to(ROOT)),
        "trials": len(trials),
        "iterations": sum(t.iterations for t in trials),
        "max_parallel": slots,
        "timing": {
            "default": DEFAULT.__dict__,
            "shipped": SHIPPED.__dict__,
        },
        "rtt_ms": args.rtt_ms,
        "measured": {name: t.__dict__ for name, t in times.items()},
        "gateway": gateway,
        "rows": rows,
        "notes": args.notes,
    }
    publish(args.out, "argo-latency", record, markdown(record), suffix=args.suffix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
