"""The embedded engine through a gateway's async route: ``POST /async-function/<name>`` + callbacks to a
server in the driver, against the real gateway (replica processes, NATS JetStream or the in-process
queue) and, for the failure cases, a scripted stub gateway."""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ftg_common import runtime
from ftg_common.settings import Settings
from tests.funcs import new_run
from tests.http_servers import serve_in_thread, stop
from tests.nats_streams import NATS_URL, delete_stream, new_stream_name
from workflows.engines.async_invoker import AsyncHttpInvoker, async_url
from workflows.engines.invokers import InProcessInvoker, InvocationError, RoutingInvoker
from workflows.engines.local import LocalEngine
from workflows.gateway.asyncq.jetstream import reachable
from workflows.gateway.server import GatewayServer, serve

pytestmark = pytest.mark.timeout(300)

TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(params=["nats", "memory"])
def gateway(request: pytest.FixtureRequest, ftg_env: Path) -> Iterator[GatewayServer]:
    """A gateway with its async queue: JetStream on a stream of this test's own, or in-process."""
    kind = request.param
    stream = new_stream_name()
    if kind == "nats" and not reachable(NATS_URL, 2.0):
        pytest.skip(f"NATS with JetStream is not reachable at {NATS_URL}")
    settings = Settings(
        gateway_password=SecretStr("async-invoker-test"),
        gateway_max_replicas=4,
        async_queue=kind,
        nats_url=NATS_URL,
        async_stream=stream,
        async_concurrency=4,
    )
    server = serve("127.0.0.1", 0, settings=settings)
    assert server.gateway.queue is not None, server.gateway.queue_problem
    yield server
    stop(server)
    if kind == "nats":
        delete_stream(stream)


def _url(server: GatewayServer | ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_async_urls_keep_the_gateways_prefix_and_refuse_what_the_route_cannot_take() -> None:
    assert (
        async_url("http://gw:8080/function/rollout-collector")
        == "http://gw:8080/async-function/rollout-collector"
    )
    assert async_url("https://h/openfaas/function/f") == "https://h/openfaas/async-function/f"
    assert async_url("http://gw/function/f/sub") is None
    assert async_url("http://gw/function/f?x=1") is None
    assert async_url("http://gw/function/") is None
    assert async_url("local://gateway/function/f") is None


def test_a_dag_iteration_completes_through_async_calls_and_callbacks(gateway: GatewayServer) -> None:
    from ftg_common.schemas import EvalResult, UpdateResult

    url = _url(gateway)
    cfg = new_run(n_envs=6, n_steps=32, shards=3, batch_size=64, n_epochs=2, total_steps=6 * 32)
    invoker = AsyncHttpInvoker()
    engine = LocalEngine(RoutingInvoker(local=InProcessInvoker(), http=invoker), gateway=url)
    params = {
        "run-id": cfg.run_id,
        "iteration": "0",
        "iterations": "1",
        "eval-every": "1",
        "gateway": url,
        "shards": "[0, 1, 2]",
        "config-digest": cfg.digest(),
        "traceparent": TRACEPARENT,
    }
    try:
        run = engine.run(params)
    finally:
        engine.close()
    assert run.phase == "Succeeded", run.message
    assert run.result("update", UpdateResult).version == 1
    assert run.result("evaluate", EvalResult).episodes > 0
    assert runtime.meta().get_run(cfg.run_id)["version"] == 1
    calls = run.http_nodes()
    assert len(calls) == 6 and all(n.status_code == 200 for n in calls)  # 3 collects, then 3 steps
    # Every call went through the queue, none through the sync route. The queue counts a delivery after
    # the callback's POST has returned, which can be just after the engine has the result.
    queue = gateway.gateway.queue
    wait_for(lambda: queue.stats()["callbacks_delivered"] == 6)
    assert queue.stats()["enqueued"] == 6, queue.stats()
    assert invoker.pending == 0


def test_a_direct_call_gets_the_functions_answer_with_the_call_id_and_the_trace(
    gateway: GatewayServer,
) -> None:
    with AsyncHttpInvoker() as invoker:
        future = invoker.submit(
            f"{_url(gateway)}/function/policy-evaluator",
            "POST",
            {"Content-Type": "application/json", "traceparent": TRACEPARENT},
            b"{}",
            120,
        )
        answer = future.result(120)
        # The function's own 400 for a bad request, delivered by the callback like any answer.
        assert answer.status == 400 and "error" in answer.json()
        assert len(answer.headers["X-Call-Id"]) == 32 and float(answer.headers["X-Duration-Seconds"]) >= 0
        assert answer.headers["traceparent"] == TRACEPARENT  # the request's headers reached the queue
        unknown = invoker.submit(f"{_url(gateway)}/function/nope", "POST", {}, b"{}", 30).result(30)
        assert unknown.status == 404  # the gateway's refusal of the enqueue is the answer


# --------------------------------------------------------------------------- a scripted stub gateway


class StubGateway:
    """Answers ``/async-function/*`` with the actions of ``script`` in turn (then ``"202"``).

    Actions: ``"429"``; ``"404"``; ``"202"`` (answer, then post the callback); ``"early"`` (post the
    callback, then answer 202); ``"silent"`` (answer 202, never call back). Callbacks carry ``result``.
    """

    def __init__(self, result: bytes = b'{"ok": true}') -> None:
        self.script: deque[str] = deque()
        self.result = result
        self.callbacks: list[str] = []
        self.requests: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stub.requests.append(dict(self.headers.items()))
                action = stub.script.popleft() if stub.script else "202"
                callback = self.headers["X-Callback-Url"]
                stub.callbacks.append(callback)
                if action == "early":
                    stub.call_back(callback, "early-id")
                code = {"429": 429, "404": 404}.get(action, 202)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.send_header("X-Call-Id", f"id-{len(stub.requests)}")
                self.end_headers()
                if action == "202":
                    threading.Thread(
                        target=stub.call_back, args=(callback, f"id-{len(stub.requests)}")
                    ).start()

        self.server = serve_in_thread(Handler)

    def call_back(self, url: str, call_id: str, status: str = "200") -> int:
        headers = {"X-Call-Id": call_id, "X-Function-Status": status, "Content-Type": "application/json"}
        req = urllib.request.Request(url, data=self.result, headers=headers, method="POST")
        with _NO_PROXY.open(req, timeout=10) as resp:
            return int(resp.status)

    def close(self) -> None:
        stop(self.server)


@pytest.fixture
def stub() -> Iterator[StubGateway]:
    s = StubGateway()
    yield s
    s.close()


def _submit(invoker: AsyncHttpInvoker, base: str) -> cf.Future[Any]:
    return invoker.submit(f"{base}/function/policy-evaluator", "POST", {"X-Extra": "1"}, b"{}", 30)


def test_a_full_queue_fails_the_call_so_the_engines_retry_sends_it_again(stub: StubGateway) -> None:
    stub.script.append("429")
    with AsyncHttpInvoker() as invoker:
        with pytest.raises(InvocationError, match="429"):
            _submit(invoker, _url(stub.server)).result(30)
        # Through the engine: the iteration template's retry strategy retries the transport failure.
        stub.script.append("429")
        engine = LocalEngine(invoker, gateway=_url(stub.server))
        assert engine.call("policy-evaluator", {}) == {"ok": True}
    assert len(stub.requests) == 3  # 429; then through the engine 429 and 202


def test_no_gateway_is_a_transport_error() -> None:
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    closed = _url(probe)
    probe.server_close()  # nothing listens there any more
    with AsyncHttpInvoker() as invoker, pytest.raises(InvocationError):
        _submit(invoker, closed).result(30)


def test_other_refusals_are_the_answer_and_headers_are_forwarded(stub: StubGateway) -> None:
    stub.script.append("404")
    with AsyncHttpInvoker() as invoker:
        assert _submit(invoker, _url(stub.server)).result(30).status == 404
    sent = stub.requests[0]
    assert sent["X-Extra"] == "1" and sent["X-Callback-Url"].startswith(invoker.callback_base + "/callback/")


def test_a_result_called_back_before_the_202_still_completes_its_call(stub: StubGateway) -> None:
    stub.script.append("early")
    with AsyncHttpInvoker() as invoker:
        answer = _submit(invoker, _url(stub.server)).result(30)
        assert answer.status == 200 and answer.json() == {"ok": True}
        assert answer.headers["X-Call-Id"] == "early-id"
        assert invoker.pending == 0


def test_duplicate_late_and_forged_callbacks_are_acknowledged_and_ignored(stub: StubGateway) -> None:
    stub.script.extend(["silent", "silent"])
    with AsyncHttpInvoker() as invoker:
        first = _submit(invoker, _url(stub.server))
        wait_for(lambda: len(stub.callbacks) == 1)
        assert stub.call_back(stub.callbacks[0], "id-1") == 200
        assert first.result(30).json() == {"ok": True}
        stub.result = b'{"ok": false}'
        assert stub.call_back(stub.callbacks[0], "id-1") == 200  # at-least-once delivery: a duplicate
        assert first.result(0).json() == {"ok": True}
        # A call the engine gave up on (its timeout cancels the future) ignores its late result.
        second = _submit(invoker, _url(stub.server))
        wait_for(lambda: len(stub.callbacks) == 2)
        assert second.cancel() and invoker.pending == 0
        assert stub.call_back(stub.callbacks[1], "id-2") == 200
        forged = f"{invoker.callback_base}/callback/{'0' * 32}"
        assert stub.call_back(forged, "id-x") == 200 and invoker.pending == 0


def test_closing_fails_the_calls_still_waiting(stub: StubGateway) -> None:
    stub.script.append("silent")
    invoker = AsyncHttpInvoker()
    future = _submit(invoker, _url(stub.server))
    wait_for(lambda: len(stub.callbacks) == 1)
    invoker.close()
    with pytest.raises(InvocationError, match="closed"):
        future.result(5)


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s")
        time.sleep(0.01)


def test_settings_turn_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from workflows.engines.async_invoker import from_settings

    monkeypatch.setenv("FTG_GATEWAY_ASYNC", "true")
    monkeypatch.setenv("FTG_GATEWAY_CALLBACK_URL", "http://driver.example:9000/")
    settings = Settings()
    assert settings.gateway_async
    with from_settings(settings) as invoker:
        assert invoker.callback_base == "http://driver.example:9000"
    with pytest.raises(ValueError, match="callback URL"):
        AsyncHttpInvoker(bind="0.0.0.0:0")
    assert json.dumps(Settings().model_dump(include={"gateway_callback_bind"})) == (
        '{"gateway_callback_bind": "127.0.0.1:0"}'
    )
