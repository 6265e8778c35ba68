"""The cold-start simulator on hand-made traces (hand-computed figures) and on random ones (invariants)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ftg_common.envs.coldstart.arrivals import sample_profiles
from ftg_common.envs.coldstart.controller import NoOp, run_controller
from ftg_common.envs.coldstart.metrics import EpisodeMetrics
from ftg_common.envs.coldstart.simulator import STAT_NAMES, SimConfig, Simulator, Stat
from ftg_common.envs.coldstart.trace import Trace, synthetic_trace

MEM = 100.0


def _sim(
    arrivals: list[list[float]], services: list[list[float]], horizon: float = 300.0, **cfg: float
) -> Simulator:
    """A simulator over a hand-made trace, every cold start exactly 1 s."""
    trace = Trace(
        tuple(np.array(a, dtype=np.float64) for a in arrivals),
        tuple(np.array(s, dtype=np.float64) for s in services),
        horizon,
    )
    config = SimConfig(cold_start_min_s=1.0, cold_start_max_s=1.0, **cfg)  # type: ignore[arg-type]
    return Simulator(trace, np.full(len(arrivals), MEM), config, np.random.default_rng(0))


def _run(sim: Simulator, steps: int) -> list[dict[str, float]]:
    out = []
    for _ in range(steps):
        sim.step()
        out.append(dict(zip(STAT_NAMES, sim.rows[0], strict=True)))
    return out


def test_an_idle_replica_expires_exactly_at_its_keep_alive_window() -> None:
    # Request at 10 s: a replica starts (ready 11), serves 11 -> 16, then idles; window 60 s -> gone at 76.
    sim = _sim([[10.0]], [[5.0]], keep_alive_s=60.0)
    steps = _run(sim, 3)
    assert [s["replicas"] for s in steps] == [1, 1, 0]
    assert [s["expired"] for s in steps] == [0, 0, 1]
    assert steps[0]["cold_starts"] == 1 and steps[0]["started"] == 1
    # Warm 11 -> 76 (65 s), busy 5 s: 60 idle seconds of 100 MB, split 19-5 / 30 / 16 over the steps.
    assert [s["idle_mb_s"] for s in steps] == pytest.approx([1400.0, 3000.0, 1600.0])
    assert sum(s["warm_s"] for s in steps) == pytest.approx(65.0)
    assert steps[0]["init_s"] == pytest.approx(1.0)
    assert sum(s["cpu_s"] for s in steps) == pytest.approx(6.0)  # 5 s running + 1 s starting, 1 core


@pytest.mark.parametrize(("second", "cold"), [(75.999, 0.0), (76.0, 1.0)])
def test_a_request_just_inside_the_window_is_warm_and_at_its_end_is_cold(second: float, cold: float) -> None:
    sim = _sim([[10.0, second]], [[5.0, 1.0]], keep_alive_s=60.0)
    steps = _run(sim, 3)
    assert steps[2]["cold_starts"] == cold
    assert steps[2]["started"] == cold
    # The idle time it ends runs from the first completion (16 s) to its arrival.
    assert sim.idle_times[0] == pytest.approx([second - 16.0]) and steps[2]["arrivals"] == 1
    # Latency: the cold one waits its 1 s start.
    assert steps[2]["latency_sum_s"] == pytest.approx(1.0 + cold)


def test_idle_times_between_invocations_are_recorded_for_the_step_they_end_in() -> None:
    sim = _sim([[10.0, 40.0, 41.0]], [[5.0, 5.0, 1.0]], keep_alive_s=600.0)
    sim.step()
    assert sim.idle_times[0] == []
    sim.step()
    # First completion at 16 (cold start 1 s); the request at 40 ends an idle time of 24 s; the one at
    # 41 arrives while the function runs (40 -> 45): no idle time, and a second replica starts for it
    # (ready at 42, before the first is free).
    assert sim.idle_times[0] == pytest.approx([24.0])
    assert sim.cold_flags[0] == [False, True]
    assert sim.replicas(0) == 2


def test_a_request_that_waits_longer_than_the_queue_timeout_fails_when_it_times_out() -> None:
    sim = _sim([[0.0, 0.5, 1.0]], [[20.0, 1.0, 1.0]], max_replicas=1, queue_timeout_s=10.0)
    (s,) = _run(sim, 1)
    assert (s["arrivals"], s["succeeded"], s["failed"], s["cold_starts"]) == (3, 1, 2, 1)
    assert s["in_flight"] == 0 and sim.conservation().tolist() == [0.0]


def test_failures_and_successes_are_counted_in_the_step_they_happen() -> None:
    # The failure times out at 25.5 + 10 = 35.5 (step 2); the success ends at 26 + 20 = 46 (step 2).
    sim = _sim([[25.0, 25.5]], [[20.0, 1.0]], max_replicas=1, queue_timeout_s=10.0)
    first, second = _run(sim, 2)
    assert (first["succeeded"], first["failed"], first["in_flight"]) == (0, 0, 2)
    assert (second["succeeded"], second["failed"], second["in_flight"]) == (1, 1, 0)


def test_a_starting_replica_with_a_free_slot_takes_the_request_instead_of_a_new_one() -> None:
    sim = _sim([[0.0, 0.1, 0.2]], [[5.0, 5.0, 5.0]], concurrency=2)
    (s,) = _run(sim, 1)
    # Two requests share the first replica (both wait for its start); the third needs a second one.
    assert (s["started"], s["cold_starts"], s["replicas"]) == (2, 3, 2)
    assert s["busy_slot_s"] == pytest.approx(15.0)


def test_prewarming_and_releasing_at_a_step_boundary() -> None:
    sim = _sim([[45.0]], [[1.0]], keep_alive_s=600.0)
    assert sim.scale(0, 3) == 3
    (s,) = _run(sim, 1)
    assert (s["started"], s["replicas"], s["memory_mb"]) == (3, 3, 300.0)
    assert s["init_s"] == pytest.approx(3.0) and s["idle_mb_s"] == pytest.approx(3 * 29.0 * MEM)
    assert sim.scale(0, -2) == -2
    (s,) = _run(sim, 1)
    # The pre-warmed replica left serves the request at 45 warm; the released ones count in this step.
    assert (s["cold_starts"], s["expired"], s["replicas"]) == (0, 2, 1)
    assert s["idle_mb_s"] == pytest.approx((30.0 - 1.0) * MEM)
    assert sim.scale(0, -5) == -1 and sim.replicas(0) == 0


def test_scale_stops_at_max_replicas() -> None:
    sim = _sim([[]], [[]], max_replicas=4)
    assert sim.scale(0, 5) == 4 and sim.scale(0, 1) == 0


def test_shorter_keep_alive_expires_long_idle_replicas_at_once() -> None:
    sim = _sim([[1.0]], [[1.0]], keep_alive_s=600.0)
    _run(sim, 4)  # idle since 3 s, now at 120 s
    sim.set_keep_alive(0, 60.0)
    assert sim.replicas(0) == 0 and sim.keep_alive_s.tolist() == [60.0]
    with pytest.raises(ValueError, match="keep_alive"):
        sim.set_keep_alive(0, -1.0)


def test_functions_share_the_memory_budget_in_time_order() -> None:
    # Budget for one replica: function 1's request at 0.5 finds function 0's replica running and fails;
    # function 1's request at 40 gets a replica once function 0's has expired (keep-alive 5 s: 6+5=11).
    sim = _sim([[0.0], [0.5, 40.0]], [[5.0], [1.0, 1.0]], memory_budget_mb=150.0, keep_alive_s=5.0)
    sim.step()
    sim.step()
    tot = sim.totals
    assert tot[Stat.FAILED].tolist() == [0.0, 1.0]
    assert tot[Stat.SUCCEEDED].tolist() == [1.0, 1.0]
    assert sim.used_memory_mb == 0.0


def _random_run(seed: int, n_functions: int, budget: float) -> tuple[Simulator, EpisodeMetrics]:
    rng = np.random.default_rng(seed)
    profiles = sample_profiles(n_functions, rng)
    profiles = profiles.subset(np.arange(n_functions))
    rates = np.clip(profiles.rate_per_min, 0.5, 40.0)
    profiles = type(profiles)(
        rates,
        profiles.family,
        profiles.cv,
        np.clip(profiles.service_median_s, 0.01, 20.0),
        profiles.service_sigma,
        np.clip(profiles.memory_mb, 64.0, 512.0),
    )
    trace = synthetic_trace(profiles, 9 * 3600.0, 1800.0, rng)
    config = SimConfig(max_replicas=6, memory_budget_mb=budget, queue_timeout_s=5.0, keep_alive_s=45.0)
    sim = Simulator(trace, profiles.memory_mb, config, rng)
    for f in range(0, n_functions, 2):
        sim.set_windows(f, 90.0, 20.0)  # half of the functions under the hybrid mechanics
    metrics = EpisodeMetrics(n_functions)
    while not sim.done:
        for f in range(n_functions):
            sim.scale(f, int(rng.integers(-3, 4)))
        sim.step()
        metrics.add(sim)
        st = sim.stats
        assert np.all(st >= 0), "a negative count, time or level"
        assert np.all(st[Stat.CPU_UTIL] <= 1.0)
        assert np.all(st[Stat.REPLICAS] <= config.max_replicas)
        assert np.all(st[Stat.WARM_REPLICAS] <= st[Stat.REPLICAS])
        assert sim.used_memory_mb == pytest.approx(float(st[Stat.MEMORY_MB].sum()))
        assert sim.used_memory_mb <= budget + 1e-6
        assert np.all(sim.conservation() == 0)
        # Idle memory never exceeds the warm replica-seconds of the step.
        assert np.all(st[Stat.IDLE_MB_S] <= st[Stat.WARM_S] * profiles.memory_mb + 1e-6)
    return sim, metrics


@pytest.mark.parametrize(("seed", "n_functions", "budget"), [(1, 1, math.inf), (2, 4, 1024.0), (3, 6, 700.0)])
def test_invariants_hold_on_random_traces_under_random_scaling(
    seed: int, n_functions: int, budget: float
) -> None:
    sim, metrics = _random_run(seed, n_functions, budget)
    tot = sim.totals
    assert tot[Stat.ARRIVALS].sum() > 0
    # Everything that arrived either succeeded, failed or is still queued or running.
    assert np.array_equal(metrics.totals, tot)
    summary = metrics.summary()
    assert summary["throughput"] + summary["failed"] <= summary["arrivals"]
    assert 0.0 <= summary["cold_start_rate"] <= 1.0
    assert summary["latency_p50_s"] <= summary["latency_p99_s"]


def test_the_same_seed_gives_the_same_simulation() -> None:
    a, _ = _random_run(7, 3, 900.0)
    b, _ = _random_run(7, 3, 900.0)
    c, _ = _random_run(8, 3, 900.0)
    assert np.array_equal(a.totals, b.totals)
    assert not np.array_equal(a.totals, c.totals)


def test_run_controller_reports_the_episode_figures() -> None:
    sim = _sim([[10.0, 200.0]], [[5.0, 5.0]], keep_alive_s=60.0)
    summary = run_controller(sim, NoOp()).summary()
    # Both requests cold (the replica expired at 76 s); each waited 1 s and ran 5 s.
    assert summary["cold_start_rate"] == 1.0 and summary["per_function_cold_pct"] == [100.0]
    assert summary["wasted_memory_mb_s"] == pytest.approx(2 * 60.0 * MEM)
    assert summary["cpu_seconds"] == pytest.approx(12.0)
    assert summary["latency_p50_s"] == pytest.approx(6.0) and summary["steps"] == 10
    assert summary["throughput"] == 2.0


def test_bad_configuration_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="SimConfig.concurrency"):
        SimConfig(concurrency=0)
    with pytest.raises(ValueError, match="SimConfig.cold_start_min_s"):
        SimConfig(cold_start_min_s=8.0, cold_start_max_s=7.0)
    trace = Trace((np.array([1.0]),), (np.array([1.0]),), 10.0)
    with pytest.raises(ValueError, match="memory_mb"):
        Simulator(trace, np.array([-1.0]), SimConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="sorted"):
        Trace((np.array([2.0, 1.0]),), (np.array([1.0, 1.0]),), 10.0)


def test_hybrid_windows_unload_after_execution_and_prewarm_after_the_prewarm_window() -> None:
    # Pre-warm window 60 s, keep-alive 120 s. The request at 10 runs 11 -> 16 on a cold replica, which is
    # unloaded at 16; at 16 + 60 = 76 a replica starts (ready 77); the request at 100 finds it warm and
    # ends at 101, when its replica is unloaded; the next pre-warm starts at 161 and, unused, expires at
    # 162 + 120 = 282.
    sim = _sim([[10.0, 100.0]], [[5.0, 1.0]])
    sim.set_windows(0, 120.0, 60.0)
    steps = _run(sim, 10)
    assert [s["cold_starts"] for s in steps[:4]] == [1, 0, 0, 0]
    assert [s["started"] for s in steps] == [1, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    assert [s["replicas"] for s in steps] == [0, 0, 1, 0, 0, 1, 1, 1, 1, 0]
    # Warm and idle: 77 -> 100 (23 s) and 162 -> 282 (120 s); busy time is not idle.
    assert sum(s["idle_mb_s"] for s in steps) == pytest.approx((23.0 + 120.0) * MEM)
    assert sum(s["init_s"] for s in steps) == pytest.approx(3.0)


def test_a_request_before_the_prewarm_is_due_reschedules_it_from_its_own_completion() -> None:
    sim = _sim([[10.0, 50.0]], [[5.0, 1.0]])
    sim.set_windows(0, 120.0, 60.0)
    steps = _run(sim, 5)
    # 16 -> unloaded; the request at 50 comes before the pre-warm (due 76): cold, ends 52; pre-warm at 112.
    assert [s["cold_starts"] for s in steps] == [1, 1, 0, 0, 0]
    assert [s["started"] for s in steps] == [1, 1, 0, 1, 0]
    assert sim.prewarm_s.tolist() == [60.0] and sim.keep_alive_s.tolist() == [120.0]
    with pytest.raises(ValueError, match="prewarm_s"):
        sim.set_windows(0, 10.0, -1.0)
