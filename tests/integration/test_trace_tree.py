"""One iteration through a real gateway and replica processes is one trace:
iteration (driver) -> step attempt (engine) -> gateway call -> function (replica process, over OTLP)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ftg_common import runtime
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.settings import Settings
from tests.funcs import in_memory_spans
from tests.http_servers import serve_in_thread, stop


class _Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: keeps (trace id, span id, parent id, name) of every span posted."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.spans: list[tuple[str, str, str, str]] = []


class _Receive(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for s in scope.spans:
                    self.server.spans.append(
                        (s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name)
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = serve_in_thread(_Receive, _Collector)
    assert isinstance(server, _Collector)
    yield server
    stop(server)


@pytest.fixture
def local_spans() -> Iterator[Any]:
    with in_memory_spans() as exporter:
        yield exporter


def test_the_trace_crosses_the_gateway_into_the_replica_processes(
    ftg_env, collector, local_spans, monkeypatch
) -> None:
    from workflows.driver import RunDriver
    from workflows.engines.invokers import HttpInvoker, InProcessInvoker, RoutingInvoker
    from workflows.engines.local import LocalEngine
    from workflows.gateway.server import serve

    # The replicas inherit this process's environment: they export their spans to the collector.
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    server = serve("127.0.0.1", 0, settings=Settings(gateway_password="x" * 12), queue_api=False)
    gateway = f"http://127.0.0.1:{server.server_address[1]}"
    engine = LocalEngine(RoutingInvoker(local=InProcessInvoker(), http=HttpInvoker()), gateway=gateway)
    ppo = PPOConfig(n_envs=2, n_steps=16, shards=2, batch_size=32, n_epochs=1, total_steps=32)
    cfg = RunConfig(run_id="traced-gw", seed=0, ppo=ppo)
    try:
        RunDriver(cfg, engine=engine, store=runtime.store(), meta=runtime.meta()).drive()
        local = {format(s.context.span_id, "016x"): s for s in local_spans.get_finished_spans()}
        (iteration,) = [s for s in local.values() if s.name == "iteration"]
        trace_id = format(iteration.context.trace_id, "032x")

        def functions() -> list[tuple[str, str, str, str]]:
            return [s for s in collector.spans if s[3].startswith("function ") and s[0] == trace_id]

        # Each replica exports in batches every half second.
        deadline = time.monotonic() + 30
        while len(functions()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        engine.close()
        stop(server)
    # 2 collectors, the aggregator, the updater and the (last iteration's) evaluator.
    assert sorted(n for *_, n in functions()) == sorted(
        ["function rollout-collector"] * 2
        + ["function reward-aggregator", "function policy-updater", "function policy-evaluator"]
    )
    for _, _, parent_id, name in functions():
        gateway_span = local[parent_id]  # the function continues the gateway's span...
        assert gateway_span.name == f"gateway {name.removeprefix('function ')}"
        step = local[format(gateway_span.parent.span_id, "016x")]  # ...which continues the step's...
        assert step.name.startswith("step ")
        assert step.parent.span_id == iteration.context.span_id  # ...which is the iteration's child
