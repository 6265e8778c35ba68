"""Side-by-side on the five classic-control RL Zoo PPO entries: Stable-Baselines3 vs FaaSTrainGym.

Both read the same entries of an RL Zoo ``ppo.yml`` (default: the copy under tests/data/zoo): SB3 through
its own constructor arguments and ``VecNormalize``, FaaSTrainGym through ``ftg_common.zoo`` (what a user
gets from ``ppo_sweep.py submit --zoo``). Same machine, same process, seeds interleaved (SB3 seed 0,
FTG seed 0, SB3 seed 1, ...) so both see the same background load. Each run evaluates 10 deterministic
episodes 20 times over its budget (observations normalised with the frozen statistics, raw rewards).
Per task: the IQM of the final evaluation returns over seeds with a 95% bootstrap CI, env steps and
wall time (evaluation excluded) to the first evaluation at or above the solved threshold, wall time of
the whole budget, and the FTG/SB3 ratio.

    python benchmarks/bench_zoo.py [--seeds 0,1,2] [--envs CartPole-v1,...] [--steps ENV=N,...]

``--steps`` reduces (or raises) a budget; a record says which budgets were not the Zoo's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine_info import machine_info  # noqa: E402  (a sibling of this script)

ENVS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0")
# The gymnasium registry's reward thresholds; Pendulum-v1 registers none, and -200 is the return
# commonly read as solved for it.
THRESHOLDS = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "MountainCar-v0": -110.0,
    "Pendulum-v1": -200.0,
    "MountainCarContinuous-v0": 90.0,
}
EVALS_PER_RUN = 20
EVAL_EPISODES = 10


def _schedule(kind: str, value: float) -> Any:
    if kind == "linear":
        return lambda progress_remaining: progress_remaining * value
    return value


def run_sb3(cfg: dict[str, Any], seed: int, steps: int, eval_every: int, threshold: float) -> dict[str, Any]:
    """One SB3 PPO run from a translated Zoo entry (``ZooEntry.config``)."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    env = make_vec_env(cfg["env_id"], n_envs=cfg["n_envs"], seed=seed)
    eval_env = make_vec_env(cfg["env_id"], n_envs=1, seed=seed + 10_000)
    norm = cfg["normalize"]
    if norm is not None:
        env = VecNormalize(env, **norm)
        eval_env = VecNormalize(eval_env, training=False, **{**norm, "norm_reward": False})
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[cfg["activation"]]
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=cfg["n_steps"],
        batch_size=cfg["batch_size"],
        n_epochs=cfg["n_epochs"],
        gamma=cfg["gamma"],
        gae_lambda=cfg["gae_lambda"],
        learning_rate=_schedule(cfg["lr_schedule"], cfg["learning_rate"]),
        clip_range=_schedule(cfg["clip_schedule"], cfg["clip_range"]),
        clip_range_vf=cfg["clip_range_vf"],
        ent_coef=cfg["ent_coef"],
        vf_coef=cfg["vf_coef"],
        max_grad_norm=cfg["max_grad_norm"],
        normalize_advantage=cfg["normalize_advantage"],
        target_kl=cfg["target_kl"],
        use_sde=cfg["use_sde"],
        sde_sample_freq=cfg["sde_sample_freq"],
        policy_kwargs={
            "net_arch": {"pi": list(cfg["net_arch"]), "vf": list(cfg["net_arch"])},
            "activation_fn": activation,
            "log_std_init": cfg["log_std_init"],
            "ortho_init": cfg["ortho_init"],
        },
        seed=seed,
        device="cpu",
        verbose=0,
    )

    class Evaluator(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.eval_s = 0.0
            self.first: dict[str, float] | None = None
            self.curve: list[tuple[int, float]] = []
            self.next_eval = eval_every

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _evaluate(self) -> None:
            t = time.perf_counter()
            if norm is not None:
                eval_env.obs_rms = env.obs_rms  # frozen: the training statistics as they stand
            mean, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
            self.eval_s += time.perf_counter() - t
            self.curve.append((self.num_timesteps, float(mean)))
            if self.first is None and mean >= threshold:
                self.first = {
                    "steps": self.num_timesteps,
                    "time_s": time.perf_counter() - self.t0 - self.eval_s,
                }

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.next_eval += eval_every
                self._evaluate()
            return True

        def _on_training_end(self) -> None:
            if not self.curve or self.curve[-1][0] != self.num_timesteps:
                self._evaluate()

    cb = Evaluator()
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=cb)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall - cb.eval_s,
        "first": cb.first,
        "final_return": cb.curve[-1][1],
        "curve": cb.curve,
    }


def run_ftg(
    cfg: dict[str, Any], seed: int, steps: int, eval_every: int, threshold: float, services: Any
) -> dict[str, Any]:
    """One FaaSTrainGym run of the same translated entry, through the embedded engine."""
    from ftg_common.config import PPOConfig, RunConfig
    from workflows.driver import RunDriver

    ppo = PPOConfig(
        **{
            **cfg,
            "total_steps": steps,
            "eval_every_steps": eval_every,
            "eval_episodes": EVAL_EPISODES,
            "threshold": threshold,
        }
    )
    name = cfg["env_id"].lower().replace("_", "-")
    cfg_run = RunConfig(
        run_id=f"zoo-{name}-s{seed}-{int(time.time())}", seed=seed, ppo=ppo, config_name="zoo"
    )
    driver = RunDriver(cfg_run, engine=services.engine, store=services.store, meta=services.meta)
    t0 = time.perf_counter()
    s = driver.drive()
    wall = time.perf_counter() - t0
    first = None
    if s.threshold_step is not None:
        first = {"steps": s.threshold_step, "time_s": s.threshold_time_s}
    return {"wall_s": wall - s.eval_s, "first": first, "final_return": s.final_return, "curve": s.evals}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """IQM of the final returns with a 95% bootstrap CI, and medians of the rest, over seeds."""
    import numpy as np

    from ftg_common.algos.stats import bootstrap_ci, iqm

    finals = np.array([r["final_return"] for r in runs], dtype=np.float64)
    reached = [r["first"] for r in runs if r["first"]]
    low, high = bootstrap_ci(finals, iqm)

    def median(xs: list[float]) -> float | None:
        return float(np.median(xs)) if xs else None

    return {
        "final_iqm": iqm(finals),
        "final_ci": [low, high],
        "reached": f"{len(reached)}/{len(runs)}",
        "steps_to_threshold": median([f["steps"] for f in reached]),
        "time_to_threshold_s": median([f["time_s"] for f in reached]),
        "wall_s": median([r["wall_s"] for r in runs]),
    }


def overlap(a: list[float], b: list[float]) -> bool:
    """Whether two intervals share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


def to_markdown(record: dict[str, Any]) -> str:
    def fmt(x: Any, digits: int = 1) -> str:
        return "-" if x is None else f"{x:,.{digits}f}"

    m = record["machine"]
    lines = [
        f"# RL Zoo PPO, classic control: Stable-Baselines3 vs FaaSTrainGym ({record['date']})",
        "",
        f"Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, torch {m['torch']}, "
        f"numpy {m['numpy']}, SB3 {m['sb3']}, 1-min load average {m.get('loadavg_1min_at_start', '-')} at "
        f"the start and {m.get('loadavg_1min_at_end', '-')} at the end. Seeds {record['seeds']}; "
        f"entries from `{record['zoo_file']}`; {EVAL_EPISODES} deterministic evaluation episodes "
        f"{EVALS_PER_RUN} times per run. Final return: IQM over seeds of the last evaluation, 95% "
        "bootstrap CI. Times exclude evaluation; medians over seeds.",
        "",
    ]
    reduced = {k: v for k, v in record["budgets"].items() if v != record["zoo_budgets"][k]}
    if reduced:
        lines += [
            "**Budgets reduced** (the Zoo's did not fit the time available for this run): "
            + ", ".join(f"{k} {v:,} steps (Zoo: {record['zoo_budgets'][k]:,})" for k, v in reduced.items())
            + ". Returns at a reduced budget are not the Zoo's final returns.",
            "",
        ]
    lines += [
        "| task | steps | rollout/iter | threshold | SB3 final IQM [CI] | FTG final IQM [CI] | CIs overlap "
        "| reached SB3 / FTG | steps to thr. SB3 / FTG | wall s SB3 | wall s FTG | FTG / SB3 wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for env_id, t in record["tasks"].items():
        sb3, ftg = t["sb3"], t["ftg"]
        ratio = ftg["wall_s"] / sb3["wall_s"] if sb3["wall_s"] else None
        lines.append(
            f"| {env_id} | {record['budgets'][env_id]:,} | {t['rollout']:,} | {fmt(t['threshold'], 0)} | "
            f"{fmt(sb3['final_iqm'])} [{fmt(sb3['final_ci'][0])}, {fmt(sb3['final_ci'][1])}] | "
            f"{fmt(ftg['final_iqm'])} [{fmt(ftg['final_ci'][0])}, {fmt(ftg['final_ci'][1])}] | "
            f"{'yes' if overlap(sb3['final_ci'], ftg['final_ci']) else 'no'} | "
            f"{sb3['reached']} / {ftg['reached']} | "
            f"{fmt(sb3['steps_to_threshold'], 0)} / {fmt(ftg['steps_to_threshold'], 0)} | "
            f"{fmt(sb3['wall_s'])} | {fmt(ftg['wall_s'])} | {'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    lines += ["", "Translation notes (adjustments / items not honoured) per task:", ""]
    for env_id, t in record["tasks"].items():
        notes = [f"adjusted: {a}" for a in t["adjustments"]] + [f"not honoured: {u}" for u in t["unhonoured"]]
        lines.append(f"- {env_id}: {'; '.join(notes) if notes else 'none'}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--envs", default=",".join(ENVS))
    ap.add_argument("--zoo", default=str(ROOT / "tests" / "data" / "zoo" / "ppo.yml"))
    ap.add_argument(
        "--steps", default="", help="budget overrides, e.g. Acrobot-v1=200000,MountainCar-v0=200000"
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    envs = [e for e in args.envs.split(",") if e]
    overrides = {k: int(float(v)) for k, v in (kv.split("=") for kv in args.steps.split(",") if kv)}
    load_before = os.getloadavg()

    from ftg_common.zoo import load_zoo_entry

    entries = {env_id: load_zoo_entry(args.zoo, env_id) for env_id in envs}
    zoo_budgets = {e: entries[e].config["total_steps"] for e in envs}
    budgets = {e: overrides.get(e, zoo_budgets[e]) for e in envs}

    work = tempfile.mkdtemp(prefix="ftg-bench-zoo-")
    os.environ.update({"FTG_STORE_URL": f"file://{work}/store", "FTG_META_URL": f"sqlite:///{work}/meta.db"})
    from ftg_common.settings import Settings
    from workflows.sweep import open_services

    services = open_services(Settings(), tracking=False)  # the pool is warm before any clock starts
    tasks: dict[str, Any] = {}
    try:
        for env_id in envs:
            entry, steps, threshold = entries[env_id], budgets[env_id], THRESHOLDS[env_id]
            cfg = entry.ppo_kwargs()
            rollout = cfg["n_envs"] * cfg["n_steps"]
            eval_every = max(rollout, steps // EVALS_PER_RUN)
            runs: dict[str, list[dict[str, Any]]] = {"sb3": [], "ftg": []}
            for seed in seeds:
                runs["sb3"].append(run_sb3(cfg, seed, steps, eval_every, threshold))
                print(f"{env_id} sb3 seed {seed}: {runs['sb3'][-1]['final_return']:.1f}", flush=True)
                runs["ftg"].append(run_ftg(cfg, seed, steps, eval_every, threshold, services))
                print(f"{env_id} ftg seed {seed}: {runs['ftg'][-1]['final_return']:.1f}", flush=True)
            tasks[env_id] = {
                "threshold": threshold,
                "rollout": rollout,
                "config": cfg,
                "adjustments": list(entry.adjustments),
                "unhonoured": [str(u) for u in entry.unhonoured],
                "sb3": summarise(runs["sb3"]),
                "ftg": summarise(runs["ftg"]),
                "runs": runs,
            }
    finally:
        services.close()
    import numpy
    import stable_baselines3
    import torch

    record = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_info(
            load_before, torch=torch.__version__, numpy=numpy.__version__, sb3=stable_baselines3.__version__
        ),
        "seeds": seeds,
        "zoo_file": os.path.relpath(args.zoo, ROOT),
        "zoo_budgets": zoo_budgets,
        "budgets": budgets,
        "tasks": tasks,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y-%m-%d", time.gmtime()) + "-zoo-classic-control"
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    (out / f"{stem}.md").write_text(to_markdown(record))
    print(to_markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
