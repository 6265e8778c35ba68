"""What a Makefile target would run, read with ``make -n`` (nothing is executed)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def recipe_commands(target: str, words: Sequence[str]) -> list[list[str]]:
    """The commands of ``make -n target`` that run ``words`` (after an interpreter, if any), split as a
    shell splits them.

    A recipe line chaining commands with ``&&`` counts as one command per link; ``words`` may follow the
    command's first word (``python workflows/ppo_sweep.py render`` matches ``workflows/ppo_sweep.py
    render`` whatever the interpreter's path).
    """
    out = subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    commands = [shlex.split(cmd) for line in out.stdout.splitlines() for cmd in line.split("&&")]
    n = len(words)
    return [argv for argv in commands if list(words) in (argv[:n], argv[1 : n + 1])]
