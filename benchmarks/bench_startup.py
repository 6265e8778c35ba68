"""The fixed cost around a run: start-up and wind-down of ``ppo_sweep.py submit`` for one trial.

    python benchmarks/bench_startup.py [--repeats 3] [--total-steps 100000] [--modes tracking,no-tracking]

Runs ``python workflows/ppo_sweep.py submit --only zoo --seeds 0`` (the default sweep's RL-Zoo
configuration, one seed) as a fresh process through ``benchmarks/cli_timeline.py`` and reports, per
mode (MLflow tracking on, the default, and ``--no-tracking``):

- start-up: process start (the moment this script spawns it) -> the first DAG iteration starts;
- first-iteration excess: how much longer the first iteration took than the median one (work deferred
  out of start-up, e.g. a pool still warming, shows here instead of disappearing);
- wind-down: the last DAG iteration ends -> the process has exited;
- the training loop in between, and the phases inside start-up and wind-down.

All repeats of a mode share one working directory (object store, metadata store, ``mlflow.db``), as a
user's checkout does; an untimed first run creates the MLflow database, so its schema migration (once
per checkout) is not charged to every run. Medians over repeats are written to
``benchmarks/results/<date>-startup.{json,md}``. The machine is shared: read ratios and medians, not
single runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import results_io  # a sibling of this script
from machine_info import machine_info  # a sibling of this script

ROOT = Path(__file__).resolve().parents[1]
TIMELINE = Path(__file__).resolve().parent / "cli_timeline.py"
TARGET_S = 2.0


Event = tuple[str, str, float, str]  # (name, "start" | "end", epoch seconds, thread id)

# Probe name -> label, in the order of a run; see PROBES in cli_timeline.py.
PHASES: tuple[tuple[str, str], ...] = (
    ("interpreter", "interpreter start (spawn -> first line of the CLI)"),
    ("cli_to_services", "CLI imports and reading the sweep (-> open_services)"),
    ("open_services", "open_services (stores, tracker, pool, compiled DAG)"),
    ("tracker_init", "  Tracker() (MLflow import, client, experiment)"),
    ("pool_warmup", "  PoolInvoker.warmup (workers import handlers, torch)"),
    ("build_dag", "  iteration_manifest (Hera)"),
    ("compile_dag", "  compile_workflow"),
    ("services_to_first_iteration", "open_services -> first iteration (MLflow runs, prepare)"),
    ("prepare", "  RunDriver.prepare (config, run record, policy version 0)"),
    ("end_run", "Tracker.end_run (flush metrics, close the child run)"),
    ("loop_to_finalize", "last iteration -> finalize"),
    ("finalize", "finalize (model logging, champion, A/B table)"),
    ("log_model", "  log_policy_model"),
    ("set_champion", "  set_champion"),
    ("close", "Services.close"),
    ("tracker_close", "  Tracker.close"),
    ("pool_close", "  PoolInvoker.close"),
    ("teardown", "interpreter teardown (last exit handler -> process gone)"),
)


def parse_events(text: str) -> list[Event]:
    """``name kind t thread`` lines, in the order they were written."""
    events: list[Event] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            events.append((parts[0], parts[1], float(parts[2]), parts[3] if len(parts) > 3 else ""))
    return events


def durations(events: list[Event], name: str) -> list[tuple[float, float]]:
    """(start, end) of every completed call of probe ``name``; calls pair up per thread (stack order)."""
    open_calls: dict[str, list[float]] = {}
    spans: list[tuple[float, float]] = []
    for ev_name, kind, t, thread in events:
        if ev_name != name:
            continue
        if kind == "start":
            open_calls.setdefault(thread, []).append(t)
        elif open_calls.get(thread):
            spans.append((open_calls[thread].pop(), t))
    return sorted(spans)


def timeline(events: list[Event], spawned: float, exited: float) -> dict[str, Any]:
    """Start-up, wind-down and their phases (seconds) from one run's events."""
    iterations = durations(events, "iteration")
    if not iterations:
        raise RuntimeError("the run recorded no DAG iteration")
    walls = [e - s for s, e in iterations]
    median_wall = statistics.median(walls)
    first_start = iterations[0][0]
    last_end = max(e for _, e in iterations)

    def total(name: str) -> float | None:
        spans = durations(events, name)
        return sum(e - s for s, e in spans) if spans else None

    def first(name: str, kind: str) -> float | None:
        return next((t for n, k, t, _ in events if n == name and k == kind), None)

    def last(name: str, kind: str) -> float | None:
        return next((t for n, k, t, _ in reversed(events) if n == name and k == kind), None)

    phases: dict[str, float | None] = {name: total(name) for name, _ in PHASES}
    interpreter, services, services_end = (
        first("process", "start"),
        first("open_services", "start"),
        last("open_services", "end"),
    )
    finalize, exiting = first("finalize", "start"), last("exit_handlers", "end")
    phases["interpreter"] = None if interpreter is None else interpreter - spawned
    phases["cli_to_services"] = None if interpreter is None or services is None else services - interpreter
    phases["services_to_first_iteration"] = None if services_end is None else first_start - services_end
    phases["loop_to_finalize"] = None if finalize is None else finalize - last_end
    phases["teardown"] = None if exiting is None else exited - exiting
    return {
        "startup_s": first_start - spawned,
        "winddown_s": exited - last_end,
        "first_iteration_excess_s": walls[0] - median_wall,
        "loop_s": last_end - first_start,
        "process_s": exited - spawned,
        "iterations": len(iterations),
        "median_iteration_s": median_wall,
        "phases": phases,
    }


def run_once(root: Path, work: Path, cli_args: list[str], log: Path) -> dict[str, Any]:
    events_path = work / "events.txt"
    env = {
        **os.environ,
        "FTG_STORE_URL": f"file://{work}/store",
        "FTG_META_URL": f"sqlite:///{work}/meta.db",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, str(TIMELINE), str(events_path), str(root), "--", "submit", *cli_args]
    with log.open("ab") as out:
        spawned = time.time()
        proc = subprocess.run(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
        exited = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}; see {log}")
    return timeline(parse_events(events_path.read_text()), spawned, exited)


def _median(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "startup_s",
        "winddown_s",
        "first_iteration_excess_s",
        "loop_s",
        "process_s",
        "median_iteration_s",
    )
    out: dict[str, Any] = {k: _median([r[k] for r in runs]) for k in keys}
    out["startup_plus_excess_s"] = _median(
        [r["startup_s"] + max(r["first_iteration_excess_s"], 0.0) for r in runs]
    )
    out["phases"] = {k: _median([r["phases"].get(k) for r in runs]) for k, _ in PHASES}
    return out


def to_markdown(record: dict[str, Any]) -> str:
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    columns = [(v, md) for v in record["variants"] for md in record["variants"][v]]
    several = len(record["variants"]) > 1

    def head(first: str) -> list[str]:
        names = [f"{v}, {md}" if several else md for v, md in columns]
        return [f"| {first} | " + " | ".join(names) + " |", "|---|" + "---|" * len(columns)]

    def summary(v: str, md: str) -> dict[str, Any]:
        out: dict[str, Any] = record["variants"][v][md]["summary"]
        return out

    lines = [
        f"# Start-up and wind-down of `ppo_sweep.py {' '.join(record['cli_args'])}` ({record['date']})",
        "",
        results_io.checkout_sentence(record)
        + f"{record['repeats']} timed runs per column after one untimed run"
        f"{', variants interleaved run by run' if several else ''}; medians. Target: start-up and wind-down "
        f"each <= {TARGET_S:.0f} s.",
        "",
        *head("seconds"),
    ]
    rows = [
        ("start-up: process start -> first iteration starts", "startup_s"),
        ("first-iteration excess over the median iteration", "first_iteration_excess_s"),
        ("wind-down: last iteration ends -> process exited", "winddown_s"),
        ("training loop (first iteration start -> last end)", "loop_s"),
        ("whole process", "process_s"),
        ("median iteration", "median_iteration_s"),
    ]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(summary(v, md)[key]) for v, md in columns) + " |")
    lines += [
        "",
        "Phases (sums of call durations, medians over runs; indented ones run inside the one above):",
        "",
        *head("phase (s)"),
    ]
    for key, label in PHASES:
        values = [summary(v, md)["phases"].get(key) for v, md in columns]
        if any(x is not None for x in values):
            lines.append(f"| {label} | " + " | ".join(fmt(x) for x in values) + " |")
    if record.get("notes"):
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--total-steps", type=int, help="override total_steps (default: the sweep's 100000)")
    ap.add_argument("--modes", default="tracking,no-tracking")
    results_io.add_roots_argument(ap, ROOT)
    results_io.add_output_arguments(ap, notes="a sentence")
    args = ap.parse_args()
    roots = results_io.parse_roots(args.roots)
    load_before = os.getloadavg()
    cli_args = ["--only", "zoo", "--seeds", "0"]
    if args.total_steps:
        cli_args += ["--total-steps", str(args.total_steps)]
    variants: dict[str, dict[str, Any]] = {label: {} for label in roots}
    for mode in args.modes.split(","):
        extra = ["--no-tracking"] if mode == "no-tracking" else []
        works = {label: Path(tempfile.mkdtemp(prefix=f"ftg-startup-{label}-{mode}-")) for label in roots}
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in roots}
        try:
            for label, root in roots.items():  # untimed: creates mlflow.db, warms the page cache
                run_once(root, works[label], cli_args + extra, works[label] / "cli.log")
            for i in range(args.repeats):
                for label, root in roots.items():
                    r = run_once(root, works[label], cli_args + extra, works[label] / "cli.log")
                    runs[label].append(r)
                    print(
                        f"{label} {mode} run {i}: start-up {r['startup_s']:.2f} s, wind-down "
                        f"{r['winddown_s']:.2f} s, first-iteration excess "
                        f"{r['first_iteration_excess_s']:.2f} s, loop {r['loop_s']:.2f} s",
                        flush=True,
                    )
        finally:
            for work in works.values():
                shutil.rmtree(work, ignore_errors=True)
        for label in roots:
            variants[label][mode] = {"summary": summarise(runs[label]), "runs": runs[label]}
    record = results_io.checkout_record(
        machine_info(load_before),
        roots,
        args.notes,
        own_checkout=False,
        cli_args=["submit", *cli_args],
        repeats=args.repeats,
        variants=variants,
    )
    results_io.publish(args.out, "startup", record, to_markdown(record), suffix=args.suffix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
