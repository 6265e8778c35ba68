"""The A/B table of a sweep.

Per configuration: final-return IQM with a bootstrap CI over seeds, steps and time to threshold, wall
time and cost. Pure functions over run summaries; printing and logging happen at the caller.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ftg_common.algos.stats import bootstrap_ci, iqm

if TYPE_CHECKING:
    from rich.table import Table

    from workflows.cost import SweepCost


@dataclass(frozen=True)
class TrialRow:
    """One trial's summary as the table needs it (None where the trial has not got that far)."""

    run_id: str
    config: str
    seed: int
    status: str
    final_return: float | None
    threshold_step: int | None
    threshold_time_s: float | None
    threshold_time_incl_eval_s: float | None
    wall_s: float
    steps: int
    gb_s: float
    algo: str = "ppo"


@dataclass(frozen=True)
class ConfigRow:
    """One configuration's line of the A/B table."""

    config: str
    seeds: int
    finished: int
    final_iqm: float | None
    ci_low: float | None
    ci_high: float | None
    final_mean: float | None
    reached: int
    median_steps_to_threshold: float | None
    median_time_to_threshold_s: float | None
    median_wall_s: float | None
    total_gb_s: float
    faas_usd: float
    dedicated_usd: float
    algo: str = "ppo"


def _median(xs: list[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def compare(
    trials: list[TrialRow], usd_per_gb_s: float, dedicated_usd_per_hour: float, seed: int = 0
) -> list[ConfigRow]:
    """One row per configuration, in first-seen order.

    The CI is a percentile bootstrap of the IQM over seeds (95 %); with one seed it collapses to the
    point value.
    """
    rows: list[ConfigRow] = []
    for name in dict.fromkeys(t.config for t in trials):
        group = [t for t in trials if t.config == name]
        finals = [t.final_return for t in group if t.final_return is not None]
        lo = hi = point = None
        if finals:
            sample = np.asarray(finals, dtype=np.float64)
            point = float(iqm(sample))
            lo, hi = bootstrap_ci(sample, seed=seed) if len(finals) > 1 else (point, point)
        reached = [t for t in group if t.threshold_step is not None]
        wall = sum(t.wall_s for t in group)
        gb_s = sum(t.gb_s for t in group)
        rows.append(
            ConfigRow(
                config=name,
                seeds=len(group),
                finished=sum(t.status == "finished" for t in group),
                final_iqm=point,
                ci_low=None if lo is None else float(lo),
                ci_high=None if hi is None else float(hi),
                final_mean=float(statistics.fmean(finals)) if finals else None,
                reached=len(reached),
                median_steps_to_threshold=_median(
                    [float(t.threshold_step) for t in reached if t.threshold_step is not None]
                ),
                median_time_to_threshold_s=_median(
                    [t.threshold_time_s for t in reached if t.threshold_time_s is not None]
                ),
                median_wall_s=_median([t.wall_s for t in group]),
                total_gb_s=gb_s,
                faas_usd=gb_s * usd_per_gb_s,
                dedicated_usd=wall / 3600.0 * dedicated_usd_per_hour,
                # A configuration is one algorithm; several (a mistaken merge) are all named.
                algo="+".join(dict.fromkeys(t.algo for t in group)),
            )
        )
    return rows


def best_trial(trials: list[TrialRow]) -> TrialRow | None:
    """Highest final return; ties go to the one that reached the threshold in fewer steps."""
    done = [t for t in trials if t.final_return is not None]
    if not done:
        return None
    return max(done, key=lambda t: (t.final_return, -(t.threshold_step or 10**12)))


def rows_as_dicts(rows: list[ConfigRow]) -> list[dict[str, Any]]:
    """The table as JSON-ready dicts (``compare --json`` and the MLflow artifact)."""
    return [asdict(r) for r in rows]


def _fmt(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def cost_as_dict(cost: SweepCost) -> dict[str, Any]:
    """The sweep's cost report as a JSON-ready dict (the MLflow ``cost.json`` artifact)."""
    return asdict(cost)


def _cost_cells(c: SweepCost) -> list[str]:
    """wall, billed GB-s, idle GB-s, cold starts, FaaS $, idle $, dedicated $ ("-" where unknown)."""
    return [
        _fmt(c.wall_s, 1),
        _fmt(c.billed_gb_s, 1),
        _fmt(c.idle_gb_s, 1),
        "-" if c.cold_starts is None else str(c.cold_starts),
        f"{c.faas_usd:.5f}",
        "-" if c.idle_usd is None else f"{c.idle_usd:.5f}",
        f"{c.dedicated_usd:.5f}",
    ]


def _cost_markdown(c: SweepCost) -> str:
    head = "| sweep | wall (s) | billed GB-s | idle GB-s | cold starts | FaaS $ | idle $ | dedicated $ |"
    return f"{head}\n|{'---|' * 8}\n| {c.source or 'all trials'} | {' | '.join(_cost_cells(c))} |\n"


def _reached(r: ConfigRow, threshold: float | None) -> str:
    # Without a threshold nothing can be reached: "-" rather than a misleading "0/n".
    return "-" if threshold is None else f"{r.reached}/{r.seeds}"


def to_markdown(rows: list[ConfigRow], threshold: float | None, cost: SweepCost | None = None) -> str:
    """The table as GitHub markdown; with ``cost``, the whole sweep's cost as a second table below it."""
    reached = "no threshold" if threshold is None else f"reached {_fmt(threshold, 0)}"
    head = (
        f"| config | algorithm | seeds | final return IQM [95% CI] | mean | {reached} | "
        "median steps to thr. | median time to thr. (s) | median wall (s) | GB-s | "
        "FaaS $ | dedicated $ |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r.config} | {r.algo} | {r.seeds} | "
            f"{_fmt(r.final_iqm)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | "
            f"{_fmt(r.final_mean)} | {_reached(r, threshold)} | {_fmt(r.median_steps_to_threshold, 0)} | "
            f"{_fmt(r.median_time_to_threshold_s, 2)} | {_fmt(r.median_wall_s, 1)} | "
            f"{_fmt(r.total_gb_s, 1)} | "
            f"{r.faas_usd:.5f} | {r.dedicated_usd:.5f} |"
        )
    table = "\n".join(lines) + "\n"
    return table if cost is None else f"{table}\n{_cost_markdown(cost)}"


def to_rich_table(
    rows: list[ConfigRow], threshold: float | None, title: str, cost: SweepCost | None = None
) -> Table:
    """The table for the terminal; with ``cost``, the whole sweep's cost as its caption."""
    from rich.table import Table

    caption = None
    if cost is not None:
        wall, billed, idle, cold, faas, idle_usd, dedicated = _cost_cells(cost)
        caption = (
            f"sweep ({cost.source or 'all trials'}): wall {wall} s, billed {billed} GB-s, idle {idle} GB-s, "
            f"{cold} cold starts; FaaS ${faas} (idle ${idle_usd}) vs dedicated ${dedicated}"
        )
    table = Table(title=title, caption=caption)
    for col in (
        "config",
        "algorithm",
        "seeds",
        "final IQM [95% CI]",
        "mean",
        "no threshold" if threshold is None else f"≥{_fmt(threshold, 0)}",
        "steps→thr",
        "time→thr s",
        "wall s",
        "GB-s",
        "FaaS $",
        "dedicated $",
    ):
        table.add_column(col, justify="left" if col in ("config", "algorithm") else "right")
    for r in rows:
        table.add_row(
            r.config,
            r.algo,
            str(r.seeds),
            f"{_fmt(r.final_iqm)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
            _fmt(r.final_mean),
            _reached(r, threshold),
            _fmt(r.median_steps_to_threshold, 0),
            _fmt(r.median_time_to_threshold_s, 2),
            _fmt(r.median_wall_s, 1),
            _fmt(r.total_gb_s, 1),
            f"{r.faas_usd:.5f}",
            f"{r.dedicated_usd:.5f}",
        )
    return table
