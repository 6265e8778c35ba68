"""The pictures of an A/B comparison, as PNG files: learning curves, performance profile, P(improvement).

Each function takes plain data (dicts of arrays, as :mod:`workflows.abstats` takes them) and the path of
the PNG to write, and answers that path. The statistics come from :mod:`workflows.abstats`; this module
only draws. matplotlib is imported on first use, with the Agg (file-only) backend through the
object-oriented API: no pyplot global state, so figures can be drawn from worker threads (as MLflow
logging jobs run) and nothing ever opens a window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workflows import abstats

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_learning_curves", "plot_performance_profile", "plot_probability_of_improvement"]

_DPI = 120


def _require_configs(data: Mapping[Any, Any], what: str) -> None:
    if not data:
        raise ValueError(f"{what}: no configuration to draw (the mapping is empty)")


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp or version in the PNG's text chunks: the same data gives the same bytes.
    fig.savefig(out, format="png", metadata={"Software": None})
    return out


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_learning_curves(
    curves: Mapping[str, Sequence[abstats.Curve]],
    path: str | Path,
    *,
    points: int = 100,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    threshold: float | None = None,
    title: str = "Learning curves",
) -> Path:
    """IQM of the evaluation return over seeds against env steps, with a bootstrap band, per configuration.

    Each seed's curve is interpolated on a grid of ``points`` steps common to all configurations
    (:func:`workflows.abstats.step_grid`); a step only counts the seeds that evaluated around it.

    Args:
        curves: configuration -> one curve per seed, each rows (env_steps, mean_return)
            (``RunSummary.evals``).
        path: the PNG to write (parent folders are created).
        points: grid size.
        reps: bootstrap resamples of the band.
        confidence: coverage of the band.
        seed: seed of the resampling.
        threshold: draw the success threshold as a dashed line.
        title: the figure's title.

    Returns:
        ``path``.

    Raises:
        ValueError: no configuration, a configuration without a seed, or no evaluation anywhere.
    """
    _require_configs(curves, "learning curves")
    empty = [name for name, cs in curves.items() if len(cs) == 0]
    if empty:
        raise ValueError(f"learning curves: configuration(s) {empty} have no seed")
    grid = abstats.step_grid(curves, points)
    fig, ax = _figure(7.0, 4.2)
    for color, (name, cs) in zip(_colors(len(curves)), curves.items(), strict=True):
        band = abstats.iqm_band(cs, grid, reps, confidence, seed)
        ax.plot(band.steps, band.iqm, color=color, lw=2, label=f"{name} (IQM, {len(cs)} seeds)")
        ax.fill_between(band.steps, band.low, band.high, color=color, alpha=0.2, lw=0)
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"{title} ({confidence:.0%} CI over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_performance_profile(
    scores: Mapping[str, abstats.Scores],
    path: str | Path,
    *,
    taus: Sequence[float] | np.ndarray | None = None,
    points: int = 101,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    title: str = "Performance profile",
) -> Path:
    """Fraction of runs with a final score above tau, against tau, with a band, per configuration.

    Args:
        scores: configuration -> its final scores ([runs], [runs, tasks] or task -> [runs]).
        path: the PNG to write.
        taus: thresholds (default: ``points`` values spanning every score).
        points: size of the default grid.
        reps: bootstrap resamples of the band.
        confidence: coverage of the band.
        seed: seed of the resampling.
        title: the figure's title.

    Returns:
        ``path``.

    Raises:
        ValueError: no configuration, or a configuration without a score.
    """
    _require_configs(scores, "performance profile")
    grid = abstats.tau_grid(scores, points) if taus is None else np.asarray(taus, dtype=np.float64)
    fig, ax = _figure(7.0, 4.2)
    for color, (name, s) in zip(_colors(len(scores)), scores.items(), strict=True):
        prof = abstats.performance_profile(s, grid, reps, confidence, seed)
        ax.plot(prof.taus, prof.fraction, color=color, lw=2, label=name, drawstyle="steps-post")
        ax.fill_between(prof.taus, prof.low, prof.high, color=color, alpha=0.2, lw=0, step="post")
    ax.set_xlabel(r"final return $\tau$")
    ax.set_ylabel(r"fraction of runs with score $> \tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{title} ({confidence:.0%} CI)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_probability_of_improvement(
    improvements: Mapping[tuple[str, str], Sequence[float]],
    path: str | Path,
    *,
    threshold: float = 0.5,
    title: str = "Probability of improvement",
) -> Path:
    """One row per pair (A, B): P(A > B) as a dot with its interval as a bar; 0.5 marked.

    Args:
        improvements: (A, B) -> (P(A > B), low, high), e.g. from
            :func:`workflows.abstats.pairwise_improvements`.
        path: the PNG to write.
        threshold: a decision's bar, drawn at ``threshold`` and ``1 - threshold`` when above 0.5.
        title: the figure's title.

    Returns:
        ``path``.

    Raises:
        ValueError: no pair, or a value outside [0, 1] or an interval not around its estimate.
    """
    _require_configs(improvements, "probability of improvement")
    rows = []
    for (a, b), est in improvements.items():
        p, low, high = (float(v) for v in est)
        if not (0.0 <= low <= p <= high <= 1.0):
            raise ValueError(
                f"P({a} > {b}) = {p} with interval [{low}, {high}] is not a probability interval"
            )
        rows.append((f"P({a} > {b})", p, low, high))
    fig, ax = _figure(8.0, 1.6 + 0.5 * len(rows))
    y = np.arange(len(rows))[::-1]  # first pair on top
    for yi, (_, p, lo, hi) in zip(y, rows, strict=True):
        decided = lo > threshold or hi < 1.0 - threshold
        color = "tab:blue" if decided else "tab:grey"
        # A fully separated pair has a zero-width interval: the bar is then hidden under the dot.
        ax.plot([lo, hi], [yi, yi], color=color, lw=7, alpha=0.35, solid_capstyle="round")
        ax.plot([p], [yi], "o", color=color, ms=7, clip_on=False)
    ax.axvline(0.5, color="black", lw=1)
    if threshold > 0.5:
        for t in (threshold, 1.0 - threshold):
            ax.axvline(t, color="grey", lw=1, ls=":")
    ax.set_yticks(y, [r[0] for r in rows])
    # The numbers on the right, so the picture reads like the verdict lines.
    right = ax.secondary_yaxis("right")
    right.set_yticks(y, [f"{p:.2f} [{lo:.2f}, {hi:.2f}]" for _, p, lo, hi in rows])
    right.tick_params(length=0)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("P(A > B) with its CI; blue: decided, grey: no decision at this number of seeds")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
