"""Run the reliability suite and write ``benchmarks/results/reliability-<date>.md`` (and ``.json``).

``python -m benchmarks.reliability.run [--scale N] [--only AREA ...]``: each area module exposes
``run(scale) -> list[Check]``; the report is a table of what was tried and what passed, with the machine
and date. Exits non-zero when any check has a failing case, so ``make reliability`` fails loudly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

from benchmarks.reliability.checks import Check

AREAS = {
    "hostile input": "benchmarks.reliability.fuzz",
    "faults": "benchmarks.reliability.faults",
    "corruption": "benchmarks.reliability.corruption",
    "kills": "benchmarks.reliability.kills",
}
RESULTS = Path(__file__).resolve().parents[1] / "results"


def _machine() -> str:
    cores = os.cpu_count()
    return f"{platform.node()} ({platform.machine()}, {cores} cores, Python {platform.python_version()})"


def to_markdown(checks: list[Check], seconds: dict[str, float], scale: int) -> str:
    """The report: one table row per check, then the failing cases."""
    lines = [
        f"# Reliability report, {date.today().isoformat()}",
        "",
        f"Machine: {_machine()}. Scale {scale}. Produced by `make reliability` "
        "(`python -m benchmarks.reliability.run`).",
        "",
        "| area | check | tried | passed | result | what passing means |",
        "|---|---|---:|---:|---|---|",
    ]
    for c in checks:
        verdict = "ok" if c.ok else "**FAILED**"
        lines.append(f"| {c.area} | {c.name} | {c.tried:,} | {c.passed:,} | {verdict} | {c.notes} |")
    lines += ["", "Time per area: " + ", ".join(f"{a} {s:.0f} s" for a, s in seconds.items()) + "."]
    failing = [c for c in checks if not c.ok]
    if failing:
        lines += ["", "## Failing cases", ""]
        for c in failing:
            lines.append(f"- {c.area} / {c.name}: " + ("; ".join(c.failures) or "no case ran"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen areas and write the report; 0 when every check passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=1, help="multiplies the number of cases per check")
    parser.add_argument("--only", nargs="*", choices=sorted(AREAS), help="run only these areas")
    parser.add_argument("--out", type=Path, default=None, help="report path (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    checks: list[Check] = []
    seconds: dict[str, float] = {}
    for area, module in AREAS.items():
        if args.only and area not in args.only:
            continue
        t0 = time.perf_counter()
        found = importlib.import_module(module).run(args.scale)
        seconds[area] = time.perf_counter() - t0
        for c in found:
            print(
                f"{c.area:14s} {c.name:60s} {c.passed:>7,}/{c.tried:<7,} {'ok' if c.ok else 'FAILED'}",
                flush=True,
            )
        checks.extend(found)
    out = args.out or RESULTS / f"reliability-{date.today().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_markdown(checks, seconds, args.scale))
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "machine": _machine(),
                "scale": args.scale,
                "seconds": seconds,
                "checks": [asdict(c) for c in checks],
            },
            indent=2,
        )
    )
    print(f"report: {out}")
    return 0 if checks and all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
