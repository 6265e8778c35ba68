"""Side-by-side: Stable-Baselines3 DQN vs FaaSTrainGym DQN, RL-Zoo CartPole-v1 hyperparameters.

Measured as ``sb3_harness`` describes, on a 5e4-step budget. FaaSTrainGym runs the off-policy
iteration template on the embedded engine (warm worker pool), its replay buffer in a file object store
with the index in SQLite. Each side's medians over seeds, their FTG/SB3 ratios and every seed's figures
are written to benchmarks/results/.

    python benchmarks/bench_dqn_cartpole.py [--seeds 0,1,2] [--steps 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial

import sb3_harness as harness  # a sibling of this script; it puts the checkout on sys.path
from results_io import result_stem, write_result  # a sibling of this script

from ftg_common.config import DQNConfig

BUDGET = "5e4"  # the default step budget, as the summaries and the table name it
# RL Zoo, hyperparams/dqn.yml, CartPole-v1, as DQNConfig's defaults hold them (SB3's defaults for
# the rest: tau 1, max_grad_norm 10).
ZOO = harness.config_defaults(
    DQNConfig,
    "learning_rate batch_size buffer_size learning_starts gamma target_update_interval train_freq "
    "gradient_steps exploration_fraction exploration_final_eps",
)
NET_ARCH = list(DQNConfig().net_arch)


def run_sb3(seed: int, steps: int) -> dict:
    return harness.sb3_cartpole("DQN", seed, steps, n_envs=1, policy_kwargs=dict(net_arch=NET_ARCH), **ZOO)


def run_ftg(seed: int, steps: int, services) -> dict:
    """One FaaSTrainGym DQN run through the services' off-policy engine."""
    from ftg_common.config import RunConfig
    from workflows.driver import RunDriver

    dqn = DQNConfig(
        env_id="CartPole-v1",
        total_steps=steps,
        n_envs=1,
        shards=1,
        net_arch=NET_ARCH,
        eval_every_steps=harness.EVAL_EVERY,
        eval_episodes=harness.EVAL_EPISODES,
        threshold=harness.THRESHOLD,
        **ZOO,
    )
    cfg = RunConfig(run_id=f"bench-dqn-s{seed}-{int(time.time())}", seed=seed, dqn=dqn, config_name="zoo")
    driver = RunDriver(cfg, engine=services.engine_for(cfg), store=services.store, meta=services.meta)
    return harness.ftg_drive(driver)


def to_markdown(record: dict) -> str:
    lines = [
        f"# DQN CartPole-v1: Stable-Baselines3 vs FaaSTrainGym ({record['date']})",
        "",
        harness.machine_sentence(record) + "RL-Zoo hyperparameters (lr 2.3e-3, "
        "batch 64, buffer 1e5, learning_starts 1000, gamma 0.99, target_update_interval 10, train_freq 256, "
        "gradient_steps 128, exploration_fraction 0.16, final eps 0.04, net_arch [256, 256]), 10 "
        "deterministic eval episodes every 2048 steps. Medians over seeds. FaaSTrainGym: off-policy "
        "iteration template on the embedded engine, numpy backend, replay buffer in a file object store.",
        "",
        *harness.comparison_table(record, BUDGET),
    ]
    lines += ["", "Per seed (time to 475 excl. eval, s / steps / final return):", ""]
    for name in ("sb3", "ftg"):
        for seed, r in zip(record["seeds"], record["runs"][name], strict=True):
            f = r["first"] or {}
            lines.append(
                f"- {name} seed {seed}: {harness.fmt(f.get('time_s'))} s / {f.get('steps', '-')} steps / "
                f"{harness.fmt(r['final_return'])}; 5e4 steps {harness.fmt(r['wall_s'])} s"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    harness.add_comparison_arguments(ap, steps=50_000)
    args = ap.parse_args()
    seeds = harness.parse_seeds(args.seeds)
    load_before = os.getloadavg()
    services = harness.open_bench_services("ftg-bench-dqn-")
    try:
        runs = harness.run_interleaved(
            seeds, partial(run_sb3, steps=args.steps), partial(run_ftg, steps=args.steps, services=services)
        )
    finally:
        services.close()
    record = harness.comparison_record(load_before, seeds, args.steps, runs, BUDGET)
    write_result(args.out, result_stem("dqn-cartpole"), record, to_markdown(record))
    print(json.dumps(harness.headline(record), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
