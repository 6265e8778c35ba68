"""Traces: one iteration is one trace, iteration -> DAG step attempts -> function spans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ftg_common import tracing
from tests.funcs import in_memory_spans


@pytest.fixture
def spans() -> Iterator[Any]:
    with in_memory_spans() as exporter:
        yield exporter


def test_an_iteration_is_one_trace_from_driver_to_functions(ftg_env, spans) -> None:
    from ftg_common.config import PPOConfig, RunConfig
    from ftg_common.settings import get_settings
    from workflows.driver import RunDriver
    from workflows.engines.invokers import InProcessInvoker, RoutingInvoker
    from workflows.engines.local import LocalEngine
    from workflows.sweep import open_services

    services = open_services(get_settings(), tracking=False, warm=False)
    engine = LocalEngine(RoutingInvoker(local=InProcessInvoker(), http=InProcessInvoker()))
    ppo = PPOConfig(
        n_envs=4,
        n_steps=16,
        shards=2,
        batch_size=32,
        n_epochs=1,
        total_steps=128,
        eval_every_steps=128,
        eval_episodes=1,
    )
    cfg = RunConfig(run_id="traced", seed=0, ppo=ppo)
    try:
        RunDriver(cfg, engine=engine, store=services.store, meta=services.meta).drive()
    finally:
        services.close()
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    iterations = [s for s in finished if s.name == "iteration"]
    assert [s.attributes["ftg.iteration"] for s in iterations] == [0, 1]
    for it in iterations:
        assert it.parent is None  # a root: one trace per iteration
        trace = [s for s in finished if s.context.trace_id == it.context.trace_id]
        steps = [s for s in trace if s.name.startswith("step ")]
        functions = [s for s in trace if s.name.startswith("function ")]
        assert all(by_id[s.parent.span_id] is it for s in steps)
        # Every function span is the child of the step attempt that called it.
        assert sorted(by_id[f.parent.span_id].name for f in functions) == sorted(s.name for s in steps)
        names = sorted(f.name for f in functions)
        want = ["function policy-updater", "function reward-aggregator"] + ["function rollout-collector"] * 2
        if it.attributes["ftg.iteration"] == 1:  # the last iteration evaluates
            want.append("function policy-evaluator")
        assert names == sorted(want)
        assert all(f.attributes["http.response.status_code"] == 200 for f in functions)


def test_tracing_off_records_nothing_and_leaves_headers_alone() -> None:
    tracing.install(None)
    with tracing.span("x") as s:
        assert s is None
    headers = {"Traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    assert tracing.inject(dict(headers)) == headers and tracing.current_traceparent() is None


def test_inject_replaces_a_traceparent_of_any_case(spans) -> None:
    with tracing.span("parent", headers={"TraceParent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}) as s:
        out = tracing.inject({"Traceparent": "stale", "X": "1"})
    assert set(out) == {"traceparent", "X"}
    assert out["traceparent"].split("-")[1] == "a" * 32  # the incoming trace continues
    assert out["traceparent"].split("-")[2] == format(s.context.span_id, "016x")
