"""The OpenFaaS gateway contract over real HTTP: the same iteration DAG runs against a gateway URL."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ftg_common import runtime
from ftg_common.schemas import UpdateResult
from ftg_common.settings import Settings
from tests.funcs import new_run
from workflows.gateway.auth import BasicAuth
from workflows.gateway.server import serve

PASSWORD = "gateway-test-password"


@pytest.fixture
def gateway(ftg_env):
    # Replicas are real processes; the async queue is not what these tests are about.
    server = serve("127.0.0.1", 0, settings=Settings(gateway_password=PASSWORD), queue_api=False)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _get(url: str) -> tuple[int, str]:
    # /system/* needs basic auth as OpenFaaS's does; the other routes ignore it.
    req = urllib.request.Request(url, headers={"Authorization": BasicAuth(PASSWORD).header()})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read().decode()


def test_iteration_dag_over_http_gateway(gateway: str) -> None:
    from workflows.engines.invokers import HttpInvoker, InProcessInvoker, RoutingInvoker
    from workflows.engines.local import LocalEngine

    cfg = new_run(n_envs=4, n_steps=16, shards=2, batch_size=32, n_epochs=1, total_steps=64 * 4)
    engine = LocalEngine(RoutingInvoker(local=InProcessInvoker(), http=HttpInvoker()), gateway=gateway)
    params = {
        "run-id": cfg.run_id,
        "iteration": "0",
        "iterations": "4",
        "eval-every": "1",
        "gateway": gateway,
        "shards": "[0, 1]",
        "config-digest": cfg.digest(),
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    }
    run = engine.run(params)
    engine.close()
    assert run.phase == "Succeeded", run.message
    assert run.result("update", UpdateResult).version == 1
    assert runtime.meta().get_run(cfg.run_id)["version"] == 1
    code, text = _get(f"{gateway}/metrics")
    assert code == 200
    assert 'gateway_function_invocation_total{code="200",function_name="rollout-collector"} 2.0' in text
    assert 'gateway_function_invocation_total{code="200",function_name="policy-evaluator"} 1.0' in text
    assert "gateway_functions_seconds_bucket" in text and "gateway_service_count" in text
    code, text = _get(f"{gateway}/system/functions")
    counts = {f["name"]: f["invocationCount"] for f in json.loads(text)}
    assert counts == {
        "rollout-collector": 2,
        "reward-aggregator": 1,
        "policy-updater": 1,
        "policy-evaluator": 1,
    }


def test_gateway_errors_are_json(gateway: str) -> None:
    req = urllib.request.Request(f"{gateway}/function/rollout-collector", data=b"{oops", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400 and "not valid JSON" in json.loads(err.value.read())["error"]
    req = urllib.request.Request(f"{gateway}/function/no-such-fn", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 404
    assert _get(f"{gateway}/healthz") == (200, "OK")


def test_container_entry_point_serves_one_handler(ftg_env, monkeypatch) -> None:
    """functions/serve.py is what runs behind the of-watchdog in each function image (WSGI)."""
    import io
    from wsgiref.util import setup_testing_defaults

    from ftg_common.settings import get_settings
    from functions import serve as entry

    def call(body: bytes) -> tuple[str, dict, bytes]:
        environ: dict = {
            "REQUEST_METHOD": "POST",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
        setup_testing_defaults(environ)
        seen: dict = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            seen.update(status=status, headers=dict(headers))

        out = b"".join(entry.app(environ, start_response))
        return seen["status"], seen["headers"], out

    monkeypatch.setenv("FTG_FUNCTION", "rollout_collector")
    get_settings.cache_clear()
    entry._handler.cache_clear()
    status, headers, out = call(b"{broken")
    assert status.startswith("400") and headers["Content-Length"] == str(len(out))
    assert "not valid JSON" in json.loads(out)["error"]

    monkeypatch.setenv("FTG_FUNCTION", "../secrets")
    get_settings.cache_clear()
    entry._handler.cache_clear()
    with pytest.raises(SystemExit, match="FTG_FUNCTION"):
        call(b"{}")
    entry._handler.cache_clear()


# --------------------------------------------------------------------------- hostile framing and methods


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _exchange(
    url: str, data: bytes, method: str = "POST", half_close: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """``data`` written as is on a fresh connection; the answer's (status, headers, body)."""
    with socket.create_connection(_address(url), timeout=30) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        return resp.status, dict(resp.getheaders()), resp.read()


def _post(path: str, headers: dict[str, str], body: bytes = b"", method: str = "POST") -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "gw", **headers}.items())
    return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body


def _json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> str:
    assert status == expected, body
    assert headers["Content-Type"] == "application/json"
    message: str = json.loads(body)["error"]
    return message


@pytest.mark.parametrize("length", ["abc", "-1", "+5", "1.5", "0x10", "", "5, 6", "99999999999999999999999"])
def test_a_bad_content_length_is_a_400_with_json(gateway: str, length: str) -> None:
    status, headers, body = _exchange(
        gateway, _post("/function/rollout-collector", {"Content-Length": length}, b"{}")
    )
    assert "Content-Length" in _json_error(status, headers, body, 400)
    assert headers["Connection"] == "close"


def test_two_disagreeing_content_lengths_are_a_400(gateway: str) -> None:
    data = b"POST /function/rollout-collector HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    _json_error(*_exchange(gateway, data), 400)


def test_a_huge_content_length_is_a_413_without_reading_the_body(gateway: str) -> None:
    data = _post("/function/rollout-collector", {"Content-Length": str(10**15)}, b"{")
    assert "larger than" in _json_error(*_exchange(gateway, data), 413)


def test_a_body_over_the_limit_sent_in_full_still_gets_its_413(gateway: str) -> None:
    """The gateway answers early, then drains what the client is still sending instead of resetting."""
    req = urllib.request.Request(
        f"{gateway}/function/rollout-collector", data=b"x" * (9 * 2**20), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 413 and "larger than" in json.loads(err.value.read())["error"]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "GET", "OPTIONS", "FOO"])
def test_other_methods_on_a_function_are_405_with_allow(gateway: str, method: str) -> None:
    status, headers, body = _exchange(
        gateway, _post("/function/policy-updater", {"Content-Length": "0"}, method=method)
    )
    assert method in _json_error(status, headers, body, 405)
    assert headers["Allow"] == "POST"


def test_get_routes_refuse_post_with_allow_and_answer_head(gateway: str) -> None:
    status, headers, body = _exchange(gateway, _post("/healthz", {"Content-Length": "0"}))
    _json_error(status, headers, body, 405)
    assert headers["Allow"] == "GET, HEAD"
    status, headers, body = _exchange(gateway, _post("/healthz", {}, method="HEAD"), method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "2"


@pytest.mark.parametrize("method", ["GET", "DELETE", "POST"])
def test_unknown_paths_are_404_json(gateway: str, method: str) -> None:
    status, headers, body = _exchange(gateway, _post("/nope?x=1", {"Content-Length": "0"}, method=method))
    assert "no route" in _json_error(status, headers, body, 404)


@pytest.mark.parametrize(
    "line",
    [
        b"garbage",
        b"\x00\xff\xfe",
        b"GET",
        b"GET / HTTP/1.1 extra",
        b"GET / HTTX/1.1",
        b"\x1c",
        b"GET / HTTP/1.1.1",
    ],
)
def test_garbage_request_lines_are_400_json(gateway: str, line: bytes) -> None:
    _json_error(*_exchange(gateway, line + b"\r\n\r\n"), 400)


def test_a_request_line_without_version_is_answered_with_a_status_line(gateway: str) -> None:
    status, _, body = _exchange(gateway, b"GET /healthz\r\n\r\n")
    assert (status, body) == (200, b"OK")
    status, _, body = _exchange(
        gateway, b"POST /function/rollout-collector HTTP/0.9\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert status == 400 and "Field required" in json.loads(body)["error"]


def test_oversized_heads_are_refused_with_json(gateway: str) -> None:
    _json_error(*_exchange(gateway, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", method="GET"), 414)
    _json_error(
        *_exchange(gateway, _post("/healthz", {"X-Big": "b" * 70_000}, method="GET"), method="GET"), 431
    )
    many = {f"X-{i}": "v" for i in range(150)}
    _json_error(*_exchange(gateway, _post("/healthz", many, method="GET"), method="GET"), 431)


def test_chunked_bodies_reach_the_function_and_are_bounded(gateway: str) -> None:
    chunked = {"Transfer-Encoding": "chunked"}
    body = b'{"run_id": "r"}'
    data = _post("/function/rollout-collector", chunked, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert "Field required" in _json_error(*_exchange(gateway, data), 400)  # the function's own answer
    data = _post("/function/rollout-collector", chunked, b"zz\r\n")
    assert "chunk size" in _json_error(*_exchange(gateway, data), 400)
    data = _post("/function/rollout-collector", chunked, b"FFFFFFFFFFFF\r\n")
    assert "larger than" in _json_error(*_exchange(gateway, data), 413)
    data = _post("/function/rollout-collector", {**chunked, "Content-Length": "3"}, b"0\r\n\r\n")
    assert "both" in _json_error(*_exchange(gateway, data), 400)
    data = _post("/function/rollout-collector", {"Transfer-Encoding": "gzip"}, b"")
    assert "Transfer-Encoding" in _json_error(*_exchange(gateway, data), 400)


def test_a_body_shorter_than_declared_is_answered_not_hung(ftg_env: Path) -> None:
    server = serve(
        "127.0.0.1", 0, settings=Settings(gateway_password=PASSWORD), read_timeout=0.5, queue_api=False
    )
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        data = _post("/function/rollout-collector", {"Content-Length": "100"}, b"{}")
        assert "not received in time (2 of 100" in _json_error(*_exchange(url, data), 408)
        assert "ended after 2 of the 100" in _json_error(*_exchange(url, data, half_close=True), 400)
        # A head that never ends: the read timeout answers it too.
        assert "not received" in _json_error(*_exchange(url, b"POST / HTTP/1.1\r\nHost: x\r\n"), 408)
    finally:
        server.shutdown()
        server.server_close()


def test_expect_continue_is_sent_only_for_an_acceptable_body(gateway: str) -> None:
    with socket.create_connection(_address(gateway), timeout=30) as sock:
        sock.sendall(_post("/function/rollout-collector", {"Content-Length": "5", "Expect": "100-continue"}))
        assert sock.recv(64).startswith(b"HTTP/1.1 100")
        sock.sendall(b"{oops")
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        assert resp.status == 400 and "not valid JSON" in json.loads(resp.read())["error"]
    data = _post("/function/rollout-collector", {"Content-Length": str(10**9), "Expect": "100-continue"})
    _json_error(*_exchange(gateway, data), 413)


def test_deep_json_is_refused_at_the_gateway(gateway: str) -> None:
    body = b'{"run_id": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    req = urllib.request.Request(f"{gateway}/function/policy-evaluator", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400 and "deeper than" in json.loads(err.value.read())["error"]


def test_keep_alive_survives_refusals_that_read_the_whole_body(gateway: str) -> None:
    conn = http.client.HTTPConnection(*_address(gateway), timeout=30)
    try:
        for body in (b"{oops", b"[" * 100, b"{}"):
            conn.request("POST", "/function/policy-evaluator", body)
            resp = conn.getresponse()
            assert resp.status == 400 and "error" in json.loads(resp.read())
            assert resp.getheader("Connection") is None
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"OK"
    finally:
        conn.close()


def test_fuzzed_requests_through_the_gateway_process(ftg_env: Path) -> None:
    """The fuzzer's HTTP half, small: ``python -m workflows.gateway.server`` as a real process."""
    from benchmarks.reliability import fuzz

    target = fuzz.make_target()
    with fuzz.gateway_process(read_timeout=0.5) as (host, port):
        checks = fuzz.fuzz_http(target, host, port, bodies=160, raw=160, read_timeout=0.5)
    failed = [(c.name, c.failures) for c in checks if not c.ok]
    assert not failed, failed
    assert {c.name: c.tried for c in checks}["over HTTP: connections dropped or hung"] >= 320
