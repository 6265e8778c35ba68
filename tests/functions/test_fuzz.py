"""The hostile-input fuzzer's fast subset, in this process: a few hundred seeded bodies per run.

The full area (``benchmarks/reliability/fuzz.py``, 10,000 bodies in-process and 2,200 requests over HTTP)
runs in the reliability suite; this subset draws the same categories from the same fixed seeds.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.reliability import fuzz


def test_fuzzed_bodies_never_escape_handle_or_answer_500(ftg_env: Path) -> None:
    target = fuzz.make_target()
    checks = fuzz.fuzz_in_process(target, examples=320)
    failed = [(c.name, c.failures) for c in checks if not c.ok]
    assert not failed, failed
    by_name = {c.name: c for c in checks}
    assert by_name["in-process: exceptions escaping handle()"].tried >= 320
    assert all(by_name[f"in-process: {category}"].tried > 0 for category in fuzz.CATEGORIES)
    stray = fuzz.check_no_stray_objects(target)
    assert stray.ok, stray.failures
