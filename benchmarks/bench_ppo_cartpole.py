"""Side-by-side: Stable-Baselines3 PPO vs FaaSTrainGym PPO, RL-Zoo CartPole-v1 hyperparameters.

Same machine, same process, seeds interleaved (SB3 seed 0, FTG seed 0, SB3 seed 1, ...) so both see the
same background load. Each run evaluates 10 deterministic episodes every 2048 env steps and reports
wall time and env steps to the first mean evaluation return >= 475 (evaluation time excluded and
included), wall time for 1e5 steps, and the final return. Medians over seeds and FTG/SB3 ratios are
written to benchmarks/results/.

    python benchmarks/bench_ppo_cartpole.py [--seeds 0,1,2] [--steps 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iteration_split import IterationSplit, RecordingEngine  # noqa: E402  (a sibling of this script)
from iteration_split import summarise as summarise_split  # noqa: E402
from machine_info import machine_info  # noqa: E402  (a sibling of this script)

THRESHOLD = 475.0
EVAL_EVERY = 2048
EVAL_EPISODES = 10
ZOO = dict(
    n_envs=8,
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate=1e-3,
    clip_range=0.2,
)


def run_sb3(seed: int, steps: int) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    env = make_vec_env("CartPole-v1", n_envs=ZOO["n_envs"], seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 10_000)

    def linear(x: float):
        return lambda progress_remaining: progress_remaining * x

    model = PPO(
        "MlpPolicy",
        env,
        n_steps=ZOO["n_steps"],
        batch_size=ZOO["batch_size"],
        gae_lambda=ZOO["gae_lambda"],
        gamma=ZOO["gamma"],
        n_epochs=ZOO["n_epochs"],
        ent_coef=ZOO["ent_coef"],
        learning_rate=linear(ZOO["learning_rate"]),
        clip_range=linear(ZOO["clip_range"]),
        seed=seed,
        device="cpu",
        verbose=0,
    )

    class Timer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.eval_s = 0.0
            self.first: dict | None = None
            self.final = None
            self.next_eval = EVAL_EVERY

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.next_eval += EVAL_EVERY
                t = time.perf_counter()
                mean, _ = evaluate_policy(
                    self.model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True
                )
                self.eval_s += time.perf_counter() - t
                self.final = float(mean)
                if self.first is None and mean >= THRESHOLD:
                    incl = time.perf_counter() - self.t0
                    self.first = {
                        "steps": self.num_timesteps,
                        "time_incl_eval_s": incl,
                        "time_s": incl - self.eval_s,
                    }
            return True

    cb = Timer()
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=cb)
    wall = time.perf_counter() - t0
    return {"wall_s": wall - cb.eval_s, "wall_incl_eval_s": wall, "first": cb.first, "final_return": cb.final}


def run_ftg(seed: int, steps: int, services, engine: RecordingEngine) -> tuple[dict, list[IterationSplit]]:
    """One FaaSTrainGym run through ``engine`` (the services' engine, recording each iteration)."""
    from ftg_common.config import PPOConfig, RunConfig
    from workflows.driver import RunDriver

    ppo = PPOConfig(
        env_id="CartPole-v1",
        total_steps=steps,
        shards=2,
        eval_every_steps=EVAL_EVERY,
        eval_episodes=EVAL_EPISODES,
        threshold=THRESHOLD,
        lr_schedule="linear",
        clip_schedule="linear",
        **ZOO,
    )
    cfg = RunConfig(run_id=f"bench-s{seed}-{int(time.time())}", seed=seed, ppo=ppo, config_name="zoo")
    driver = RunDriver(cfg, engine=engine, store=services.store, meta=services.meta)
    engine.reset()
    t0 = time.perf_counter()
    s = driver.drive()
    wall = time.perf_counter() - t0
    first = None
    if s.threshold_step is not None:
        first = {
            "steps": s.threshold_step,
            "time_s": s.threshold_time_s,
            "time_incl_eval_s": s.threshold_time_incl_eval_s,
        }
    splits = engine.splits
    result = {
        "wall_s": wall - s.eval_s,
        "wall_incl_eval_s": wall,
        "first": first,
        "final_return": s.final_return,
        "iteration_split": summarise_split(splits),
    }
    return result, splits


def median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(runs: list[dict]) -> dict:
    reached = [r for r in runs if r["first"]]
    return {
        "reached": f"{len(reached)}/{len(runs)}",
        "time_to_475_s": median([r["first"]["time_s"] for r in reached]),
        "time_to_475_incl_eval_s": median([r["first"]["time_incl_eval_s"] for r in reached]),
        "steps_to_475": median([r["first"]["steps"] for r in reached]),
        "wall_1e5_s": median([r["wall_s"] for r in runs]),
        "wall_1e5_incl_eval_s": median([r["wall_incl_eval_s"] for r in runs]),
        "final_return": median([r["final_return"] for r in runs]),
    }


def split_markdown(split: dict) -> list[str]:
    """The per-iteration split of FaaSTrainGym's iterations as markdown lines."""

    def fmt(x) -> str:
        return "-" if x is None else f"{x:,.2f}"

    lines = [
        "",
        "## Where a FaaSTrainGym iteration goes (embedded engine, warm pool, 2 shards)",
        "",
        "Medians over the iterations of all seeds (the first 5 of each left out). Critical-path body: sum "
        "over DAG levels of the slowest step's own `seconds`. Overhead = wall - body; its share is "
        "1 - sum(body) / sum(wall). In calls, outside bodies: per level the slowest call as the engine "
        "timed it minus the slowest body (pool round trip, pickling, JSON, validation, handler work after "
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
            f"| {label} | {b['iterations']} | {fmt(b['wall_ms'])} | {fmt(b['body_ms'])} | "
            f"{fmt(b['overhead_ms'])} | {fmt(b['overhead_pct'])} | "
            f"{fmt(b['in_calls_outside_bodies_ms'])} | {fmt(b['engine_ms'])} |"
        )
    levels = (split.get("all") or {}).get("by_level", {})
    if levels:
        lines += ["", "| level | body (ms) | call - body (ms) |", "|---|---|---|"]
        for level, v in levels.items():
            lines.append(f"| {level} | {fmt(v['body_ms'])} | {fmt(v['call_minus_body_ms'])} |")
    lines += [
        "",
        "Driver time between iterations (not in the wall above): "
        f"{fmt(split.get('driver_gap_ms'))} ms median.",
    ]
    return lines


def to_markdown(record: dict) -> str:
    rows = [
        ("time to first eval >= 475, evaluation excluded (s)", "time_to_475_s"),
        ("time to first eval >= 475, evaluation included (s)", "time_to_475_incl_eval_s"),
        ("env steps to first eval >= 475", "steps_to_475"),
        ("1e5 steps, evaluation excluded (s)", "wall_1e5_s"),
        ("1e5 steps, evaluation included (s)", "wall_1e5_incl_eval_s"),
    ]

    def fmt(x) -> str:
        return "-" if x is None else f"{x:,.2f}"

    m = record["machine"]
    sb3 = record.get("sb3")
    title = "Stable-Baselines3 vs FaaSTrainGym" if sb3 else "FaaSTrainGym"
    lines = [
        f"# PPO CartPole-v1: {title} ({record['date']})",
        "",
        f"Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, torch {m['torch']}, "
        f"numpy {m['numpy']}, SB3 {m['sb3']}, 1-min load average "
        f"{m.get('loadavg_1min_at_start', '-')} at the start and {m.get('loadavg_1min_at_end', '-')} at the "
        f"end. Seeds {record['seeds']}, {record['steps']:,} steps, "
        "RL-Zoo hyperparameters, 10 deterministic eval episodes every 2048 steps. Medians over seeds.",
        "",
        "| measure | SB3 | FaaSTrainGym | FTG / SB3 |",
        "|---|---|---|---|",
    ]
    for label, key in rows:
        ratio = record["ratio_ftg_over_sb3"].get(key)
        lines.append(
            f"| {label} | {fmt(sb3[key]) if sb3 else '-'} | {fmt(record['ftg'][key])} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    lines.append(f"| seeds reaching 475 | {sb3['reached'] if sb3 else '-'} | {record['ftg']['reached']} | |")
    lines.append(
        f"| final mean eval return | {fmt(sb3['final_return']) if sb3 else '-'} | "
        f"{fmt(record['ftg']['final_return'])} | |"
    )
    if record.get("ftg_iteration_split"):
        lines += split_markdown(record["ftg_iteration_split"])
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument(
        "--ftg-only",
        action="store_true",
        help="skip Stable-Baselines3 (results go to <date>-ppo-cartpole-ftg-only.*)",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    load_before = os.getloadavg()

    work = tempfile.mkdtemp(prefix="ftg-bench-")
    os.environ.update({"FTG_STORE_URL": f"file://{work}/store", "FTG_META_URL": f"sqlite:///{work}/meta.db"})
    from ftg_common.settings import Settings
    from workflows.sweep import open_services

    services = open_services(Settings(), tracking=False)  # the pool is warm before any clock starts
    engine = RecordingEngine(services.engine)
    results: dict[str, list[dict]] = {"sb3": [], "ftg": []}
    splits: list[IterationSplit] = []
    try:
        for seed in seeds:
            if not args.ftg_only:
                results["sb3"].append(run_sb3(seed, args.steps))
                print(f"sb3 seed {seed}: {results['sb3'][-1]}", flush=True)
            result, seed_splits = run_ftg(seed, args.steps, services, engine)
            results["ftg"].append(result)
            splits += seed_splits[5:]
            print(f"ftg seed {seed}: {results['ftg'][-1]}", flush=True)
    finally:
        services.close()
    sb3 = None if args.ftg_only else summarise(results["sb3"])
    ftg = summarise(results["ftg"])
    keys = ("time_to_475_s", "time_to_475_incl_eval_s", "steps_to_475", "wall_1e5_s", "wall_1e5_incl_eval_s")
    ratios = {
        k: (ftg[k] / sb3[k] if sb3 and isinstance(ftg[k], float | int) and sb3[k] else None) for k in keys
    }
    split = summarise_split(splits, skip=0)
    import numpy
    import stable_baselines3
    import torch

    record = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_info(
            load_before, torch=torch.__version__, numpy=numpy.__version__, sb3=stable_baselines3.__version__
        ),
        "seeds": seeds,
        "steps": args.steps,
        "sb3": sb3,
        "ftg": ftg,
        "ratio_ftg_over_sb3": ratios,
        "ftg_iteration_split": split,
        "runs": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y-%m-%d", time.gmtime()) + "-ppo-cartpole" + ("-ftg-only" if args.ftg_only else "")
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    (out / f"{stem}.md").write_text(to_markdown(record))
    print(json.dumps({"sb3": sb3, "ftg": ftg, "ratio_ftg_over_sb3": ratios}, indent=2))
    print("\n".join(split_markdown(split)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
