"""A sweep's cost report: runtime counters parsed from a Prometheus exposition, differenced over the sweep,
priced, and shown in the A/B table; all with hand-computed values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from ftg_common import layout
from ftg_common.store.file import FileStore
from workflows.compare import TrialRow, compare, cost_as_dict, to_markdown, to_rich_table
from workflows.cost import sweep_cost
from workflows.engines.invokers import PoolUsage
from workflows.gateway_stats import (
    RuntimeCounters,
    SweepRuntime,
    load_runtime,
    measure_segment,
    parse_metrics,
    sweep_cost_of,
)

EXPOSITION = """\
# HELP gateway_cold_start_seconds Seconds a call waited for a replica to start
# TYPE gateway_cold_start_seconds histogram
gateway_cold_start_seconds_bucket{function_name="rollout-collector",le="0.5"} 1.0
gateway_cold_start_seconds_bucket{function_name="rollout-collector",le="+Inf"} 2.0
gateway_cold_start_seconds_count{function_name="rollout-collector"} 2.0
gateway_cold_start_seconds_sum{function_name="rollout-collector"} 0.75
gateway_cold_start_seconds_bucket{function_name="policy-updater",le="+Inf"} 1.0
gateway_cold_start_seconds_count{function_name="policy-updater"} 1.0
gateway_cold_start_seconds_sum{function_name="policy-updater"} 1.5
# HELP gateway_billed_gb_seconds_total Call seconds at a replica times the function's memory limit in GB
# TYPE gateway_billed_gb_seconds_total counter
gateway_billed_gb_seconds_total{function_name="rollout-collector"} 2.5
gateway_billed_gb_seconds_total{function_name="policy-updater"} 10.0
# HELP gateway_idle_gb_seconds_total Seconds ready replicas served no call, times their memory limit in GB
# TYPE gateway_idle_gb_seconds_total counter
gateway_idle_gb_seconds_total{function_name="rollout-collector"} 4.0
gateway_idle_gb_seconds_total{function_name="policy-updater"} 6.0
# HELP gateway_function_invocation_total Function invocations
# TYPE gateway_function_invocation_total counter
gateway_function_invocation_total{code="200",function_name="rollout-collector"} 12.0
"""


def test_the_gateways_counters_are_summed_over_functions() -> None:
    c = parse_metrics(EXPOSITION)
    assert c == RuntimeCounters(idle_gb_s=10.0, cold_starts=3.0, cold_start_s=2.25, billed_gb_s=12.5)


def test_a_declared_histogram_without_samples_is_zero_cold_starts() -> None:
    # A fresh gateway: the histogram is declared, but no call has waited for a replica yet.
    fresh = (
        "# HELP gateway_cold_start_seconds Seconds a call waited for a replica to start\n"
        "# TYPE gateway_cold_start_seconds histogram\n"
    )
    assert parse_metrics(fresh) == RuntimeCounters(None, 0.0, 0.0, None)


def test_series_a_gateway_does_not_expose_are_unknown_not_zero() -> None:
    # A stock OpenFaaS gateway: invocation counts, no idle GB-s and no cold-start histogram.
    text = EXPOSITION.split("# HELP gateway_function_invocation_total")[1]
    c = parse_metrics("# HELP gateway_function_invocation_total" + text)
    assert c == RuntimeCounters(None, None, None, None)


def test_the_difference_over_a_sweep_and_a_counter_reset() -> None:
    start = RuntimeCounters(idle_gb_s=10.0, cold_starts=3.0, cold_start_s=2.25, billed_gb_s=12.5)
    end = RuntimeCounters(idle_gb_s=16.5, cold_starts=5.0, cold_start_s=3.0, billed_gb_s=4.0)
    d = end.since(start)
    # billed went down: the gateway restarted, so everything it counted since then (4.0) is new.
    assert d == RuntimeCounters(idle_gb_s=6.5, cold_starts=2.0, cold_start_s=0.75, billed_gb_s=4.0)
    assert RuntimeCounters(None, 1.0, 1.0).since(start).idle_gb_s is None
    assert d.plus(RuntimeCounters(1.0, 1.0, 0.25, None)) == RuntimeCounters(7.5, 3.0, 1.0, None)


def test_a_warm_pool_worker_reserves_its_largest_function_while_idle() -> None:
    # Two workers ready 100 s in all, 30 s of it in calls, each reserving 1 GB.
    assert PoolUsage(alive_s=100.0, busy_s=30.0, memory_gb=1.0).idle_gb_s == pytest.approx(70.0)
    assert PoolUsage(alive_s=0.0, busy_s=0.0, memory_gb=1.0).idle_gb_s == 0.0


def test_sweep_cost_prices_billed_idle_and_a_dedicated_server_for_the_same_wall_time() -> None:
    c = sweep_cost(
        wall_s=1800.0,
        billed_gb_s=200.0,
        idle_gb_s=50.0,
        cold_starts=4.0,
        usd_per_gb_s=0.001,
        dedicated_usd_per_hour=0.5,
        source="gateway",
    )
    assert (c.faas_usd, c.idle_usd, c.dedicated_usd, c.cold_starts) == pytest.approx((0.2, 0.05, 0.25, 4))
    unknown = sweep_cost(1800.0, 200.0, None, None, 0.001, 0.5)
    assert unknown.idle_gb_s is None and unknown.idle_usd is None and unknown.cold_starts is None


class _Probe:
    """Hands out the counters of ``readings`` in turn."""

    def __init__(self, *readings: RuntimeCounters | None) -> None:
        self.readings: Iterator[RuntimeCounters | None] = iter(readings)

    def __call__(self) -> RuntimeCounters | None:
        return next(self.readings)


class _Clock:
    def __init__(self, *times: float) -> None:
        self.times = iter(times)

    def __call__(self) -> float:
        return next(self.times)


def test_segments_of_a_resumed_sweep_add_up_in_the_store(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    sid = "sweep-a"
    assert load_runtime(store, sid) is None
    probe = _Probe(RuntimeCounters(10.0, 1.0, 0.5), RuntimeCounters(14.0, 3.0, 1.5))
    with measure_segment(store, sid, "gateway g", probe, clock=_Clock(100.0, 160.0)):
        pass
    # The second segment (a resume) fails midway: what it spent is still recorded.
    probe = _Probe(RuntimeCounters(0.0, 0.0, 0.0), RuntimeCounters(2.0, 1.0, 0.25))
    with (
        pytest.raises(KeyboardInterrupt),
        measure_segment(store, sid, "gateway g", probe, clock=_Clock(0.0, 30.0)),
    ):
        raise KeyboardInterrupt
    got = load_runtime(store, sid)
    assert got == SweepRuntime(90.0, RuntimeCounters(6.0, 3.0, 1.25, None), "gateway g", 2)
    assert store.get_json(layout.sweep_runtime_key(sid))["segments"] == 2
    cost = sweep_cost_of(got, billed_gb_s=30.0, usd_per_gb_s=0.01, dedicated_usd_per_hour=36.0)
    assert cost is not None
    assert (cost.wall_s, cost.idle_gb_s, cost.cold_starts) == (90.0, 6.0, 3)
    assert (cost.faas_usd, cost.idle_usd, cost.dedicated_usd) == pytest.approx((0.3, 0.06, 0.9))


def test_an_unreadable_gateway_makes_the_sweeps_idle_and_cold_starts_unknown(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    with measure_segment(store, "s", "gateway g", _Probe(None, RuntimeCounters()), clock=_Clock(0.0, 5.0)):
        pass
    cost = sweep_cost_of(load_runtime(store, "s"), 1.0, 1.0, 3600.0)
    assert cost is not None and cost.idle_gb_s is None and cost.cold_starts is None
    assert cost.wall_s == 5.0 and cost.dedicated_usd == pytest.approx(5.0)
    assert sweep_cost_of(None, 1.0, 1.0, 1.0) is None


def test_the_ab_table_shows_the_sweeps_cost_below_the_configs() -> None:
    rows = compare(
        [TrialRow("r", "zoo", 0, "finished", 500.0, 12_288, 2.0, 2.5, 30.0, 100_096, 20.0)], 0.001, 0.5
    )
    cost = sweep_cost(60.0, 20.0, 35.5, 4.0, 0.001, 0.5, "gateway http://127.0.0.1:8080")
    md = to_markdown(rows, 475.0, cost)
    assert md.startswith(to_markdown(rows, 475.0))  # the per-config table is unchanged
    last = md.strip().splitlines()[-1]
    assert last == (
        "| gateway http://127.0.0.1:8080 | 60.0 | 20.0 | 35.5 | 4 | 0.02000 | 0.03550 | 0.00833 |"
    )
    assert cost_as_dict(cost)["idle_gb_s"] == 35.5 and cost_as_dict(cost)["cold_starts"] == 4
    console = Console(width=400, record=True)
    console.print(to_rich_table(rows, 475.0, "t", cost))
    text = console.export_text()
    assert "idle 35.5 GB-s" in text and "4 cold starts" in text and "dedicated $0.00833" in text
    unknown = to_markdown(rows, 475.0, sweep_cost(60.0, 20.0, None, None, 0.001, 0.5))
    assert unknown.strip().splitlines()[-1] == "| all trials | 60.0 | 20.0 | - | - | 0.02000 | - | 0.00833 |"
