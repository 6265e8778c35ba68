"""Kill -9 and resume: the fast subset of ``benchmarks/reliability/kills.py`` (two kill points)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_uninterrupted_result_and_mlflow_history() -> None:
    from benchmarks.reliability.kills import run_kills

    # 48 iterations in all: one kill early and at once (often between a commit and the driver's
    # record of it), one late and inside a Workflow.
    checks = run_kills(2, points=[(5, 0.0), (37, 0.15)])
    failing = {c.name: c.failures for c in checks if not c.ok}
    assert not failing, failing
    assert all(c.tried == 2 for c in checks)
