"""What the Stable-Baselines3-vs-FaaSTrainGym benchmarks share: timing, summaries, tables, services.

Same machine, same process, seeds interleaved (SB3 seed 0, FTG seed 0, SB3 seed 1, ...) so both sides
see the same background load, and both are measured the same way: deterministic evaluations every
``every`` env steps; the first one at or above the threshold marks "time to threshold" (evaluation
time excluded and included); the whole run's wall time is taken without and with evaluation. A run is
the dict ``{"wall_s", "wall_incl_eval_s", "first", "final_return"}``; ``first`` is None when the
threshold was never reached. The summaries are medians over seeds, keyed by the step budget's label
(``1e5``, ``5e4``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from machine_info import machine_info  # a sibling of this module
from machine_info import machine_sentence as describe_machine
from results_io import RESULTS, utc_timestamp

# The checkout, importable (ftg_common, workflows) by the benchmarks that import this module.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The comparison's protocol, the same for every algorithm: CartPole-v1's solved return, and 10
# deterministic evaluation episodes every 2048 env steps.
THRESHOLD = 475.0
EVAL_EVERY = 2048
EVAL_EPISODES = 10

Run = dict[str, Any]


def add_comparison_arguments(ap: argparse.ArgumentParser, *, steps: int) -> None:
    """``--seeds``, ``--steps`` (default ``steps``) and ``--out``."""
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--out", default=str(RESULTS))


def parse_seeds(spec: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]."""
    return [int(s) for s in spec.split(",")]


def sb3_learn(
    model: Any,
    eval_env: Any,
    steps: int,
    *,
    every: int = EVAL_EVERY,
    episodes: int = EVAL_EPISODES,
    threshold: float = THRESHOLD,
) -> Run:
    """Train an SB3 ``model`` for ``steps`` env steps, evaluating on ``eval_env`` every ``every`` steps.

    Args:
        model: the SB3 algorithm, built on its training env.
        eval_env: a one-env vec env of its own seed.
        steps: total env steps.
        every: env steps between evaluations (the defaults are the protocol above).
        episodes: deterministic episodes per evaluation.
        threshold: the mean return that counts as reached.

    Returns:
        The run (see the module docstring); evaluation time is measured and taken out of ``wall_s``.
    """
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    class Timer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.eval_s = 0.0
            self.first: dict[str, Any] | None = None
            self.final: float | None = None
            self.next_eval = every

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.next_eval += every
                t = time.perf_counter()
                mean, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=episodes, deterministic=True)
                self.eval_s += time.perf_counter() - t
                self.final = float(mean)
                if self.first is None and mean >= threshold:
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


def config_defaults(config_cls: Any, names: str) -> dict[str, Any]:
    """The defaults of a config class's fields ``names`` (space-separated), by name.

    The PPO and DQN configs default to the RL Zoo's CartPole-v1 hyperparameters, so the comparisons
    give both sides these values from one place.
    """
    defaults = config_cls()
    return {name: getattr(defaults, name) for name in names.split()}


def sb3_cartpole(algo: str, seed: int, steps: int, *, n_envs: int, **hyperparams: Any) -> Run:
    """One SB3 run of ``algo`` (``PPO``, ``DQN``) on CartPole-v1 under the protocol above.

    One torch thread, CPU, an ``MlpPolicy`` on ``n_envs`` training envs seeded ``seed``, evaluated on an
    env of its own seed (``seed + 10_000``) by :func:`sb3_learn`.

    Args:
        algo: the name of the SB3 algorithm class.
        seed: the run's seed.
        steps: total env steps.
        n_envs: training envs.
        **hyperparams: the algorithm's constructor arguments (the RL Zoo's, as the caller lists them).
    """
    import stable_baselines3
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 10_000)
    algo_cls = getattr(stable_baselines3, algo)
    model = algo_cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hyperparams)
    return sb3_learn(model, eval_env, steps)


def ftg_drive(driver: Any) -> Run:
    """Drive one FaaSTrainGym run (a ``RunDriver``) to its end; the run as :func:`sb3_learn` reports one.

    The driver's own summary says when the threshold was reached and how long evaluation took.
    """
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


def open_bench_services(prefix: str) -> Any:
    """FaaSTrainGym's services on a fresh file object store and SQLite metadata store, tracking off.

    The worker pool is warm when this returns, so no clock started afterwards pays for it.
    """
    work = tempfile.mkdtemp(prefix=prefix)
    os.environ.update({"FTG_STORE_URL": f"file://{work}/store", "FTG_META_URL": f"sqlite:///{work}/meta.db"})
    from ftg_common.settings import Settings
    from workflows.sweep import open_services

    return open_services(Settings(), tracking=False)


def run_interleaved(
    seeds: list[int], sb3: Callable[[int], Run] | None, ftg: Callable[[int], Run]
) -> dict[str, list[Run]]:
    """Each seed's SB3 run (unless ``sb3`` is None) then its FaaSTrainGym run, printing each as it ends.

    Interleaving seeds, rather than all of one side first, lets both sides see the same background load.
    """
    runs: dict[str, list[Run]] = {"sb3": [], "ftg": []}
    for seed in seeds:
        for name, run in (("sb3", sb3), ("ftg", ftg)):
            if run is not None:
                runs[name].append(run(seed))
                print(f"{name} seed {seed}: {runs[name][-1]}", flush=True)
    return runs


def comparison_record(
    load_before: tuple[float, float, float],
    seeds: list[int],
    steps: int,
    runs: dict[str, list[Run]],
    budget: str,
    **extra: Any,
) -> dict[str, Any]:
    """The result record: machine, settings, both sides' summaries, their ratios, ``extra``, the runs.

    Args:
        load_before: ``os.getloadavg()`` as the benchmark started.
        seeds: the seeds run.
        steps: the step budget of each run.
        runs: ``sb3`` (empty when SB3 was skipped: its summary is then None) and ``ftg`` runs, by seed.
        budget: the budget's label in the summaries' keys.
        **extra: further entries, placed before the runs.
    """
    sb3 = summarise(runs["sb3"], budget) if runs["sb3"] else None
    ftg = summarise(runs["ftg"], budget)
    return {
        "date": utc_timestamp(),
        "machine": sb3_machine(load_before),
        "seeds": seeds,
        "steps": steps,
        "sb3": sb3,
        "ftg": ftg,
        "ratio_ftg_over_sb3": ftg_over_sb3(ftg, sb3, budget),
        **extra,
        "runs": runs,
    }


def headline(record: dict[str, Any]) -> dict[str, Any]:
    """The summaries and ratios of a record: what a benchmark prints when it ends."""
    return {k: record[k] for k in ("sb3", "ftg", "ratio_ftg_over_sb3")}


def median(xs: Sequence[float | None]) -> float | None:
    """The median of the values that are not None (None if there are none)."""
    present = [x for x in xs if x is not None]
    return statistics.median(present) if present else None


def summary_keys(budget: str) -> tuple[str, ...]:
    """The figures a summary has and a ratio is taken of, for a step budget labelled ``budget``."""
    return (
        "time_to_475_s",
        "time_to_475_incl_eval_s",
        "steps_to_475",
        f"wall_{budget}_s",
        f"wall_{budget}_incl_eval_s",
    )


def summarise(runs: list[Run], budget: str) -> dict[str, Any]:
    """Medians over seeds; the time and step figures only over the runs that reached the threshold."""
    reached = [r for r in runs if r["first"]]
    return {
        "reached": f"{len(reached)}/{len(runs)}",
        "time_to_475_s": median([r["first"]["time_s"] for r in reached]),
        "time_to_475_incl_eval_s": median([r["first"]["time_incl_eval_s"] for r in reached]),
        "steps_to_475": median([r["first"]["steps"] for r in reached]),
        f"wall_{budget}_s": median([r["wall_s"] for r in runs]),
        f"wall_{budget}_incl_eval_s": median([r["wall_incl_eval_s"] for r in runs]),
        "final_return": median([r["final_return"] for r in runs]),
    }


def ftg_over_sb3(ftg: dict[str, Any], sb3: dict[str, Any] | None, budget: str) -> dict[str, float | None]:
    """FTG / SB3 of each summary figure (None where either side has none, or without SB3)."""
    return {
        k: (ftg[k] / sb3[k] if sb3 and isinstance(ftg[k], float | int) and sb3[k] else None)
        for k in summary_keys(budget)
    }


def sb3_machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """The record's ``machine``, with the torch, numpy and SB3 versions."""
    import numpy
    import stable_baselines3
    import torch

    return machine_info(
        load_before, torch=torch.__version__, numpy=numpy.__version__, sb3=stable_baselines3.__version__
    )


def fmt(x: float | None) -> str:
    """A figure for a table: two decimals with thousands separators, ``-`` for none."""
    return "-" if x is None else f"{x:,.2f}"


def machine_sentence(record: dict[str, Any]) -> str:
    """``Machine: ... Seeds [..], N steps, ``: the start of a result's description (the caller ends it)."""
    versions = (("torch", "torch"), ("numpy", "numpy"), ("SB3", "sb3"))
    return (
        describe_machine(record["machine"], versions)
        + f" Seeds {record['seeds']}, {record['steps']:,} steps, "
    )


def comparison_table(record: dict[str, Any], budget: str) -> list[str]:
    """The SB3 | FaaSTrainGym | FTG/SB3 table of a record's summaries (SB3's column ``-`` without it)."""
    rows = (
        ("time to first eval >= 475, evaluation excluded (s)", "time_to_475_s"),
        ("time to first eval >= 475, evaluation included (s)", "time_to_475_incl_eval_s"),
        ("env steps to first eval >= 475", "steps_to_475"),
        (f"{budget} steps, evaluation excluded (s)", f"wall_{budget}_s"),
        (f"{budget} steps, evaluation included (s)", f"wall_{budget}_incl_eval_s"),
    )
    sb3, ftg = record.get("sb3"), record["ftg"]
    lines = ["| measure | SB3 | FaaSTrainGym | FTG / SB3 |", "|---|---|---|---|"]
    for label, key in rows:
        ratio = record["ratio_ftg_over_sb3"].get(key)
        lines.append(
            f"| {label} | {fmt(sb3[key]) if sb3 else '-'} | {fmt(ftg[key])} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    lines.append(f"| seeds reaching 475 | {sb3['reached'] if sb3 else '-'} | {ftg['reached']} | |")
    lines.append(
        f"| final mean eval return | {fmt(sb3['final_return']) if sb3 else '-'} | "
        f"{fmt(ftg['final_return'])} | |"
    )
    return lines
