"""The reliability suite's fault-injecting proxy, and the embedded engine's retries through it."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.reliability.faultproxy import (
    AFTER_502,
    AFTER_RESET,
    BEFORE_503,
    BEFORE_RESET,
    PASS,
    FaultProxy,
)
from workflows.engines.invokers import HttpInvoker

from .test_local_engine import http_template, run, task, template_retry, workflow

pytestmark = pytest.mark.integration  # real sockets on the loopback interface


def _upstream_url() -> str:
    return "http://127.0.0.1:9"  # never reached: decide() needs no upstream


def test_decisions_are_seeded_and_keyed_on_the_request() -> None:
    a, b = FaultProxy(_upstream_url(), p=0.2, seed=7), FaultProxy(_upstream_url(), p=0.2, seed=7)
    try:
        bodies = [json.dumps({"shard": i}).encode() for i in range(2000)]
        first = [a.decide("/function/f", x) for x in bodies]
        assert [b.decide("/function/f", x) for x in reversed(bodies)] == first[::-1]  # order does not matter
        again = [a.decide("/function/f", x) for x in bodies]  # the second arrival is a new draw
        assert again != first
    finally:
        a.close()
        b.close()


def test_timings_inside_a_body_do_not_change_the_draw() -> None:
    a, b = FaultProxy(_upstream_url(), p=0.5, seed=2), FaultProxy(_upstream_url(), p=0.5, seed=2)
    try:
        for i in range(200):
            ref = {"run_id": "r", "iteration": i, "config_digest": "0" * 16}
            x = json.dumps({**ref, "shards": [{"seconds": 0.1}]}).encode()
            y = json.dumps({**ref, "shards": [{"seconds": 0.2}]}).encode()
            assert a.decide("/function/reward-aggregator", x) == b.decide("/function/reward-aggregator", y)
    finally:
        a.close()
        b.close()


def test_fault_rate_and_split() -> None:
    proxy = FaultProxy(_upstream_url(), p=0.2, seed=1, before_share=0.5)
    try:
        n = 20_000
        for i in range(n):
            proxy.decide("/function/f", str(i).encode())
        counts = proxy.counts
        assert counts[PASS] + proxy.faults == n
        assert proxy.faults / n == pytest.approx(0.2, abs=0.01)
        for kind in (BEFORE_RESET, BEFORE_503, AFTER_RESET, AFTER_502):
            assert counts[kind] / proxy.faults == pytest.approx(0.25, abs=0.03)
    finally:
        proxy.close()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="must be in"):
        FaultProxy(_upstream_url(), p=1.5)
    with pytest.raises(ValueError, match="http:// URL"):
        FaultProxy("local://gateway")


class _Counting(http.server.BaseHTTPRequestHandler):
    """An upstream that echoes POST bodies with 200 and counts the calls it served."""

    protocol_version = "HTTP/1.1"
    calls = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with _Counting.lock:
            _Counting.calls += 1
        payload = json.dumps({"echo": json.loads(body or b"{}")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    _Counting.calls = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _post(url: str, body: bytes) -> int | str:
    """The status, or the name of the transport error."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/function/echo", body=body, headers={"Content-Type": "application/json"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()


@pytest.mark.parametrize(("before_share", "reaches_upstream"), [(1.0, False), (0.0, True)])
def test_faults_before_never_reach_the_function_and_faults_after_do(
    upstream: str, before_share: float, reaches_upstream: bool
) -> None:
    with FaultProxy(upstream, p=1.0, seed=3, before_share=before_share) as proxy:
        answers = [_post(proxy.url, json.dumps({"i": i}).encode()) for i in range(40)]
    assert _Counting.calls == (40 if reaches_upstream else 0)
    expected_status = 502 if reaches_upstream else 503
    assert set(answers) <= {expected_status, "ConnectionResetError", "RemoteDisconnected"}
    assert expected_status in answers and len(set(answers)) > 1  # both kinds happened


def test_without_faults_the_proxy_relays(upstream: str) -> None:
    with FaultProxy(upstream, p=0.0) as proxy:
        assert [_post(proxy.url, b'{"a": 1}') for _ in range(5)] == [200] * 5
        assert proxy.counts == {PASS: 5}
    assert _Counting.calls == 5


def test_a_dead_upstream_is_a_502(upstream: str) -> None:
    with FaultProxy("http://127.0.0.1:9", p=0.0) as proxy:
        assert _post(proxy.url, b"{}") == 502
        assert proxy.upstream_errors == 1


def test_the_engine_retries_through_half_failing_calls(upstream: str) -> None:
    items = list(range(12))
    manifest = workflow(
        [task("fan", "t", withItems=items, arguments={"parameters": [{"name": "v", "value": "{{item}}"}]})],
        [
            http_template(
                "t",
                body='{"v": {{inputs.parameters.v}}}',
                inputs=("v",),
                retry=template_retry(),
                success=None,
            )
        ],
    )
    with FaultProxy(upstream, p=0.5, seed=11) as proxy, HttpInvoker() as inv:
        result = run(manifest, inv, {"gateway": proxy.url})
    assert result.phase == "Succeeded", result.message
    assert [r["echo"]["v"] for r in result.output_json("fan")] == items
    attempts = sum(result.node(f"fan({i}:{i})").attempts for i in items)
    assert proxy.faults == attempts - len(items) > 0  # every fault cost exactly one retry
