"""Deciding an A/B experiment: which configuration wins, how sure that is, and the pictures.

The statistics are :mod:`workflows.abstats`'s; this module gathers what they need from a sweep's stored
trials (final returns per environment, evaluation curves, step budgets), puts the answers in the shapes
``compare`` prints, logs and serialises, and decides the ``champion`` alias and a CI gate from them.

Everything but :func:`trial_evidence` (which reads the stores) and :func:`write_plots` (which writes
PNG files) is a pure function of its arguments.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from ftg_common import layout
from ftg_common.config import RunConfig
from ftg_common.errors import CorruptObjectError
from ftg_common.meta.base import MetaStore
from ftg_common.store.base import KeyNotFoundError, ObjectStore
from workflows import abstats


class ComparisonError(ValueError):
    """The trials asked for cannot be compared (e.g. sweeps on different environments or budgets)."""


@dataclass(frozen=True)
class TrialEvidence:
    """What the statistics need from one trial.

    Attributes:
        run_id: the trial's run.
        config: its configuration's name (``sweep:config`` when sweeps are compared and names collide).
        seed: its seed.
        status: the run record's status (only ``finished`` trials count for final returns).
        env_id: its environment, the "task" of the stratified statistics.
        budget: env steps a finished trial reaches (whole rollouts: iterations x rollout size).
        final_return: its last evaluation's mean return (None before the first).
        evals: its evaluations, (env_steps, mean_return) in increasing steps.
        config_digest: digest of the configuration's algorithm and hyperparameters (same for every seed).
        sweep_id: the sweep it belongs to.
    """

    run_id: str
    config: str
    seed: int
    status: str
    env_id: str
    budget: int
    final_return: float | None
    evals: tuple[tuple[int, float], ...]
    config_digest: str
    sweep_id: str


def hparams_digest(cfg: RunConfig) -> str:
    """16 hex digits naming a configuration: its algorithm and hyperparameters, not its seed or run id."""
    body = {"algo": cfg.algo, **cfg.hparams.model_dump(mode="json")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def trial_evidence(store: ObjectStore, meta: MetaStore, sweep_id: str) -> list[TrialEvidence]:
    """Every trial of ``sweep_id`` as evidence, in the sweep's order.

    A trial whose frozen config cannot be read (a damaged store) is left out: it has no environment or
    budget to be compared on, and ``resume`` reports it.
    """
    from workflows.driver import RunSummary

    order = {rid: i for i, rid in enumerate(meta.get_sweep(sweep_id).get("runs", []))}
    out = []
    for rec in sorted(meta.list_runs(sweep_id), key=lambda r: order.get(r["run_id"], 1 << 30)):
        try:
            cfg = RunConfig.model_validate(store.get_json(layout.sweep_trial_key(sweep_id, rec["run_id"])))
        except (KeyNotFoundError, CorruptObjectError):
            continue
        extra = rec.get("extra") or {}
        s = RunSummary.from_dict(extra.get("summary"))
        out.append(
            TrialEvidence(
                run_id=rec["run_id"],
                config=str(extra.get("config_name") or cfg.config_name or "?"),
                seed=cfg.seed,
                status=rec["status"],
                env_id=cfg.hparams.env_id,
                budget=cfg.hparams.n_iterations * cfg.hparams.rollout_size,
                final_return=s.final_return,
                evals=tuple((int(st), float(r)) for st, r in s.evals),
                config_digest=hparams_digest(cfg),
                sweep_id=sweep_id,
            )
        )
    return out


def merge_sweeps(
    per_sweep: Mapping[str, Sequence[TrialEvidence]],
) -> tuple[list[TrialEvidence], dict[tuple[str, str], str]]:
    """The trials of several sweeps as one comparison, configurations renamed where names collide.

    A configuration name used by more than one sweep becomes ``<sweep>:<config>`` in every sweep using it;
    the others keep their names.

    Returns:
        (the trials, renamed; ``(sweep, config)`` -> the name it is compared under).

    Raises:
        ComparisonError: the sweeps cover different environments or step budgets (their numbers would
            not mean the same thing), or a sweep has no trial.
    """
    for sid, trials in per_sweep.items():
        if not trials:
            raise ComparisonError(f"sweep {sid} has no trial to compare")
    envs = {sid: sorted({t.env_id for t in ts}) for sid, ts in per_sweep.items()}
    budgets = {sid: sorted({t.budget for t in ts}) for sid, ts in per_sweep.items()}
    if len({tuple(v) for v in envs.values()}) > 1:
        listed = "; ".join(f"{sid}: {', '.join(v)}" for sid, v in envs.items())
        raise ComparisonError(f"the sweeps train on different environments ({listed})")
    if len({tuple(v) for v in budgets.values()}) > 1:
        listed = "; ".join(f"{sid}: {', '.join(f'{b:,}' for b in v)}" for sid, v in budgets.items())
        raise ComparisonError(f"the sweeps have different step budgets ({listed})")
    users: dict[str, set[str]] = {}
    for sid, trials in per_sweep.items():
        for t in trials:
            users.setdefault(t.config, set()).add(sid)
    names: dict[tuple[str, str], str] = {}
    merged = []
    for sid, trials in per_sweep.items():
        for t in trials:
            new = f"{sid}:{t.config}" if len(users[t.config]) > 1 else t.config
            names[(sid, t.config)] = new
            merged.append(replace(t, config=new))
    return merged, names


def finals_by_config(trials: Sequence[TrialEvidence]) -> dict[str, dict[str, list[float]]]:
    """Final returns of finished trials: config -> env_id -> [one per seed], in first-seen order."""
    out: dict[str, dict[str, list[float]]] = {}
    for t in trials:
        if t.status == "finished" and t.final_return is not None:
            out.setdefault(t.config, {}).setdefault(t.env_id, []).append(float(t.final_return))
    return out


def curves_by_config(trials: Sequence[TrialEvidence]) -> dict[str, list[list[tuple[int, float]]]]:
    """Evaluation curves of every trial that evaluated at least once: config -> [one per seed].

    Unfinished trials count: their curve is evidence up to where they got (the learning-curve band and
    the sample-efficiency points only use a seed where it evaluated).
    """
    out: dict[str, list[list[tuple[int, float]]]] = {}
    for t in trials:
        if t.evals:
            out.setdefault(t.config, []).append(list(t.evals))
    return out


@dataclass(frozen=True)
class PairResult:
    """P(a > b) over the seeds (and environments) both configurations share, and its verdict."""

    a: str
    b: str
    estimate: abstats.Estimate
    verdict: abstats.Verdict

    def as_dict(self) -> dict[str, Any]:
        """The ``probability_of_improvement`` entry of ``compare --json``."""
        p, low, high = self.estimate
        return {
            "a": self.a,
            "b": self.b,
            "p": p,
            "ci_low": low,
            "ci_high": high,
            "winner": self.verdict.winner,
            "verdict": self.verdict.line,
        }


@dataclass(frozen=True)
class ABReport:
    """The decision part of ``compare``: every pair's probability of improvement and sample efficiency.

    Attributes:
        pairs: one result per pair of configurations with finished trials on the same environments.
        efficiency: config -> IQM of the evaluation return at fractions of its budget.
        notes: why a configuration or pair was left out of ``pairs``.
    """

    pairs: list[PairResult] = field(default_factory=list)
    efficiency: dict[str, list[abstats.BudgetPoint]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """``probability_of_improvement`` and ``sample_efficiency`` as ``compare --json`` holds them."""
        return {
            "probability_of_improvement": [p.as_dict() for p in self.pairs],
            "sample_efficiency": {c: [asdict(b) for b in pts] for c, pts in self.efficiency.items()},
        }

    def lines(self) -> list[str]:
        """One verdict line per pair, then the notes; what a sweep's output ends with."""
        return [p.verdict.line for p in self.pairs] + self.notes


def decide_trials(
    trials: Sequence[TrialEvidence],
    seed: int = 0,
    threshold: float = 0.5,
    fractions: Sequence[float] = abstats.DEFAULT_FRACTIONS,
    reps: int = 2000,
) -> ABReport:
    """Probability of improvement for every pair of configurations, and each one's sample efficiency.

    Pairs follow the configurations' first-seen order (A before B, as ``combinations``); every pair
    resamples with the same ``seed`` (as :func:`workflows.abstats.pairwise_improvements`), so a pair's
    numbers do not depend on which other configurations the sweep had.

    Args:
        trials: the trials (see :func:`trial_evidence`).
        seed: seed of every bootstrap.
        threshold: how far above 0.5 a CI's lower end must be for a verdict (see ``abstats.decide``).
        fractions: budget fractions of the sample-efficiency points.
        reps: bootstrap resamples.
    """
    finals = finals_by_config(trials)
    configs = list(dict.fromkeys(t.config for t in trials))
    notes = [f"{c}: no finished trial, left out of the verdicts" for c in configs if c not in finals]
    pairs = []
    for a, b in combinations([c for c in configs if c in finals], 2):
        if set(finals[a]) != set(finals[b]):
            notes.append(
                f"{a} vs {b}: not compared, different environments "
                f"({', '.join(finals[a])} / {', '.join(finals[b])})"
            )
            continue
        est = abstats.probability_of_improvement(finals[a], finals[b], reps=reps, seed=seed)
        pairs.append(PairResult(a, b, est, abstats.decide(a, b, est, threshold)))
    efficiency = {}
    curves = curves_by_config(trials)
    for c in configs:
        budgets = sorted({t.budget for t in trials if t.config == c})
        if c in curves and budgets:
            # One configuration has one budget; max() only guards a mistaken merge of several.
            efficiency[c] = abstats.sample_efficiency(curves[c], budgets[-1], fractions, reps=reps, seed=seed)
    return ABReport(pairs, efficiency, notes)


def efficiency_lines(report: ABReport) -> list[str]:
    """Sample efficiency, one line per configuration: ``zoo: 10% 180.2 [150.1, 210.0] · 25% ...``."""
    out = []
    for config, points in report.efficiency.items():
        cells = []
        for p in points:
            value = "-" if p.iqm is None else f"{p.iqm:.1f} [{p.low:.1f}, {p.high:.1f}]"
            cells.append(f"{p.fraction:.0%} ({p.steps:,} steps) {value}")
        out.append(f"{config}: " + " · ".join(cells))
    return out


def print_report(console: Any, report: ABReport) -> None:
    """Print sample efficiency, then the verdicts last (a sweep's output ends with its verdicts)."""
    if report.efficiency:
        console.print(
            "[bold]sample efficiency[/bold] (IQM of the evaluation return at fractions of the budget)"
        )
        for line in efficiency_lines(report):
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    if report.pairs or report.notes:
        console.print("[bold]verdicts[/bold] (probability of improvement, stratified bootstrap 95% CI)")
        for line in report.lines():
            console.print(f"  {line}", highlight=False, soft_wrap=True)


def require_winner(report: ABReport, candidate: str) -> tuple[bool, list[str]]:
    """Whether ``candidate`` beats every other configuration it was compared with (a CI gate).

    Returns:
        (passed, the verdict lines of the candidate's pairs).

    Raises:
        ComparisonError: ``candidate`` is not one of the compared configurations, or has no pair.
    """
    mine = [p for p in report.pairs if candidate in (p.a, p.b)]
    if not mine:
        known = sorted({c for p in report.pairs for c in (p.a, p.b)} | set(report.efficiency))
        raise ComparisonError(
            f"--require-winner: {candidate!r} has no decided comparison "
            f"(configurations: {', '.join(known) or 'none with finished trials'})"
        )
    return all(p.verdict.winner == candidate for p in mine), [p.verdict.line for p in mine]


def best_config(trials: Sequence[TrialEvidence]) -> str | None:
    """The configuration with the highest IQM of final returns (ties: the first); None: none finished."""
    finals = finals_by_config(trials)
    if not finals:
        return None
    return max(finals, key=lambda c: abstats.iqm(finals[c]))


def champion_verdict(
    new: Mapping[str, Sequence[float]],
    champion: Mapping[str, Sequence[float]],
    new_name: str,
    champion_name: str,
    min_p: float,
    seed: int = 0,
    reps: int = 2000,
) -> abstats.Verdict:
    """Whether a configuration beats the champion's: P(new > champion)'s CI lower end above ``min_p``.

    Args:
        new: the new configuration's final returns, env_id -> [per seed].
        champion: the champion configuration's, from its own sweep.
        new_name: label of the new configuration in the verdict line.
        champion_name: label of the champion's.
        min_p: the bar (``FTG_CHAMPION_MIN_P``), in [0.5, 1).
        seed: seed of the bootstrap.
        reps: bootstrap resamples.

    Raises:
        ValueError: the two were trained on different environments.
    """
    est = abstats.probability_of_improvement(dict(new), dict(champion), reps=reps, seed=seed)
    return abstats.decide(new_name, champion_name, est, threshold=min_p)


def config_statistics(
    trials: Sequence[TrialEvidence], report: ABReport, config: str, seed: int = 0
) -> dict[str, str]:
    """The statistics a configuration's model versions carry as tags (``ftg.stats.*``)."""
    finals = finals_by_config(trials).get(config)
    tags: dict[str, str] = {}
    if finals:
        est = abstats.iqm_with_ci(finals, seed=seed)
        tags["ftg.stats.final_iqm"] = f"{est.value:.4f}"
        tags["ftg.stats.final_iqm_ci"] = f"[{est.low:.4f}, {est.high:.4f}]"
        tags["ftg.stats.seeds"] = str(sum(len(v) for v in finals.values()))
    for p in report.pairs:
        if config in (p.a, p.b):
            other = p.b if p.a == config else p.a
            value, low, high = (
                p.estimate if p.a == config else (1 - p.estimate[0], 1 - p.estimate[2], 1 - p.estimate[1])
            )
            tags[f"ftg.stats.p_improvement_vs.{other}"] = f"{value:.4f} [{low:.4f}, {high:.4f}]"
    return tags


def write_plots(
    trials: Sequence[TrialEvidence],
    report: ABReport,
    out_dir: str | Path,
    threshold: float | None = None,
    title: str = "",
    seed: int = 0,
) -> list[Path]:
    """Write learning_curves.png, performance_profile.png and (with a pair) probability_of_improvement.png.

    A picture with nothing to draw (no evaluation yet, no finished trial) is skipped.

    Returns:
        The PNG files written.
    """
    from workflows import plots

    out = Path(out_dir)
    # On a line of its own: beside the picture's name a sweep id makes the title wider than the figure.
    suffix = f"\n{title}" if title else ""
    written = []
    curves = curves_by_config(trials)
    if curves:
        written.append(
            plots.plot_learning_curves(
                curves,
                out / "learning_curves.png",
                threshold=threshold,
                seed=seed,
                title=f"Learning curves{suffix}",
            )
        )
    finals = finals_by_config(trials)
    if finals:
        written.append(
            plots.plot_performance_profile(
                finals, out / "performance_profile.png", seed=seed, title=f"Performance profile{suffix}"
            )
        )
    if report.pairs:
        written.append(
            plots.plot_probability_of_improvement(
                {(p.a, p.b): tuple(p.estimate) for p in report.pairs},
                out / "probability_of_improvement.png",
                threshold=report.pairs[0].verdict.threshold,
                title=f"Probability of improvement{suffix}",
            )
        )
    return written
