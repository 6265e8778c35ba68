"""Spin-then-block waiting: the poll loop's result, and the call-time average that plans when to poll."""

from __future__ import annotations

import pytest

from workflows.engines.spin import CallTimes, spin_until


def test_spin_until_answers_at_once_when_ready() -> None:
    calls = []

    def ready() -> bool:
        calls.append(1)
        return True

    assert spin_until(ready, 10.0) is True
    assert len(calls) == 1


def test_spin_until_gives_up_after_its_budget_and_polls_at_least_once() -> None:
    calls = []

    def never() -> bool:
        calls.append(1)
        return False

    assert spin_until(never, 0.0) is False
    assert len(calls) == 1
    assert spin_until(never, 0.002) is False


def test_spin_until_sees_a_condition_that_becomes_true_while_polling() -> None:
    seen = iter([False, False, True])
    assert spin_until(lambda: next(seen), 10.0) is True


def test_call_times_is_an_exponential_average_per_function() -> None:
    times = CallTimes(weight=0.25)
    assert times.expected("update") is None
    times.add("update", 0.010)
    assert times.expected("update") == pytest.approx(0.010)
    times.add("update", 0.020)  # 0.010 + 0.25 * (0.020 - 0.010)
    assert times.expected("update") == pytest.approx(0.0125)
    times.add("collect", 0.004)
    assert times.expected("collect") == pytest.approx(0.004)
    assert times.expected("update") == pytest.approx(0.0125)


def test_spin_window_starts_before_the_expected_end_and_lasts_past_it() -> None:
    times = CallTimes(weight=0.25)
    assert times.spin_window("update", 100.0, 0.0003) is None  # no history: nothing to plan with
    times.add("update", 0.0125)
    # A tenth of 12.5 ms (1.25 ms) is larger than the 0.3 ms lead: poll from 11.25 ms to 15 ms.
    start, until = times.spin_window("update", 100.0, 0.0003)  # type: ignore[misc]
    assert start == pytest.approx(100.01125) and until == pytest.approx(100.015)
    times.add("aggregate", 0.001)
    # A tenth of 1 ms is less than the lead: poll from 0.7 ms to 1.6 ms.
    start, until = times.spin_window("aggregate", 5.0, 0.0003)  # type: ignore[misc]
    assert start == pytest.approx(5.0007) and until == pytest.approx(5.0016)


@pytest.mark.parametrize("weight", [0.0, -0.1, 1.5])
def test_call_times_refuses_a_weight_outside_0_1(weight: float) -> None:
    with pytest.raises(ValueError, match="weight"):
        CallTimes(weight=weight)
