"""Side-by-side: Stable-Baselines3 PPO vs FaaSTrainGym PPO, RL-Zoo CartPole-v1 hyperparameters.

Measured as ``sb3_harness`` describes, on a 1e5-step budget: time and env steps to the first mean
evaluation return >= 475, wall time of the budget and the final return, each side's medians over
seeds and their FTG/SB3 ratios, plus where the time of a FaaSTrainGym iteration goes. ``--ftg-only``
skips SB3. Written to benchmarks/results/.

    python benchmarks/bench_ppo_cartpole.py [--seeds 0,1,2] [--steps 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial

import sb3_harness as harness  # a sibling of this script; it puts the checkout on sys.path
from iteration_split import IterationSplit, RecordingEngine  # a sibling of this script
from iteration_split import summarise as summarise_split
from results_io import result_stem, write_result  # a sibling of this script

from ftg_common.config import PPOConfig

BUDGET = "1e5"  # the default step budget, as the summaries and the table name it
# RL Zoo, hyperparams/ppo.yml, CartPole-v1 (learning rate and clip range linear), as PPOConfig's
# defaults hold them.
ZOO = harness.config_defaults(
    PPOConfig, "n_envs n_steps batch_size gae_lambda gamma n_epochs ent_coef learning_rate clip_range"
)


def run_sb3(seed: int, steps: int) -> dict:
    def linear(x: float):
        return lambda progress_remaining: progress_remaining * x

    # The Zoo's ``lin_`` rates: SB3 takes a schedule as a function of the progress remaining.
    schedules = {key: linear(ZOO[key]) for key in ("learning_rate", "clip_range")}
    return harness.sb3_cartpole("PPO", seed, steps, **{**ZOO, **schedules})


def run_ftg(seed: int, steps: int, services, engine: RecordingEngine) -> tuple[dict, list[IterationSplit]]:
    """One FaaSTrainGym run through ``engine`` (the services' engine, recording each iteration)."""
    from ftg_common.config import RunConfig
    from workflows.driver import RunDriver

    ppo = PPOConfig(
        env_id="CartPole-v1",
        total_steps=steps,
        shards=2,
        eval_every_steps=harness.EVAL_EVERY,
        eval_episodes=harness.EVAL_EPISODES,
        threshold=harness.THRESHOLD,
        lr_schedule="linear",
        clip_schedule="linear",
        **ZOO,
    )
    cfg = RunConfig(run_id=f"bench-s{seed}-{int(time.time())}", seed=seed, ppo=ppo, config_name="zoo")
    driver = RunDriver(cfg, engine=engine, store=services.store, meta=services.meta)
    engine.reset()
    result = harness.ftg_drive(driver)
    splits = engine.splits
    result["iteration_split"] = summarise_split(splits)
    return result, splits


def split_markdown(split: dict) -> list[str]:
    """The per-iteration split of FaaSTrainGym's iterations as markdown lines."""
    lines = [
        "",
        "## Where a FaaSTrainGym iteration goes (embedded engine, warm pool, 2 shards)",
        "",
        "Medians over the iterations of all seeds (the first 5 of each left out). Critical-path body: sum "
        "over DAG levels of the slowest step's own `seconds`. Overhead = wall - body; its share is "
        "1 - sum(body) / sum(wall). In calls, outside bodies: per level the slowest call as the engine "
        "timed it minus the slowest body (pool round trip, byte frames, JSON, validation, handler work after "
        "its clock stops). Engine: wall minus the critical path of calls.",
        "",
        "| iterations | n | wall (ms) | critical-path body (ms) | overhead (ms) | overhead % "
        "| in calls, outside bodies (ms) | engine (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, key in (
        ("all", "all"),
        ("without evaluation", "without_evaluation"),
        ("with evaluation", "with_evaluation"),
    ):
        b = split.get(key) or {}
        if not b:
            continue
        lines.append(
            f"| {label} | {b['iterations']} | {harness.fmt(b['wall_ms'])} | {harness.fmt(b['body_ms'])} | "
            f"{harness.fmt(b['overhead_ms'])} | {harness.fmt(b['overhead_pct'])} | "
            f"{harness.fmt(b['in_calls_outside_bodies_ms'])} | {harness.fmt(b['engine_ms'])} |"
        )
    levels = (split.get("all") or {}).get("by_level", {})
    if levels:
        lines += ["", "| level | body (ms) | call - body (ms) |", "|---|---|---|"]
        for level, v in levels.items():
            lines.append(
                f"| {level} | {harness.fmt(v['body_ms'])} | {harness.fmt(v['call_minus_body_ms'])} |"
            )
    lines += [
        "",
        "Driver time between iterations (not in the wall above): "
        f"{harness.fmt(split.get('driver_gap_ms'))} ms median.",
    ]
    return lines


def to_markdown(record: dict) -> str:
    title = "Stable-Baselines3 vs FaaSTrainGym" if record.get("sb3") else "FaaSTrainGym"
    lines = [
        f"# PPO CartPole-v1: {title} ({record['date']})",
        "",
        harness.machine_sentence(record)
        + "RL-Zoo hyperparameters, 10 deterministic eval episodes every 2048 steps. "
        "Medians over seeds.",
        "",
        *harness.comparison_table(record, BUDGET),
    ]
    if record.get("ftg_iteration_split"):
        lines += split_markdown(record["ftg_iteration_split"])
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    harness.add_comparison_arguments(ap, steps=100_000)
    ap.add_argument(
        "--ftg-only",
        action="store_true",
        help="skip Stable-Baselines3 (results go to <date>-ppo-cartpole-ftg-only.*)",
    )
    args = ap.parse_args()
    seeds = harness.parse_seeds(args.seeds)
    load_before = os.getloadavg()
    services = harness.open_bench_services("ftg-bench-")
    engine = RecordingEngine(services.engine)
    splits: list[IterationSplit] = []

    def ftg(seed: int) -> dict:
        result, seed_splits = run_ftg(seed, args.steps, services, engine)
        splits.extend(seed_splits[5:])  # each seed's first 5 are left out, as the table says
        return result

    try:
        sb3 = None if args.ftg_only else partial(run_sb3, steps=args.steps)
        runs = harness.run_interleaved(seeds, sb3, ftg)
    finally:
        services.close()
    split = summarise_split(splits, skip=0)
    record = harness.comparison_record(
        load_before, seeds, args.steps, runs, BUDGET, ftg_iteration_split=split
    )
    stem = result_stem("ppo-cartpole", "ftg-only" if args.ftg_only else "")
    write_result(args.out, stem, record, to_markdown(record))
    print(json.dumps(harness.headline(record), indent=2))
    print("\n".join(split_markdown(split)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
