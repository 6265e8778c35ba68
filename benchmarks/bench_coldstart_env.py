"""Control steps per second of ``FaaSColdStart-v0`` on one core (target: at least 20,000).

    python benchmarks/bench_coldstart_env.py [--seconds 3] [--repeats 3] [--suffix S] [--notes "..."]

One process, one thread: the figure is per core. Each case steps envs made as the rollout-collector
makes them (``ftg_common.envs.factory.make_env``, i.e. gymnasium's ``OrderEnforcing`` wrapper) with
actions drawn beforehand, resetting every finished episode (120 steps of 30 s by default) inside the
timed loop, so episode generation (function draw, trace, simulator) is included:

- ``default``: the default env (one bursty function, the paper's 3-value observation), random actions;
- ``default_hold``: the same, always action 5 (no pre-warm or release): the simulator alone at work;
- ``extended_obs``: the 6-value observation;
- ``busy_20_per_min``: the default function at 20 invocations a minute (10 per step) instead of its 1.3;
- ``multi_8``: ``FaaSColdStartMulti-v0``, 8 functions sharing a 2 GB budget, random actions;
- ``simulator_only``: :class:`Simulator` stepped without gymnasium on the default env's episodes.

Each case runs ``--repeats`` times for ``--seconds``; the record keeps every repeat, the best and the
median. The machine is shared: the record holds the 1-minute load average at the start and the end.
Results go to ``benchmarks/results/<date>-coldstart-env[-suffix].{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import results_io  # a sibling of this script
from machine_info import machine_info, machine_sentence  # a sibling of this script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ftg_common.envs.coldstart.registration import COLDSTART_ID, COLDSTART_MULTI_ID  # noqa: E402
from ftg_common.envs.factory import make_env  # noqa: E402

Case = Callable[[float], tuple[int, float]]


def _env_case(env_id: str, kwargs: dict[str, Any], hold: bool) -> Case:
    env = make_env(env_id, kwargs)
    n = 100_000
    if hold:
        actions: list[Any] = [env.action_space.n // 2] * n  # type: ignore[attr-defined]  # Discrete: the middle
    else:
        env.action_space.seed(0)
        actions = [env.action_space.sample() for _ in range(n)]

    def run(seconds: float) -> tuple[int, float]:
        env.reset(seed=0)
        steps, arrivals = 0, 0.0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(1000):
                _, _, _, trunc, info = env.step(actions[steps % n])
                arrivals += info["arrivals"]
                steps += 1
                if trunc:
                    env.reset()
        return steps, arrivals

    return run


def _simulator_case() -> Case:
    env: Any = make_env(COLDSTART_ID).unwrapped

    def run(seconds: float) -> tuple[int, float]:
        env.reset(seed=0)
        steps, arrivals = 0, 0.0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            sim = env.sim
            for _ in range(env.episode_steps):
                sim.step()
                arrivals += sim.rows[0][0]
            steps += env.episode_steps
            env.reset()
        return steps, arrivals

    return run


def _measure(case: Case, seconds: float, repeats: int) -> dict[str, Any]:
    rates, per_step = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        steps, arrivals = case(seconds)
        elapsed = time.perf_counter() - start
        rates.append(steps / elapsed)
        per_step.append(arrivals / steps)
    return {
        "steps_per_second": [round(r) for r in rates],
        "best": round(max(rates)),
        "median": round(statistics.median(rates)),
        "microseconds_per_step_best": round(1e6 / max(rates), 1),
        "arrivals_per_step": round(statistics.mean(per_step), 2),
    }


CASES: dict[str, tuple[str, Callable[[], Case]]] = {
    "default": ("FaaSColdStart-v0, random actions", lambda: _env_case(COLDSTART_ID, {}, hold=False)),
    "default_hold": ("FaaSColdStart-v0, action 5 (hold)", lambda: _env_case(COLDSTART_ID, {}, hold=True)),
    "extended_obs": (
        "FaaSColdStart-v0, observation=extended, random actions",
        lambda: _env_case(COLDSTART_ID, {"observation": "extended"}, hold=False),
    ),
    "busy_20_per_min": (
        "FaaSColdStart-v0, rate_per_min=20, random actions",
        lambda: _env_case(COLDSTART_ID, {"rate_per_min": 20.0}, hold=False),
    ),
    "multi_8": (
        "FaaSColdStartMulti-v0 (8 functions, 2 GB budget), random actions",
        lambda: _env_case(COLDSTART_MULTI_ID, {}, hold=False),
    ),
    "simulator_only": ("Simulator.step without gymnasium (default env's episodes)", _simulator_case),
}


def _markdown(record: dict[str, Any]) -> str:
    lines = [
        f"# FaaSColdStart-v0: control steps per second per core ({record['date']})",
        "",
        machine_sentence(record["machine"], [("numpy", "numpy"), ("gymnasium", "gymnasium")])
        + f" Revision: {record['revision']}.",
        f"Command: `python benchmarks/bench_coldstart_env.py --seconds {record['seconds']} "
        f"--repeats {record['repeats']}`. One process, one thread; episodes of 120 steps (30 s each) "
        "reset inside the timed loop. Target: at least 20,000 steps/s.",
        "",
        "| case | steps/s best | median | µs/step (best) | arrivals/step |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in record["cases"].values():
        lines.append(
            f"| {r['label']} | {r['best']:,} | {r['median']:,} | {r['microseconds_per_step_best']} "
            f"| {r['arrivals_per_step']} |"
        )
    if record["notes"]:
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one repeat of one case")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    results_io.add_output_arguments(ap)
    args = ap.parse_args()
    import gymnasium

    load = os.getloadavg()
    cases: dict[str, Any] = {}
    for name in args.cases.split(","):
        label, build = CASES[name]
        cases[name] = {"label": label, **_measure(build(), args.seconds, args.repeats)}
    record = {
        "date": results_io.utc_timestamp(),
        "machine": machine_info(load, numpy=np.__version__, gymnasium=gymnasium.__version__),
        "revision": results_io.git_revision(Path(__file__).resolve().parents[1]),
        "seconds": args.seconds,
        "repeats": args.repeats,
        "target_steps_per_second": 20_000,
        "cases": cases,
        "notes": args.notes,
    }
    results_io.publish(args.out, "coldstart-env", record, _markdown(record), suffix=args.suffix)


if __name__ == "__main__":
    main()
