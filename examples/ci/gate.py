"""CI gate: train a candidate configuration against the champion's and fail unless it is better.

    python examples/ci/gate.py [--config examples/ci/gate_sweep.yaml] [--candidate candidate]
                               [--seeds 0,1,2] [--total-steps N] [--report gate.json] [--plots DIR]

Runs one short sweep holding both configurations (``submit``), then ``compare --json
--require-winner CANDIDATE`` on it. The exit code is compare's: 0 when the candidate beats every other
configuration of the sweep (P(improvement)'s 95% CI lower end above 0.5), 1 when it does not (worse, or
no decision at this number of seeds), 2 when the sweep could not run or be compared. ``--report``
keeps compare's JSON (table, verdicts, sample efficiency) and ``--plots`` its pictures, for the CI
job's artifacts.

The stores are the usual ``FTG_*`` settings (default: ``.ftg/`` in the working directory); MLflow
tracking is off unless ``--tracking`` is given.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "workflows" / "ppo_sweep.py"
DEFAULT_SWEEP = Path(__file__).resolve().with_name("gate_sweep.yaml")


def _sweep_id() -> str:
    # Unique per job, so reruns of a CI job sharing a store never collide.
    return f"gate-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def main(argv: list[str] | None = None) -> int:
    """Run the gate; its exit code (0 pass, 1 candidate not better, 2 error)."""
    p = argparse.ArgumentParser(prog="gate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(DEFAULT_SWEEP), help="sweep YAML with both configurations")
    p.add_argument("--candidate", default="candidate", help="the configuration that must win")
    p.add_argument("--seeds", help="override the sweep's seeds, e.g. 0,1,2,3,4")
    p.add_argument("--total-steps", type=int, help="override every configuration's step budget")
    p.add_argument("--sweep-id", default=None, help="id of the gate's sweep (default: a new one)")
    p.add_argument("--report", help="write compare's JSON here")
    p.add_argument("--plots", metavar="DIR", help="write the learning curves and other pictures here")
    p.add_argument("--tracking", action="store_true", help="also log the sweep to MLflow")
    args = p.parse_args(argv)

    sweep_id = args.sweep_id or _sweep_id()
    submit = [sys.executable, str(CLI), "submit", "--config", args.config, "--sweep-id", sweep_id]
    if args.seeds:
        submit += ["--seeds", args.seeds]
    if args.total_steps:
        submit += ["--total-steps", str(args.total_steps)]
    if not args.tracking:
        submit.append("--no-tracking")
    print(f"gate: sweep {sweep_id}: {args.candidate} against the other configurations of {args.config}")
    sys.stdout.flush()
    ran = subprocess.run(submit, check=False)
    if ran.returncode != 0:
        print(f"gate: the sweep failed (exit {ran.returncode}); see its output above", file=sys.stderr)
        return 2
    compare = [sys.executable, str(CLI), "compare", sweep_id, "--json", "--require-winner", args.candidate]
    if args.plots:
        compare += ["--plots", args.plots]
    # compare's own messages (the gate's verdict) go to stderr, straight into the job's log.
    result = subprocess.run(compare, check=False, stdout=subprocess.PIPE, text=True)
    if args.report:
        Path(args.report).write_text(result.stdout)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
