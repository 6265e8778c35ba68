"""Cold-start policies on held-out traces: the baselines and the policies ``sweeps/coldstart.yaml`` trains.

Not to be confused with ``bench_coldstart.py`` (the start-up time of the function processes).

1. **Train** (unless ``--sweep-id`` names a finished sweep in the configured stores): the sweep's
   configurations x seeds through FaaSTrainGym's four functions on the embedded engine, in a fresh
   file object store and SQLite metadata store (a temporary folder); each trial's last committed version
   is its trained policy, acted on greedily.
2. **Evaluate on held-out days**: for each seed ``s`` of the sweep, the same ``--episodes`` episodes for
   every policy: the env of the sweep's ``env_kwargs`` with ``days`` replaced by ``--heldout-days``
   (Friday and Sunday; training starts on the other days) and reset seeds
   ``HELDOUT_SEED_BASE + 1000 s + k``, which no training episode uses. A baseline runs on the
   simulator of the env reset with that seed (the same functions, trace and cold-start latencies); a
   trained policy steps the env. Every figure of an (policy, seed) pair pools its episodes.
3. **Report**: per policy, the IQM over seeds with a 95% percentile-bootstrap interval of each figure;
   the trained policies' changes against on-demand scaling, the HPA-like autoscaler and the 10-minute
   keep-alive beside the paper's three headline figures; whether each trained policy is a Pareto
   improvement on the fixed keep-alive (cold-start rate and wasted memory time both lower), and where
   the hybrid histogram stands; a picture (cold-start rate vs wasted memory, IQM and interval per policy).
   Written to ``benchmarks/results/<date>-coldstart-policies.{json,md,png}`` and, unless
   ``--no-tracking``, logged to MLflow (the sweep's trials too).

    python benchmarks/bench_coldstart_policies.py [--seeds 0,1,2,3,4] [--episodes 8] [--no-tracking]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the checkout's packages, this folder included
    sys.path.insert(0, str(ROOT))

from machine_info import machine_info, machine_sentence  # noqa: E402  (a sibling of this script)
from results_io import add_output_arguments, git_revision, result_stem, utc_timestamp, write_result  # noqa: E402

from ftg_common.algos.stats import bootstrap_ci, iqm  # noqa: E402
from ftg_common.envs.coldstart.baselines import (  # noqa: E402
    AWS_KEEP_ALIVE_S,
    AZURE_KEEP_ALIVE_S,
    FixedKeepAlive,
    HistogramConfig,
    HorizontalPodAutoscaler,
    HybridHistogram,
    OnDemand,
)
from ftg_common.envs.coldstart.controller import Controller, run_controller  # noqa: E402
from ftg_common.envs.coldstart.metrics import EpisodeMetrics  # noqa: E402

if TYPE_CHECKING:
    import gymnasium as gym

    from workflows.sweep import Services

NAME = "coldstart-policies"
SWEEP = ROOT / "sweeps" / "coldstart.yaml"
HELDOUT_DAYS = (4, 6)
HELDOUT_SEED_BASE = 7_000_000
"""Evaluation reset seeds start here; the collector's and evaluator's seeds are derived hashes."""
WARMUP_SEED_BASE, WARMUP_EPISODES = 8_000_000, 24
"""The hybrid histogram's history: a day of one-hour episodes of the training days before evaluating."""
ON_DEMAND, KEEP_ALIVE_10, KEEP_ALIVE_20 = "on-demand", "keep-alive-10min", "keep-alive-20min"
HISTOGRAM, HPA = "hybrid-histogram", "hpa-cpu"
BASELINES: dict[str, Callable[[], Controller]] = {
    ON_DEMAND: OnDemand,
    KEEP_ALIVE_10: partial(FixedKeepAlive, AWS_KEEP_ALIVE_S),
    KEEP_ALIVE_20: partial(FixedKeepAlive, AZURE_KEEP_ALIVE_S),
    HISTOGRAM: partial(HybridHistogram, keep_history=True),
    HPA: HorizontalPodAutoscaler,
}
FRONTIER_MINUTES = (0, 1, 2, 3, 5, 10, 20, 30, 60)
"""Fixed keep-alives: the frontier a policy has to get below (0 is on-demand; 10 and 20 baselines)."""
FRONTIER: dict[str, Callable[[], Controller]] = {
    f"keep-alive-{m}min": partial(FixedKeepAlive, 60.0 * m) for m in FRONTIER_MINUTES
}
# (summary key, label, scale for the table, lower is better); extensive figures are per episode.
FIGURES: tuple[tuple[str, str, float, bool], ...] = (
    ("cold_start_rate", "cold-start rate %", 100.0, True),
    ("p75_function_cold_pct", "p75 function cold %", 1.0, True),
    ("wasted_memory_mb_s", "wasted memory GB*s/episode", 1 / 1024, True),
    ("throughput", "throughput (responses/episode)", 1.0, False),
    ("cpu_seconds", "CPU-s/episode", 1.0, True),
    ("latency_p50_s", "p50 latency s", 1.0, True),
    ("latency_p99_s", "p99 latency s", 1.0, True),
)
PER_EPISODE = ("wasted_memory_mb_s", "throughput", "cpu_seconds", "failed")
# The paper's headline figures (Agarwal, Rodriguez, Buyya 2024), "up to", against Kubeless' default
# scaling and a keep-alive policy.
PAPER = {"throughput": 8.81, "cpu_seconds": -55.0, "wasted_memory_mb_s": -37.0}
REFERENCES = (ON_DEMAND, HPA, KEEP_ALIVE_10)


# --- evaluation ------------------------------------------------------------------------------------
def episode_seeds(seed: int, episodes: int) -> list[int]:
    """Held-out reset seeds of seed ``seed``'s episodes (the same for every policy)."""
    return [HELDOUT_SEED_BASE + 1000 * seed + k for k in range(episodes)]


def heldout_kwargs(env_kwargs: Mapping[str, Any], days: Sequence[int]) -> dict[str, Any]:
    """The training ``env_kwargs`` with the held-out ``days``; refuses days the training also used."""
    trained = set(env_kwargs.get("days") or range(7))
    if trained & set(days):
        raise SystemExit(f"--heldout-days {sorted(days)} overlap the training days {sorted(trained)}")
    return {**env_kwargs, "days": list(days)}


def controller_metrics(env: gym.Env, controller: Controller, seeds: list[int]) -> EpisodeMetrics:
    """A baseline's figures pooled over the episodes of ``seeds``, one after the other."""
    total = EpisodeMetrics(env.unwrapped.n_functions)  # type: ignore[attr-defined]
    for s in seeds:
        env.reset(seed=s)
        total.merge(run_controller(env.unwrapped.sim, controller))  # type: ignore[attr-defined]
    return total


def policy_metrics(env: gym.Env, act: Callable[[np.ndarray], np.ndarray], seeds: list[int]) -> EpisodeMetrics:
    """A trained policy's greedy figures pooled over the episodes of ``seeds`` (obs [1, d] -> action [1])."""
    total = EpisodeMetrics(env.unwrapped.n_functions)  # type: ignore[attr-defined]
    for s in seeds:
        obs, _ = env.reset(seed=s)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(int(act(obs[None, :])[0]))
            total.add(env.unwrapped.sim)  # type: ignore[attr-defined]
            done = terminated or truncated
    return total


def figures(metrics: EpisodeMetrics, episodes: int) -> dict[str, float]:
    """The report's figures of pooled episodes; extensive ones per episode."""
    s = metrics.summary()
    out = {k: float(s.get(k, float("nan"))) for k, *_ in FIGURES}
    out.update({k: float(s[k]) / episodes for k in PER_EPISODE})
    return out


def aggregate(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Per figure: IQM over seeds, its 95% bootstrap interval, and the per-seed values."""
    out = {}
    for key in [k for k, *_ in FIGURES] + ["failed"]:
        x = np.array([d[key] for d in per_seed], dtype=np.float64)
        lo, hi = bootstrap_ci(x, iqm, n_resamples=2000, confidence=0.95, seed=0)
        out[key] = {"iqm": iqm(x), "ci": [lo, hi], "per_seed": x.tolist()}
    return out


def relative_changes(
    stats: Mapping[str, Any], trained: Sequence[str]
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per trained policy and reference baseline, the % change of the paper's three figures (IQMs)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for name in trained:
        out[name] = {}
        for ref in REFERENCES:
            # None where the reference's figure is 0 (on-demand wastes no memory): no ratio.
            out[name][ref] = {
                key: 100.0 * (stats[name][key]["iqm"] / stats[ref][key]["iqm"] - 1.0)
                if stats[ref][key]["iqm"]
                else None
                for key in PAPER
            }
    return out


def frontier_points(stats: Mapping[str, Any]) -> list[tuple[float, float]]:
    """(cold-start rate, wasted MB*s per episode) IQMs of the fixed keep-alives, by rising cold-start rate."""
    pts = [(stats[n]["cold_start_rate"]["iqm"], stats[n]["wasted_memory_mb_s"]["iqm"]) for n in FRONTIER]
    return sorted(pts)


def below_frontier(stats: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Wasted memory of ``name`` against the fixed keep-alive frontier's at the same cold-start rate.

    The frontier is interpolated linearly between keep-alives. Outside its cold-start range ``below`` is
    None and ``outside`` says on which side (``fewer``: fewer cold starts than any fixed keep-alive).
    """
    pts = frontier_points(stats)
    cold = stats[name]["cold_start_rate"]["iqm"]
    waste = stats[name]["wasted_memory_mb_s"]["iqm"]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    out: dict[str, Any] = {
        "cold_start_rate": cold,
        "wasted_memory_mb_s": waste,
        "frontier_range": [xs[0], xs[-1]],
    }
    if not xs[0] <= cold <= xs[-1]:
        return {**out, "below": None, "outside": "fewer" if cold < xs[0] else "more"}
    at = float(np.interp(cold, xs, ys))
    return {**out, "frontier_waste": at, "below": waste < at, "gap_pct": 100.0 * (waste / at - 1.0)}


def pareto(stats: Mapping[str, Any], a: str, b: str) -> dict[str, Any]:
    """Is ``a`` better than ``b`` on cold-start rate and wasted memory time together?

    ``verdict``: ``pareto-better`` (both IQMs lower), ``pareto-worse`` (both higher) or ``trade-off``;
    ``separated``: both intervals apart in ``a``'s favour; ``seeds_both_lower``: seeds (same episodes)
    on which ``a`` is lower on both.
    """
    keys = ("cold_start_rate", "wasted_memory_mb_s")
    lower = [stats[a][k]["iqm"] < stats[b][k]["iqm"] for k in keys]
    higher = [stats[a][k]["iqm"] > stats[b][k]["iqm"] for k in keys]
    verdict = "pareto-better" if all(lower) else "pareto-worse" if all(higher) else "trade-off"
    separated = all(stats[a][k]["ci"][1] < stats[b][k]["ci"][0] for k in keys)
    pairs = zip(
        *(zip(stats[a][k]["per_seed"], stats[b][k]["per_seed"], strict=True) for k in keys), strict=True
    )
    both = sum(all(x < y for x, y in pair) for pair in pairs)
    return {"versus": b, "verdict": verdict, "separated": separated, "seeds_both_lower": both}


# --- training --------------------------------------------------------------------------------------
def read_sweep(args: argparse.Namespace) -> Any:
    """The sweep file with ``--seeds`` / ``--total-steps`` applied (the submit command's own reader)."""
    from workflows.ppo_sweep import _read_sweep

    overrides = argparse.Namespace(
        seeds=args.seeds, max_parallel=None, total_steps=args.total_steps, only=None, zoo=None
    )
    return _read_sweep(str(args.sweep), overrides)


def temp_store_env() -> dict[str, str]:
    """``FTG_STORE_URL`` / ``FTG_META_URL`` of a new temporary folder (the worker processes read them too)."""
    work = tempfile.mkdtemp(prefix="ftg-bench-coldstart-")
    return {"FTG_STORE_URL": f"file://{work}/store", "FTG_META_URL": f"sqlite:///{work}/meta.db"}


def open_stores(tracking: bool, fresh: bool) -> Services:
    """FaaSTrainGym's services: on a fresh temporary store when ``fresh``, else the configured one."""
    os.environ.update(temp_store_env() if fresh else {})
    from ftg_common.settings import Settings
    from workflows.sweep import open_services

    return open_services(Settings(), tracking=tracking)


def load_greedy(services: Services, cfg: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The greedy action function of a trial's last committed version."""
    from ftg_common.checkpoints import load_numpy_policy, load_q_policy
    from ftg_common.policy.qtable import load_qtable_policy

    version = int(services.meta.get_run(cfg.run_id)["version"])
    loader = (
        load_qtable_policy
        if cfg.algo == "qlearning"
        else load_q_policy
        if cfg.off_policy
        else load_numpy_policy
    )
    policy = loader(services.store, cfg.run_id, version)
    return policy.act_deterministic  # type: ignore[no-any-return]


def trained_policies(services: Services, sweep_id: str) -> dict[str, dict[int, Any]]:
    """config name -> seed -> (greedy action function, the trial's env_kwargs)."""
    from workflows.sweep import load_trial_config

    out: dict[str, dict[int, Any]] = {}
    for rid in services.meta.get_sweep(sweep_id)["runs"]:
        cfg = load_trial_config(services, sweep_id, rid)
        if services.meta.get_run(rid)["status"] != "finished":
            raise SystemExit(f"trial {rid} of sweep {sweep_id} is not finished: resume it first")
        out.setdefault(cfg.config_name or rid, {})[cfg.seed] = (
            load_greedy(services, cfg),
            cfg.hparams.env_kwargs,
        )
    return out


# --- the report ------------------------------------------------------------------------------------
def evaluate(
    trained: Mapping[str, Mapping[int, Any]], seeds: Sequence[int], episodes: int, days: Sequence[int]
) -> tuple[dict[str, list[dict[str, float]]], dict[str, Any]]:
    """Per policy, one figures dict per seed; and the held-out env's run record."""
    from ftg_common.envs.coldstart.registration import COLDSTART_ID
    from ftg_common.envs.factory import make_env

    first = next(iter(next(iter(trained.values())).values())) if trained else (None, {})
    kwargs = heldout_kwargs(first[1], days)
    env, train_env = make_env(COLDSTART_ID, kwargs), make_env(COLDSTART_ID, first[1])
    per_seed: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        ep = episode_seeds(seed, episodes)
        for name, make in {**BASELINES, **FRONTIER}.items():
            controller = make()  # one per seed: the histogram keeps learning over the seed's episodes
            if name == HISTOGRAM:
                warmup = [WARMUP_SEED_BASE + 1000 * seed + k for k in range(WARMUP_EPISODES)]
                controller_metrics(train_env, controller, warmup)
            per_seed.setdefault(name, []).append(figures(controller_metrics(env, controller, ep), episodes))
        for name, by_seed in trained.items():
            act, env_kwargs = by_seed[seed]
            if heldout_kwargs(env_kwargs, days) != kwargs:
                raise SystemExit(f"config {name} trains on another env than the others: {env_kwargs}")
            per_seed.setdefault(name, []).append(figures(policy_metrics(env, act, ep), episodes))
    record = {"env_kwargs": kwargs, "train_env_kwargs": first[1], **env.unwrapped.run_record()}
    return per_seed, record


def plot(stats: Mapping[str, Any], trained: Sequence[str], path: Path) -> Path:
    """Cold-start rate vs wasted memory time, one point per policy (IQM) with its 95% intervals."""
    from workflows.plots import _colors, _figure, _save

    fig, ax = _figure(7.0, 4.8)
    shown = [n for n in stats if n in BASELINES or n in trained]  # other keep-alives: the frontier line
    for name, color in zip(shown, _colors(len(shown)), strict=True):
        x, y = stats[name]["cold_start_rate"], stats[name]["wasted_memory_mb_s"]
        cx, cy = 100.0 * x["iqm"], y["iqm"] / 1024
        xerr = [[cx - 100.0 * x["ci"][0]], [100.0 * x["ci"][1] - cx]]
        yerr = [[cy - y["ci"][0] / 1024], [y["ci"][1] / 1024 - cy]]
        marker = "*" if name in trained else "o"
        ax.errorbar(cx, cy, xerr=xerr, yerr=yerr, fmt=marker, color=color, ms=10, capsize=3, label=name)
    fx, fy = zip(*frontier_points(stats), strict=True)
    ax.plot(
        [100.0 * x for x in fx],
        [y / 1024 for y in fy],
        "--.",
        color="0.6",
        lw=1,
        label=f"fixed keep-alive {FRONTIER_MINUTES[0]}-{FRONTIER_MINUTES[-1]} min",
    )
    ax.set_xlabel("cold-start rate, % of requests (IQM over seeds, 95% CI)")
    ax.set_ylabel("wasted memory time, GB*s per episode")
    ax.set_title("FaaSColdStart-v0, held-out days: lower left is better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Path(_save(fig, path))


def _cell(entry: Mapping[str, Any], scale: float) -> str:
    lo, hi = entry["ci"]
    return f"{entry['iqm'] * scale:.3g} [{lo * scale:.3g}, {hi * scale:.3g}]"


def to_markdown(record: dict[str, Any], png: str) -> str:
    """The record as the markdown result."""
    stats, trained = record["stats"], record["trained"]
    head = "| policy | " + " | ".join(label for _, label, *_ in FIGURES) + " |"
    lines = [
        f"# Cold-start policies on held-out days ({record['date']})",
        "",
        machine_sentence(record["machine"]) + f" Revision: {record['revision']}. {record['summary']}",
        "",
        "IQM over seeds [95% bootstrap interval]; each seed pools "
        f"{record['episodes']} one-hour episodes; lower is better except throughput.",
        "",
        head,
        "|" + "---|" * (len(FIGURES) + 1),
    ]
    for name, s in stats.items():
        label = f"**{name}**" if name in trained else name
        lines.append(f"| {label} | " + " | ".join(_cell(s[k], scale) for k, _, scale, _ in FIGURES) + " |")
    lines += ["", "## Against the paper's headline figures (% change of the IQMs)", ""]
    lines += [
        "| policy | versus | throughput | computation load | resource wastage |",
        "|---|---|---|---|---|",
    ]
    lines.append(
        "| paper (Q-learning, Kubeless) | Kubeless default / keep-alive "
        "| up to +8.81% | up to -55% | up to -37% |"
    )
    for name, refs in record["relative"].items():
        for ref, ch in refs.items():
            cells = " | ".join("n/a" if ch[k] is None else f"{ch[k]:+.1f}%" for k in PAPER)
            lines.append(f"| {name} | {ref} | {cells} |")
    lines += ["", "## Pareto verdicts (cold-start rate and wasted memory time)", ""]
    for name, verdicts in record["pareto"].items():
        for v in verdicts:
            apart = "yes" if v["separated"] else "no"
            lines.append(
                f"- {name} vs {v['versus']}: **{v['verdict']}**; intervals apart: {apart}; "
                f"lower on both on {v['seeds_both_lower']}/{len(record['seeds'])} seeds"
            )
    lines += [
        "",
        f"## Against the fixed keep-alive frontier ({FRONTIER_MINUTES[0]}-{FRONTIER_MINUTES[-1]} min, "
        "interpolated at the same cold-start rate)",
        "",
    ]
    for name, b in record["below_frontier"].items():
        if b["below"] is None:
            side, edge = ("fewer", 0) if b["outside"] == "fewer" else ("more", 1)
            lines.append(
                f"- {name}: {side} cold starts ({100 * b['cold_start_rate']:.1f}%) than any fixed keep-alive "
                f"({100 * b['frontier_range'][edge]:.1f}% at the frontier's end), "
                f"{b['wasted_memory_mb_s'] / 1024:.0f} GB*s/episode wasted"
            )
        else:
            where = "below (better)" if b["below"] else "above (worse)"
            lines.append(
                f"- {name}: {where}, wasted memory {b['gap_pct']:+.1f}% against the frontier's "
                f"{b['frontier_waste'] / 1024:.0f} GB*s/episode"
            )
    lines += ["", f"![cold-start rate vs wasted memory]({png})", ""]
    if record.get("mlflow_run"):
        lines += [
            f"MLflow: run `{record['mlflow_run']}` (the figures, this file, the JSON and the picture).",
            "",
        ]
    lines += [record["notes"] or "", ""]
    return "\n".join(lines)


def json_safe(x: Any) -> Any:
    """``x`` with every non-finite float as its string (``"inf"``): strict JSON has no infinity."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def summary_sentence(record: dict[str, Any]) -> str:
    """Training and evaluation setup in one paragraph."""
    wall = record["train_wall_s"]
    trained_when = "by an earlier run" if wall is None else f"{wall:.0f} s"
    return (
        f"Sweep `{record['sweep']['name']}` ({', '.join(record['trained'])}; seeds {record['seeds']}; "
        f"sweep id `{record['sweep_id']}`), trained on days {record['train_days']} "
        f"({trained_when}), evaluated on held-out days {record['heldout_days']} "
        f"({record['eval_wall_s']:.0f} s; reset seeds {HELDOUT_SEED_BASE} + 1000 seed + k)."
    )


def log_tracking(services: Services, record: dict[str, Any], files: Sequence[Path]) -> str | None:
    """Log the figures and files as one MLflow run of the sweep's experiment; its id."""
    tracker = services.tracker
    if tracker is None:
        return None
    run = tracker.start_parent(f"bench-{NAME}-{record['date'][:10]}", {"benchmark": NAME})
    tracker.log_params(
        run, {"sweep_id": record["sweep_id"], "episodes": record["episodes"], "seeds": record["seeds"]}
    )
    metrics: dict[str, float | None] = {}
    for name, s in record["stats"].items():
        for key, *_ in FIGURES:
            metrics[f"{name}.{key}"] = s[key]["iqm"]
    tracker.log_metrics_now(run, metrics)
    for f in files:
        tracker.log_artifact(run, f)
    tracker.end_run(run)
    return str(run)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", default=str(SWEEP), help="the sweep file (default sweeps/coldstart.yaml)")
    ap.add_argument("--sweep-id", default=None, help="evaluate this finished sweep of the configured stores")
    ap.add_argument("--seeds", default=None, help="override the sweep's seeds, e.g. 0,1,2")
    ap.add_argument("--total-steps", type=int, default=None, help="override every config's total_steps")
    ap.add_argument("--episodes", type=int, default=8, help="held-out episodes per seed")
    ap.add_argument(
        "--heldout-days", default=",".join(map(str, HELDOUT_DAYS)), help="0: Monday ... 6: Sunday"
    )
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    add_output_arguments(ap)
    args = ap.parse_args()
    load_before = os.getloadavg()
    days = [int(d) for d in args.heldout_days.split(",")]
    sweep = read_sweep(args)
    services = open_stores(tracking=not args.no_tracking, fresh=args.sweep_id is None)
    try:
        t0 = time.perf_counter()
        if args.sweep_id is None:
            from rich.console import Console

            from workflows.sweep import submit

            sweep_id = submit(sweep, services, Console())
        else:
            sweep_id = args.sweep_id
        train_wall = time.perf_counter() - t0
        trained = trained_policies(services, sweep_id)
        seeds = sorted({s for by_seed in trained.values() for s in by_seed})
        t1 = time.perf_counter()
        per_seed, env_record = evaluate(trained, seeds, args.episodes, days)
        all_stats = {name: aggregate(rows) for name, rows in per_seed.items()}
        stats = {n: all_stats[n] for n in [*BASELINES, *trained]}
        record: dict[str, Any] = {
            "date": utc_timestamp(),
            "revision": git_revision(ROOT),
            "sweep": sweep.model_dump(mode="json"),
            "sweep_id": sweep_id,
            "trained": list(trained),
            "seeds": seeds,
            "episodes": args.episodes,
            "train_days": list(env_record["train_env_kwargs"].get("days") or range(7)),
            "heldout_days": days,
            "train_wall_s": train_wall if args.sweep_id is None else None,
            "eval_wall_s": time.perf_counter() - t1,
            "env": json_safe(env_record),  # an unbounded memory budget is inf
            "baselines": {
                HISTOGRAM: {
                    **HistogramConfig().as_dict(),
                    "keep_history": True,
                    "warmup_episodes": WARMUP_EPISODES,
                    "warmup_seeds": f"{WARMUP_SEED_BASE} + 1000 seed + k, training days",
                },
                HPA: {"target": 0.5, "stabilisation_s": 300.0, "tolerance": 0.1, "min_replicas": 1},
                KEEP_ALIVE_10: AWS_KEEP_ALIVE_S,
                KEEP_ALIVE_20: AZURE_KEEP_ALIVE_S,
            },
            "per_seed": per_seed,
            "stats": stats,
            "relative": relative_changes(stats, list(trained)),
            "frontier": {n: all_stats[n] for n in FRONTIER},
            "below_frontier": {n: below_frontier(all_stats, n) for n in [*trained, HISTOGRAM, HPA]},
            "pareto": {
                name: [pareto(stats, name, ref) for ref in (KEEP_ALIVE_10, KEEP_ALIVE_20)]
                for name in [*trained, HISTOGRAM]
            },
            "paper": PAPER,
            "notes": args.notes,
        }
        record["machine"] = machine_info(load_before)
        record["summary"] = summary_sentence(record)
        stem = result_stem(NAME, args.suffix)
        png = plot(all_stats, list(trained), Path(args.out) / f"{stem}.png")
        path = write_result(args.out, stem, record, to_markdown(record, png.name))
        record["mlflow_run"] = log_tracking(services, record, [path, path.with_suffix(".md"), png])
        if record["mlflow_run"]:
            write_result(args.out, stem, record, to_markdown(record, png.name))
        print(to_markdown(record, png.name))
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
