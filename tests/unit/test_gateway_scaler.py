"""The gateway's scaling decisions and stack labels, as pure functions on a clock the test moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_clock import FakeClock
from workflows.gateway import scaler, stack
from workflows.gateway.scaler import Decision, FunctionView, ReplicaView, ScaleRule

T0 = 1_000.0
COLLECT = ScaleRule(min=0, max=50, target=1, zero=True, zero_duration=300.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def ready(rid: int, inflight: int = 0, idle_since: float | None = None) -> ReplicaView:
    return ReplicaView(rid, True, inflight, idle_since if inflight == 0 else None)


def starting(rid: int) -> ReplicaView:
    return ReplicaView(rid, False)


def view(name: str = "f", rule: ScaleRule = COLLECT, replicas=(), **kw) -> FunctionView:
    return FunctionView(name, rule, tuple(replicas), last_active=kw.pop("last_active", T0), **kw)


def test_a_burst_asks_for_one_replica_per_call_within_max_and_cap(clock: FakeClock) -> None:
    burst = view(waiting=64)
    assert scaler.plan([burst], clock(), cap=64, scale_down_after=30) == {"f": Decision(start=50)}
    assert scaler.plan([burst], clock(), cap=8, scale_down_after=30)["f"].start == 8
    # Replicas already starting count: only the difference is started.
    half = view(replicas=[starting(i) for i in range(20)], waiting=64)
    assert scaler.plan([half], clock(), cap=64, scale_down_after=30)["f"].start == 30


def test_target_is_calls_per_replica() -> None:
    rule = ScaleRule(min=0, max=10, target=4)
    assert scaler.wanted(view(rule=rule, waiting=9)) == 3
    assert scaler.wanted(view(rule=rule, replicas=[ready(1, inflight=4)], waiting=1)) == 2
    assert scaler.wanted(view(rule=rule)) == 0


def test_idle_replicas_above_the_floor_go_after_the_scale_down_delay(clock: FakeClock) -> None:
    replicas = [ready(1, idle_since=T0), ready(2, idle_since=T0), ready(3, inflight=1)]
    busy_fn = view(replicas=replicas, last_active=T0)
    clock.advance(29)
    assert scaler.plan([busy_fn], clock(), cap=64, scale_down_after=30)["f"] == Decision()
    clock.advance(1)
    # One call in flight wants one replica: both idle ones go, the busy one stays.
    assert sorted(scaler.plan([busy_fn], clock(), cap=64, scale_down_after=30)["f"].stop) == [1, 2]


def test_the_last_replica_stays_until_zero_duration_then_goes(clock: FakeClock) -> None:
    one = view(replicas=[ready(1, idle_since=T0)], last_active=T0)
    clock.advance(299)
    assert scaler.floor(one, clock()) == 1
    assert scaler.plan([one], clock(), cap=64, scale_down_after=30)["f"] == Decision()
    clock.advance(1)
    assert scaler.zero_due(one, clock()) and scaler.floor(one, clock()) == 0
    assert scaler.plan([one], clock(), cap=64, scale_down_after=30)["f"].stop == (1,)


def test_zero_duration_shorter_than_the_scale_down_delay_still_reaches_zero(clock: FakeClock) -> None:
    rule = ScaleRule(min=0, max=5, target=1, zero=True, zero_duration=1.0)
    fn = view(rule=rule, replicas=[ready(1, idle_since=T0), ready(2, idle_since=T0)], last_active=T0)
    clock.advance(1)
    assert sorted(scaler.plan([fn], clock(), cap=64, scale_down_after=30)["f"].stop) == [1, 2]


def test_without_zero_the_floor_is_min_and_the_last_warm_replica() -> None:
    rule = ScaleRule(min=0, max=5, target=1, zero=False, zero_duration=1.0)
    fn = view(rule=rule, replicas=[ready(1, idle_since=0.0)], last_active=0.0)
    assert scaler.floor(fn, 1e9) == 1
    assert scaler.floor(view(rule=rule), 1e9) == 0
    assert scaler.floor(view(rule=ScaleRule(min=2, max=5, target=1)), 1e9) == 2


def test_min_replicas_start_with_no_calls_and_zero_scales_them_down(clock: FakeClock) -> None:
    rule = ScaleRule(min=2, max=5, target=1, zero=True, zero_duration=60)
    assert scaler.plan([view(rule=rule)], clock(), cap=64, scale_down_after=30)["f"].start == 2
    warm = view(rule=rule, replicas=[ready(1, idle_since=T0), ready(2, idle_since=T0)])
    clock.advance(59)
    assert scaler.plan([warm], clock(), cap=64, scale_down_after=30)["f"] == Decision()
    clock.advance(1)
    assert len(scaler.plan([warm], clock(), cap=64, scale_down_after=30)["f"].stop) == 2


def test_a_count_set_by_hand_holds_until_zero_duration_and_is_then_released(clock: FakeClock) -> None:
    pinned = view(replicas=[ready(1, idle_since=T0)], pinned=3)
    assert scaler.plan([pinned], clock(), cap=64, scale_down_after=30)["f"] == Decision(start=2)
    three = view(replicas=[ready(i, idle_since=T0) for i in (1, 2, 3)], pinned=3)
    clock.advance(100)
    assert scaler.plan([three], clock(), cap=64, scale_down_after=30)["f"] == Decision()
    clock.advance(200)
    decision = scaler.plan([three], clock(), cap=64, scale_down_after=30)["f"]
    assert decision.unpin and len(decision.stop) == 3
    # Scaled to zero by hand, it overrides min.
    assert scaler.floor(view(rule=ScaleRule(min=2, max=5, target=1), pinned=0), clock()) == 0


def test_starting_and_busy_replicas_are_never_stopped_by_the_autoscaler(clock: FakeClock) -> None:
    fn = view(replicas=[starting(1), ready(2, inflight=1)], pinned=0, last_active=T0 - 1e6)
    clock.advance(1e6)
    assert scaler.plan([fn], clock(), cap=64, scale_down_after=0)["f"].stop == ()


def test_the_cap_is_shared_and_the_most_waiting_go_first(clock: FakeClock) -> None:
    a = view("a", waiting=3)
    b = view("b", waiting=10)
    out = scaler.plan([a, b], clock(), cap=6, scale_down_after=30, draining=1)
    assert (out["b"].start, out["a"].start) == (5, 0)


def test_idle_replicas_of_other_functions_are_reclaimed_for_waiting_calls(clock: FakeClock) -> None:
    collectors = view(
        "collect", replicas=[ready(1, idle_since=T0 - 5), ready(2, idle_since=T0 - 9), ready(3, inflight=1)]
    )
    aggregate = view(
        "aggregate", rule=ScaleRule(min=0, max=10, target=1, zero=True, zero_duration=300), waiting=1
    )
    out = scaler.plan([collectors, aggregate], clock(), cap=3, scale_down_after=30)
    # The longest idle collector makes room; the busy one is untouched.
    assert out["collect"].stop == (2,) and out["aggregate"].start == 1
    # Without calls waiting nothing is reclaimed: the floor alone does not evict other functions.
    floor_only = view("aggregate", rule=ScaleRule(min=1, max=10, target=1))
    out = scaler.plan([collectors, floor_only], clock(), cap=3, scale_down_after=30)
    assert out["collect"] == Decision() and out["aggregate"].start == 0


def test_a_function_that_just_failed_to_start_waits_before_the_next_try(clock: FakeClock) -> None:
    fn = view(waiting=5, start_blocked=True)
    assert scaler.plan([fn], clock(), cap=64, scale_down_after=30)["f"].start == 0


def test_calls_are_packed_onto_the_busiest_replica_with_room() -> None:
    replicas = [ready(1, idle_since=0), ready(2, inflight=1), ready(3, inflight=3), starting(4)]
    assert scaler.choose_replica(replicas, target=4) == 2 + 1  # 3 has room for one more
    assert scaler.choose_replica(replicas, target=3) == 2
    assert scaler.choose_replica(replicas, target=1) == 1
    assert scaler.choose_replica([ready(2, inflight=1), starting(4)], target=1) is None
    # Ties go to the oldest replica, so the newest ones idle out first.
    assert scaler.choose_replica([ready(5, idle_since=0), ready(2, idle_since=0)], target=1) == 2


def test_bad_rules_are_refused() -> None:
    for kw in ({"min": -1}, {"max": 0}, {"min": 3, "max": 2}, {"target": 0}, {"zero_duration": -1}):
        with pytest.raises(ValueError):
            ScaleRule(**kw)


# --------------------------------------------------------------------------- stack.yml labels


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300),
        ("30s", 30),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("2.5s", 2.5),
        ("120", 120),
        ("1m0.5s", 60.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert stack.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "m", "5m junk", "-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(stack.StackError):
        stack.parse_duration(text)


def test_the_project_stack_file() -> None:
    functions = stack.load()
    assert list(functions) == ["rollout-collector", "reward-aggregator", "policy-updater", "policy-evaluator"]
    collect = functions["rollout-collector"]
    assert collect.rule == ScaleRule(min=0, max=50, target=1, zero=True, zero_duration=300)
    assert collect.memory_gb == pytest.approx(256 * 2**20 / 1e9) and collect.timeout_s == 120
    # The watchdog's timeouts configure the watchdog, not the function.
    assert "exec_timeout" not in collect.environment and collect.environment["OMP_NUM_THREADS"] == "1"
    assert stack.load(zero_duration_s=1.5)["policy-updater"].rule.zero_duration == 1.5


def test_labels_default_to_openfaas_and_unknown_types_are_refused() -> None:
    assert stack.scale_rule({}) == ScaleRule(min=1, max=20, target=50, zero=False, zero_duration=900)
    with pytest.raises(stack.StackError, match="rps"):
        stack.scale_rule({"com.openfaas.scale.type": "rps"})
    with pytest.raises(stack.StackError, match="integer"):
        stack.scale_rule({"com.openfaas.scale.max": "many"})
    with pytest.raises(stack.StackError):
        stack.scale_rule({"com.openfaas.scale.min": "5", "com.openfaas.scale.max": "2"})


def test_a_stack_with_a_function_the_replicas_cannot_serve_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stack.yml"
    path.write_text("functions:\n  mystery:\n    image: x\n    limits: {memory: 128Mi}\n")
    with pytest.raises(stack.StackError, match="mystery"):
        stack.load(path)
    path.write_text("functions:\n  rollout-collector:\n    image: x\n")
    with pytest.raises(stack.StackError, match="limits.memory"):
        stack.load(path)
    path.write_text("[]")
    with pytest.raises(stack.StackError, match="no functions"):
        stack.load(path)
