"""Side-by-side: Stable-Baselines3 DQN vs FaaSTrainGym DQN, RL-Zoo CartPole-v1 hyperparameters.

Same machine, same process, seeds interleaved (SB3 seed 0, FTG seed 0, SB3 seed 1, ...) so both see the
same background load. Each run evaluates 10 deterministic episodes every 2048 env steps and reports
wall time and env steps to the first mean evaluation return >= 475 (evaluation time excluded and
included), wall time for 5e4 steps, and the final return. FaaSTrainGym runs the off-policy iteration
template on the embedded engine (warm worker pool), its replay buffer in a file object store with the
index in SQLite. Medians over seeds and FTG/SB3 ratios are written to benchmarks/results/.

    python benchmarks/bench_dqn_cartpole.py [--seeds 0,1,2] [--steps 50000]
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

from machine_info import machine_info  # noqa: E402  (a sibling of this script)

THRESHOLD = 475.0
EVAL_EVERY = 2048
EVAL_EPISODES = 10
# RL Zoo, hyperparams/dqn.yml, CartPole-v1 (SB3's defaults for the rest: tau 1, max_grad_norm 10).
ZOO = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
)
NET_ARCH = [256, 256]


def run_sb3(seed: int, steps: int) -> dict:
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 10_000)
    model = DQN(
        "MlpPolicy",
        env,
        policy_kwargs=dict(net_arch=NET_ARCH),
        seed=seed,
        device="cpu",
        verbose=0,
        **ZOO,
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


def run_ftg(seed: int, steps: int, services) -> dict:
    """One FaaSTrainGym DQN run through the services' off-policy engine."""
    from ftg_common.config import DQNConfig, RunConfig
    from workflows.driver import RunDriver

    dqn = DQNConfig(
        env_id="CartPole-v1",
        total_steps=steps,
        n_envs=1,
        shards=1,
        net_arch=NET_ARCH,
        eval_every_steps=EVAL_EVERY,
        eval_episodes=EVAL_EPISODES,
        threshold=THRESHOLD,
        **ZOO,
    )
    cfg = RunConfig(run_id=f"bench-dqn-s{seed}-{int(time.time())}", seed=seed, dqn=dqn, config_name="zoo")
    driver = RunDriver(cfg, engine=services.engine_for(cfg), store=services.store, meta=services.meta)
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
    return {
        "wall_s": wall - s.eval_s,
        "wall_incl_eval_s": wall,
        "first": first,
        "final_return": s.final_return,
    }


def median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(runs: list[dict]) -> dict:
    reached = [r for r in runs if r["first"]]
    return {
        "reached": f"{len(reached)}/{len(runs)}",
        "time_to_475_s": median([r["first"]["time_s"] for r in reached]),
        "time_to_475_incl_eval_s": median([r["first"]["time_incl_eval_s"] for r in reached]),
        "steps_to_475": median([r["first"]["steps"] for r in reached]),
        "wall_5e4_s": median([r["wall_s"] for r in runs]),
        "wall_5e4_incl_eval_s": median([r["wall_incl_eval_s"] for r in runs]),
        "final_return": median([r["final_return"] for r in runs]),
    }


KEYS = ("time_to_475_s", "time_to_475_incl_eval_s", "steps_to_475", "wall_5e4_s", "wall_5e4_incl_eval_s")


def to_markdown(record: dict) -> str:
    rows = [
        ("time to first eval >= 475, evaluation excluded (s)", "time_to_475_s"),
        ("time to first eval >= 475, evaluation included (s)", "time_to_475_incl_eval_s"),
        ("env steps to first eval >= 475", "steps_to_475"),
        ("5e4 steps, evaluation excluded (s)", "wall_5e4_s"),
        ("5e4 steps, evaluation included (s)", "wall_5e4_incl_eval_s"),
    ]

    def fmt(x) -> str:
        return "-" if x is None else f"{x:,.2f}"

    m, sb3, ftg = record["machine"], record["sb3"], record["ftg"]
    lines = [
        f"# DQN CartPole-v1: Stable-Baselines3 vs FaaSTrainGym ({record['date']})",
        "",
        f"Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, torch {m['torch']}, "
        f"numpy {m['numpy']}, SB3 {m['sb3']}, 1-min load average "
        f"{m.get('loadavg_1min_at_start', '-')} at the start and {m.get('loadavg_1min_at_end', '-')} at the "
        f"end. Seeds {record['seeds']}, {record['steps']:,} steps, RL-Zoo hyperparameters (lr 2.3e-3, "
        "batch 64, buffer 1e5, learning_starts 1000, gamma 0.99, target_update_interval 10, train_freq 256, "
        "gradient_steps 128, exploration_fraction 0.16, final eps 0.04, net_arch [256, 256]), 10 "
        "deterministic eval episodes every 2048 steps. Medians over seeds. FaaSTrainGym: off-policy "
        "iteration template on the embedded engine, numpy backend, replay buffer in a file object store.",
        "",
        "| measure | SB3 | FaaSTrainGym | FTG / SB3 |",
        "|---|---|---|---|",
    ]
    for label, key in rows:
        ratio = record["ratio_ftg_over_sb3"].get(key)
        lines.append(
            f"| {label} | {fmt(sb3[key])} | {fmt(ftg[key])} | {'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    lines.append(f"| seeds reaching 475 | {sb3['reached']} | {ftg['reached']} | |")
    lines.append(f"| final mean eval return | {fmt(sb3['final_return'])} | {fmt(ftg['final_return'])} | |")
    lines += ["", "Per seed (time to 475 excl. eval, s / steps / final return):", ""]
    for name in ("sb3", "ftg"):
        for seed, r in zip(record["seeds"], record["runs"][name], strict=True):
            f = r["first"] or {}
            lines.append(
                f"- {name} seed {seed}: {fmt(f.get('time_s'))} s / {f.get('steps', '-')} steps / "
                f"{fmt(r['final_return'])}; 5e4 steps {fmt(r['wall_s'])} s"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    load_before = os.getloadavg()

    work = tempfile.mkdtemp(prefix="ftg-bench-dqn-")
    os.environ.update({"FTG_STORE_URL": f"file://{work}/store", "FTG_META_URL": f"sqlite:///{work}/meta.db"})
    from ftg_common.settings import Settings
    from workflows.sweep import open_services

    services = open_services(Settings(), tracking=False)  # the pool is warm before any clock starts
    results: dict[str, list[dict]] = {"sb3": [], "ftg": []}
    try:
        for seed in seeds:
            results["sb3"].append(run_sb3(seed, args.steps))
            print(f"sb3 seed {seed}: {results['sb3'][-1]}", flush=True)
            results["ftg"].append(run_ftg(seed, args.steps, services))
            print(f"ftg seed {seed}: {results['ftg'][-1]}", flush=True)
    finally:
        services.close()
    sb3, ftg = summarise(results["sb3"]), summarise(results["ftg"])
    ratios = {k: (ftg[k] / sb3[k] if isinstance(ftg[k], float | int) and sb3[k] else None) for k in KEYS}
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
        "runs": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y-%m-%d", time.gmtime()) + "-dqn-cartpole"
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    (out / f"{stem}.md").write_text(to_markdown(record))
    print(json.dumps({"sb3": sb3, "ftg": ftg, "ratio_ftg_over_sb3": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
