"""The baseline scaling policies on hand-made traces, and their math against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ftg_common.envs.coldstart.baselines import (
    AWS_KEEP_ALIVE_S,
    FixedKeepAlive,
    HistogramConfig,
    HorizontalPodAutoscaler,
    HybridHistogram,
    OnDemand,
    histogram_windows,
    hpa_desired,
    idle_histogram,
)
from ftg_common.envs.coldstart.controller import run_controller
from ftg_common.envs.coldstart.simulator import SimConfig, Simulator, Stat
from ftg_common.envs.coldstart.trace import Trace

MEM = 100.0


def _one_function(arrivals: list[float], services: list[float], horizon: float, **cfg: float) -> Simulator:
    """One function over a hand-made trace; every cold start takes exactly 1 s."""
    trace = Trace((np.array(arrivals, dtype=np.float64),), (np.array(services, dtype=np.float64),), horizon)
    config = SimConfig(cold_start_min_s=1.0, cold_start_max_s=1.0, **cfg)  # type: ignore[arg-type]
    return Simulator(trace, np.array([MEM]), config, np.random.default_rng(0))


# --- fixed keep-alive and on-demand ---------------------------------------------------------------
@pytest.mark.parametrize(("gap", "cold"), [(AWS_KEEP_ALIVE_S - 0.001, 0.0), (AWS_KEEP_ALIVE_S, 1.0)])
def test_a_fixed_keep_alive_expires_exactly_after_its_window(gap: float, cold: float) -> None:
    # The request at 10 starts a replica (ready 11) and ends at 16; 10 minutes later it is gone.
    sim = _one_function([10.0, 16.0 + gap], [5.0, 1.0], horizon=900.0, keep_alive_s=60.0)
    metrics = run_controller(sim, FixedKeepAlive(AWS_KEEP_ALIVE_S))
    assert sim.keep_alive_s.tolist() == [AWS_KEEP_ALIVE_S] and sim.prewarm_s.tolist() == [0.0]
    assert metrics.totals[Stat.COLD_STARTS, 0] == 1.0 + cold
    # The first replica expired at 616 only when the second request came at 616 or later.
    assert metrics.totals[Stat.EXPIRED, 0] == cold


def test_a_fixed_keep_alive_leaves_no_replica_after_the_window() -> None:
    sim = _one_function([10.0], [5.0], horizon=900.0)
    FixedKeepAlive(120.0).reset(sim)
    replicas = []
    while not sim.done:
        sim.step()
        replicas.append(sim.replicas(0))
    # Idle from 16: present through the step ending at 120, gone at 136 (the step ending at 150).
    assert replicas[:5] == [1, 1, 1, 1, 0] and not any(replicas[4:])
    with pytest.raises(ValueError, match="keep_alive_s"):
        FixedKeepAlive(-1.0)


def test_on_demand_never_prewarms_and_holds_no_idle_replica() -> None:
    # Bursts of three requests a minute apart: each burst starts its own replicas, which leave when done.
    arrivals = [t + d for t in (5.0, 65.0, 125.0, 185.0) for d in (0.0, 0.5, 1.0)]
    sim = _one_function(arrivals, [2.0] * len(arrivals), horizon=300.0)
    metrics = run_controller(sim, OnDemand())
    tot = metrics.totals[:, 0]
    # Every replica was started by a request that then waited for it: no pre-warm, all cold.
    assert tot[Stat.STARTED] == tot[Stat.COLD_STARTS] == len(arrivals)
    assert tot[Stat.IDLE_MB_S] == 0.0 and sim.replicas(0) == 0
    assert metrics.summary()["cold_start_rate"] == 1.0


# --- hybrid histogram ------------------------------------------------------------------------------
def _known_sample() -> np.ndarray:
    """4 idle times in minute 1, 92 in minute 3, 4 in minute 9 (100 in all, none out of bounds)."""
    return np.array([70.0] * 4 + [200.0] * 92 + [550.0] * 4)


def test_idle_times_fall_into_one_minute_bins_over_four_hours() -> None:
    config = HistogramConfig()
    counts, oob = idle_histogram([0.0, 59.999, 60.0, 14_399.9, 14_400.0, 90_000.0], config)
    assert config.n_bins == 240 and counts.shape == (240,)
    assert (counts[0], counts[1], counts[239], counts.sum(), oob) == (2, 1, 1, 4, 2)
    with pytest.raises(ValueError, match="idle_times_s"):
        idle_histogram([-1.0], config)


def test_histogram_windows_equal_the_hand_computed_percentiles() -> None:
    config = HistogramConfig()
    counts, oob = idle_histogram(_known_sample(), config)
    w = histogram_windows(counts, oob, config)
    # 5th percentile: cumulative shares 0.04 (minute 1), 0.96 (minute 3) -> bin 3, lower edge 180 s,
    # less 10%: 162 s. 99th: 0.96 < 0.99 until minute 9 -> upper edge 600 s, plus 10%: 660 s, which
    # the replica pre-warmed at 162 s reaches after 660 - 162 = 498 s.
    assert w.representative
    assert w.prewarm_s == pytest.approx(162.0)
    assert w.keep_alive_s == pytest.approx(498.0)
    # CV of the 240 bin counts (population std / mean): counts 4, 92, 4 and 237 zeros.
    mean = 100 / 240
    assert w.cv == pytest.approx(math.sqrt((16 + 92**2 + 16) / 240 - mean**2) / mean)


def test_the_percentile_bins_match_numpy_on_a_random_sample() -> None:
    rng = np.random.default_rng(3)
    sample = rng.gamma(2.0, 300.0, size=1000)
    config = HistogramConfig(margin=0.0, min_samples=1, cv_threshold=0.0)
    w = histogram_windows(*idle_histogram(sample, config), config)
    head = np.floor(np.percentile(sample, 5, method="inverted_cdf") / 60.0) * 60.0
    tail = (np.floor(np.percentile(sample, 99, method="inverted_cdf") / 60.0) + 1) * 60.0
    assert w.prewarm_s == head and w.keep_alive_s + w.prewarm_s == tail


def test_a_head_in_the_first_minute_keeps_the_replica_loaded_for_the_tail() -> None:
    config = HistogramConfig()
    w = histogram_windows(*idle_histogram([10.0] * 50 + [130.0] * 50, config), config)
    assert (w.prewarm_s, w.keep_alive_s) == (0.0, pytest.approx(180.0 * 1.1))


@pytest.mark.parametrize(
    ("sample", "why"),
    [
        ([200.0] * 9, "fewer than min_samples"),
        (np.arange(240) * 60.0 + 1.0, "flat: CV 0"),
        ([200.0] * 10 + [20_000.0] * 10, "half out of bounds"),
    ],
)
def test_an_unrepresentative_histogram_falls_back_to_a_fixed_keep_alive(
    sample: list[float], why: str
) -> None:
    config = HistogramConfig()
    w = histogram_windows(*idle_histogram(sample, config), config)
    assert not w.representative, why
    assert (w.keep_alive_s, w.prewarm_s) == (4 * 3600.0, 0.0)
    own = HistogramConfig(fallback_keep_alive_s=600.0)
    assert histogram_windows(*idle_histogram(sample, own), own).keep_alive_s == 600.0


def test_histogram_config_refuses_bad_values_naming_the_field() -> None:
    with pytest.raises(ValueError, match="HistogramConfig.margin"):
        HistogramConfig(margin=1.0)
    with pytest.raises(ValueError, match="counts must have 240 bins"):
        histogram_windows(np.zeros(10), 0, HistogramConfig())


def test_the_hybrid_policy_learns_a_periodic_function_and_prewarms_it() -> None:
    # A request every 200 s running 1 s: idle times 198 s, then 199 s, all in minute 3. From the third
    # on the histogram is representative: pre-warm 180 * 0.9 = 162 s after a completion, keep-alive
    # 240 * 1.1 - 162 = 102 s. Before that, the fallback keeps the replica loaded (warm, no cold start).
    arrivals = [200.0 * k for k in range(10)]
    sim = _one_function(arrivals, [1.0] * 10, horizon=2100.0)
    policy = HybridHistogram(HistogramConfig(min_samples=3))
    metrics = run_controller(sim, policy)
    assert sim.prewarm_s.tolist() == pytest.approx([162.0])
    assert sim.keep_alive_s.tolist() == pytest.approx([102.0])
    assert policy.windows[0].representative and int(policy.counts[0][3]) == 9
    # Only the first request is cold; each pre-warmed replica is ready 163 s after a completion and
    # waits 36 s (199 - 163) for the next request, instead of 199 s under a keep-alive.
    tot = metrics.totals[:, 0]
    assert tot[Stat.COLD_STARTS] == 1
    assert tot[Stat.STARTED] == 1 + 7  # the first request's replica and one pre-warm per later gap
    # Loaded idle: 2 -> 630 but the three 1 s requests under the fallback (its windows change at the
    # step boundary 630), 6 pre-warmed gaps of 36 s, and the last pre-warm (ready 1964), unused, until
    # it expires 102 s later.
    assert tot[Stat.IDLE_MB_S] == pytest.approx((628.0 - 3.0 + 6 * 36.0 + 102.0) * MEM)
    assert tot[Stat.EXPIRED] == 1 + 6 + 1


def test_the_hybrid_policy_keeps_its_histogram_across_resets_only_when_asked() -> None:
    arrivals = [200.0 * k for k in range(10)]
    for keep, windows in ((True, (102.0, 162.0)), (False, (4 * 3600.0, 0.0))):
        policy = HybridHistogram(HistogramConfig(min_samples=3), keep_history=keep)
        run_controller(_one_function(arrivals, [1.0] * 10, horizon=2100.0), policy)
        sim = _one_function(arrivals, [1.0] * 10, horizon=2100.0)
        policy.reset(sim)
        # Kept: the 9 idle times of the first run set the windows from the start of the second.
        assert (sim.keep_alive_s[0], sim.prewarm_s[0]) == pytest.approx(windows)
        assert int(policy.counts[0].sum()) == (9 if keep else 0)


# --- HPA-like CPU threshold ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "util", "desired"),
    [
        (2, 0.9, 4),  # ceil(2 * 0.9 / 0.5) = ceil(3.6)
        (2, 0.54, 2),  # 0.54 / 0.5 = 1.08: within the 10% tolerance
        (4, 0.1, 1),  # ceil(0.8)
        (4, 0.0, 1),  # ceil(0) = 0, raised to min_replicas
        (0, 0.0, 1),  # no replica: min_replicas
        (10, 1.0, 12),  # ceil(20), capped at max_replicas
    ],
)
def test_hpa_desired_replicas_follow_the_kubernetes_rule(current: int, util: float, desired: int) -> None:
    assert hpa_desired(current, util, target=0.5, tolerance=0.1, min_replicas=1, max_replicas=12) == desired


def test_hpa_scales_up_above_target_at_once_and_down_only_after_stabilisation() -> None:
    # reset starts 1 replica at 0 (ready 1). Four requests of 100 s at 0-3 s: the first waits for it,
    # the platform starts one replica for each other (ready 2, 3, 4); they run until 101-104 s.
    sim = _one_function([0.0, 1.0, 2.0, 3.0], [100.0] * 4, horizon=900.0)
    hpa = HorizontalPodAutoscaler(target=0.5, stabilisation_s=300.0)
    hpa.reset(sim)
    assert sim.replicas(0) == 1 and math.isinf(sim.keep_alive_s[0])
    replicas, utils = [], []
    while not sim.done:
        sim.step()
        utils.append(sim.rows[0][Stat.CPU_UTIL])
        hpa.act(sim)
        replicas.append(sim.replicas(0))
    # Step 1: all busy or starting, utilisation 1 -> ceil(4 / 0.5) = 8 at once. Step 2: 4 busy + 4 new
    # ones starting 1 s: (120 + 4) / 240, within 10% of the target: hold. Step 3: 120 / 240. Step 4:
    # the work ends (11 + 12 + 13 + 14 busy seconds of 240) -> ceil(8 * 50 / 240 / 0.5) = 4. Then idle -> 1.
    assert utils[:5] == pytest.approx([1.0, 124 / 240, 0.5, 50 / 240, 0.0])
    # Scale-down waits until the last recommendation of 8 (step 3) has left the 10-step window: down
    # to 4 after step 13, to 1 after step 14, and there it stays (min_replicas).
    assert replicas[:12] == [8] * 12
    assert replicas[12:14] == [4, 1] and set(replicas[14:]) == {1}
