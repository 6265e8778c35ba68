"""The Argo latency model: start, result patches and reconciles per DAG level, in simulated time."""

from __future__ import annotations

import pytest

from workflows.argo_latency import (
    DEFAULT,
    SHIPPED,
    ArgoTiming,
    next_tick,
    workflow_seconds,
    workflow_timeline,
)

# Per-level compute of a CartPole iteration (collect, aggregate, update), in seconds: far below a period.
LEVELS = [0.006, 0.0014, 0.0142]


def test_next_tick_is_the_first_tick_at_or_after() -> None:
    assert next_tick(0.0, 0.0, 10.0) == 0.0
    assert next_tick(0.1, 0.0, 10.0) == 10.0
    assert next_tick(10.0, 0.0, 10.0) == 10.0
    assert next_tick(15.006, 15.0, 10.0) == 25.0
    assert next_tick(3.0, 15.0, 10.0) == 15.0  # before the first tick: the first tick
    assert next_tick(0.3 * 3, 0.0, 0.3) == pytest.approx(0.9)  # on a tick despite float rounding


def test_default_settings_cost_ten_seconds_a_level() -> None:
    """Agent up at 5 s; its first patch at 15 s (one 10 s period later), the controller's next reconcile
    at 20 s starts level 2; then a patch at 25, a reconcile at 30, and so on."""
    t = workflow_timeline(LEVELS, DEFAULT)
    assert t.starts == (5.0, 20.0, 30.0)
    assert t.finished == 40.0 and t.noticed == 40.0


def test_shipped_one_second_settings() -> None:
    """1 s requeue and patch rate: agent at 5 s, each level one tick: 6, 7, done at 8 s."""
    t = workflow_timeline(LEVELS, SHIPPED)
    assert t.starts == (5.0, 6.0, 7.0) and t.finished == 8.0
    # a K-chain is its iterations' levels in a row, on one agent pod: 5 + 3K s instead of 8K s
    assert workflow_seconds(LEVELS * 4, SHIPPED) == 5.0 + 12.0


def test_a_level_longer_than_a_period_waits_for_the_tick_after_it() -> None:
    t = workflow_timeline([2.5, 0.01], SHIPPED)
    assert t.starts == (5.0, 8.0) and t.finished == 9.0


def test_patch_rate_and_requeue_time_are_separate_settings() -> None:
    """A fast agent patch does not help while the controller reconciles every 10 s."""
    timing = ArgoTiming(requeue_s=10.0, patch_s=1.0, agent_start_s=5.0, poll_s=3.0)
    t = workflow_timeline(LEVELS, timing)
    assert t.starts == (5.0, 10.0, 20.0) and t.finished == 30.0
    assert t.noticed == 30.0  # the driver's poll grid (every 3 s) has a tick at 30
    assert workflow_seconds([0.01], ArgoTiming(requeue_s=1.0, patch_s=1.0, poll_s=4.0)) == 8.0


def test_no_level_is_a_started_agent_only() -> None:
    assert workflow_timeline([], DEFAULT).finished == 5.0


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("requeue_s", {"requeue_s": 0.0}),
        ("patch_period_s", {"patch_s": -1.0}),
        ("agent_start_s", {"agent_start_s": -1}),
    ],
)
def test_bad_settings_are_refused_by_name(field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=field):
        ArgoTiming(**kwargs)
    with pytest.raises(ValueError, match="levels"):
        workflow_timeline([-1.0], DEFAULT)


# --- the benchmark's schedule arithmetic --------------------------------------------------------------


def test_sweep_makespan_and_a_trial_on_argo_by_hand() -> None:
    from benchmarks.bench_argo_latency import LevelTimes, Trial, argo_trial_seconds, makespan

    # jobs in order on 2 slots: 5 | 3 -> slot B free at 3 takes 4 (ends 7) -> slot A free at 5 takes 2
    assert makespan([5.0, 3.0, 4.0, 2.0], 2) == 7.0
    times = LevelTimes(levels=(0.006, 0.0014, 0.0142), evaluate=0.05, wall=0.03, wall_eval=0.08, driver=0.001)
    trial = Trial("zoo", 0, iterations=5, eval_every=2)  # evaluates after iterations 1, 3 and 4
    # K = 1 on 1 s settings: 5 s to the agent, then one tick per level: 8 s for iterations 0 and 2,
    # 9 s for 1, 3 and 4 (a fourth level: evaluate); plus the driver's 1 ms each
    assert argo_trial_seconds(trial, times, 1, SHIPPED, 0.0) == pytest.approx(3 * 9 + 2 * 8 + 5 * 0.001)
    # K = 4 then 1: the agent's 5 s once per Workflow, one tick per level: (5 + 14) + (5 + 4)
    assert argo_trial_seconds(trial, times, 4, SHIPPED, 0.0) == pytest.approx(19 + 9 + 5 * 0.001)
