"""The A/B table: IQM and bootstrap CI over seeds, thresholds, cost, and the champion."""

from __future__ import annotations

import pytest

from workflows.compare import TrialRow, best_trial, compare, to_markdown
from workflows.cost import invocation_gb_seconds, parse_memory


def _row(
    config: str,
    seed: int,
    final: float | None,
    step: int | None = None,
    t: float | None = None,
    wall: float = 10.0,
    gb_s: float = 2.0,
    status: str = "finished",
) -> TrialRow:
    return TrialRow(f"s-{config}-{seed}", config, seed, status, final, step, t, t, wall, 100_000, gb_s)


def test_per_config_rows_with_hand_computed_values() -> None:
    trials = [
        _row("a", 0, 500.0, 12_000, 2.0),
        _row("a", 1, 480.0, 20_000, 4.0),
        _row("a", 2, 100.0),
        _row("a", 3, 490.0, 16_000, 3.0),
        _row("b", 0, 200.0),
        _row("b", 1, 300.0, wall=20.0, gb_s=4.0),
    ]
    rows = compare(trials, usd_per_gb_s=0.5, dedicated_usd_per_hour=3600.0)
    a, b = rows
    assert [r.config for r in rows] == ["a", "b"]
    # IQM of [100, 480, 490, 500]: the middle half is [480, 490] -> 485.
    assert a.final_iqm == pytest.approx(485.0)
    assert a.final_mean == pytest.approx((500 + 480 + 100 + 490) / 4)
    assert a.ci_low <= a.final_iqm <= a.ci_high and a.ci_low >= 100.0 and a.ci_high <= 500.0
    assert a.reached == 3 and a.median_steps_to_threshold == 16_000 and a.median_time_to_threshold_s == 3.0
    assert a.total_gb_s == 8.0 and a.faas_usd == pytest.approx(4.0)
    # 40 s of wall time at 3600 $/h is 40 $.
    assert a.dedicated_usd == pytest.approx(40.0)
    assert b.reached == 0 and b.median_steps_to_threshold is None and b.median_wall_s == 15.0
    md = to_markdown(rows, 475)
    assert "| a | ppo | 4 | 485.0 [" in md and "3/4" in md


def test_single_seed_ci_collapses_and_missing_finals_are_dashes() -> None:
    rows = compare([_row("x", 0, 321.0), _row("y", 0, None, status="failed")], 0.0, 0.0)
    assert rows[0].ci_low == rows[0].ci_high == rows[0].final_iqm == 321.0
    assert rows[1].final_iqm is None and rows[1].finished == 0
    assert "| y | ppo | 1 | - [-, -]" in to_markdown(rows, None)


def test_without_a_threshold_nothing_is_counted_as_reached() -> None:
    from rich.console import Console

    from workflows.compare import to_rich_table

    rows = compare([_row("x", 0, 321.0)], 0.0, 0.0)
    md = to_markdown(rows, None)
    assert "no threshold" in md and "0/1" not in md and "reached -" not in md
    console = Console(width=200, record=True)
    console.print(to_rich_table(rows, None, "t"))
    text = console.export_text()
    assert "no threshold" in text and "≥-" not in text and "0/1" not in text


def test_champion_is_highest_final_return_then_fewest_steps() -> None:
    trials = [_row("a", 0, 500.0, 20_000), _row("b", 0, 500.0, 12_000), _row("c", 0, 499.0, 1_000)]
    assert best_trial(trials).run_id == "s-b-0"
    assert best_trial([_row("a", 0, None)]) is None


def test_memory_quantities_and_invocation_cost() -> None:
    assert parse_memory("256Mi") == pytest.approx(0.268435456)
    assert parse_memory("1Gi") == pytest.approx(1.073741824)
    assert parse_memory("512M") == pytest.approx(0.512)
    # The updater is given 1Gi in functions/stack.yml: 2 s of it is 2 * 1.073741824 GB-s.
    assert invocation_gb_seconds("update", 2.0) == pytest.approx(2.147483648)
    assert invocation_gb_seconds("not-a-step", 5.0) == 0.0
