"""Live progress of a sweep: a rich table on a terminal, plain lines otherwise (CI, pipes)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from workflows.driver import TrialProgress


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


class SweepProgress:
    """Per-trial progress: the driver calls it after every iteration (``on_progress``).

    Args:
        title: the table's title.
        console: where to draw; a live table when it is a terminal, otherwise one line per trial every
            ``line_every_s`` seconds and at every status change.
        line_every_s: seconds between two plain lines of the same running trial.
    """

    def __init__(self, title: str, console: Console | None = None, line_every_s: float = 5.0) -> None:
        self.console = console or Console()
        self.title = title
        self._rows: dict[str, TrialProgress] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._line_every = line_every_s
        self._last_line: dict[str, float] = {}

    def add(self, p: TrialProgress) -> None:
        """Show a trial before its first iteration (queued, or resumed part-way)."""
        with self._lock:
            self._rows[p.run_id] = p

    def __call__(self, p: TrialProgress) -> None:
        """Record a trial's progress and redraw (or print a line, rate-limited)."""
        with self._lock:
            self._rows[p.run_id] = p
        if self._live is not None:
            self._live.update(self.table())
            return
        now = time.monotonic()
        if p.status != "running" or now - self._last_line.get(p.run_id, 0.0) >= self._line_every:
            self._last_line[p.run_id] = now
            ret = "-" if p.eval_return is None else f"{p.eval_return:.1f}"
            sps = "-" if p.steps_per_second is None else f"{p.steps_per_second:,.0f}"
            self.console.print(
                f"[{p.status}] {p.run_id} iter {p.iteration}/{p.n_iterations} steps {p.steps:,} "
                f"eval {ret} steps/s {sps} eta {_eta(p.eta_seconds)}",
                highlight=False,
            )

    def table(self) -> Table:
        """Every trial's latest progress as a rich table."""
        t = Table(title=self.title)
        for col in (
            "trial",
            "config",
            "seed",
            "status",
            "iteration",
            "env steps",
            "train return",
            "eval return",
            "steps/s",
            "ETA",
        ):
            t.add_column(col, justify="left" if col in ("trial", "config", "status") else "right")
        with self._lock:
            rows = list(self._rows.values())
        for p in rows:
            t.add_row(
                p.run_id,
                p.config_name,
                str(p.seed),
                p.status,
                f"{p.iteration}/{p.n_iterations}",
                f"{p.steps:,}/{p.total_steps:,}",
                "-" if p.train_return is None else f"{p.train_return:.1f}",
                "-" if p.eval_return is None else f"{p.eval_return:.1f}",
                "-" if p.steps_per_second is None else f"{p.steps_per_second:,.0f}",
                _eta(p.eta_seconds),
            )
        return t

    def __enter__(self) -> SweepProgress:
        if self.console.is_terminal:
            self._live = Live(self.table(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.update(self.table())
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
