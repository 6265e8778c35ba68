"""The elastic gateway with real replica processes over real HTTP: scale out, to zero, cold starts, the
system API and its auth, replicas killed mid-call, and the async route's contract with its queue."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ftg_common import faas, runtime
from ftg_common.config import RunConfig
from ftg_common.settings import Settings
from tests.funcs import new_run
from workflows.gateway.auth import BasicAuth
from workflows.gateway.server import GatewayServer, serve

PASSWORD = "runtime-test-password"
AUTH = {"Authorization": BasicAuth(PASSWORD).header()}
COLLECT = "rollout-collector"


# What came back over the wire: status, headers and the body as text.
Answer = faas.Response


def call(
    server: GatewayServer, method: str, path: str, body: bytes = b"", headers: dict | None = None
) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, dict(resp.getheaders()), resp.read().decode())
    finally:
        conn.close()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def function_status(server: GatewayServer, name: str) -> dict[str, Any]:
    answer = call(server, "GET", "/system/functions", headers=AUTH)
    assert answer.status == 200, answer.body
    return next(f for f in answer.json() if f["name"] == name)


def metric(server: GatewayServer, series: str) -> float:
    text = call(server, "GET", "/metrics").body
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def gateways(ftg_env: Path) -> Iterator[Callable[..., GatewayServer]]:
    """Start gateways with test settings (short idle timers); all are shut down, replicas and all."""
    started: list[GatewayServer] = []

    def start(queue_api: Any = False, **overrides: Any) -> GatewayServer:
        values: dict[str, Any] = {
            "gateway_password": PASSWORD,
            "gateway_scale_down_seconds": 0.5,
            "gateway_zero_duration_seconds": 1.0,
            "gateway_max_replicas": 4,
            **overrides,
        }
        server = serve("127.0.0.1", 0, settings=Settings(**values), queue_api=queue_api)
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def collect_body(cfg: RunConfig, shard: int) -> bytes:
    ref = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest(), "shard": shard}
    return json.dumps(ref).encode()


# --------------------------------------------------------------------------- scaling


def test_a_burst_scales_out_within_the_cap_and_idle_scales_to_zero(gateways) -> None:
    server = gateways(gateway_max_replicas=4)
    cfg = new_run(n_envs=16, n_steps=256, shards=8, batch_size=512, n_epochs=1, total_steps=16 * 256)
    fleet = server.gateway.fleet
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, fleet.total_replicas())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    answers: dict[int, Answer] = {}
    barrier = threading.Barrier(8)

    def one(shard: int) -> None:
        barrier.wait()
        answers[shard] = call(server, "POST", f"/function/{COLLECT}", collect_body(cfg, shard))

    threads = [threading.Thread(target=one, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()

    assert {s: a.status for s, a in answers.items()} == dict.fromkeys(range(8), 200)
    assert all(a.json()["steps"] == 2 * 256 for a in answers.values())  # 2 envs per shard
    # 8 calls waiting at target 1 want 8 replicas; the machine-wide cap allows 4, and never more. Replicas
    # start at most a CPU count at a time, so the last ones may become ready after the burst is served.
    assert peak == 4
    starts = f'gateway_replica_start_seconds_count{{function_name="{COLLECT}"}}'
    wait_for("4 replicas started", lambda: metric(server, starts) == 4)
    cold = [a for a in answers.values() if a.headers.get("X-Cold-Start") == "true"]
    assert cold and metric(server, f'gateway_cold_start_seconds_count{{function_name="{COLLECT}"}}') == len(
        cold
    )

    # Idle: down to zero after zero-duration (1 s here), and the idle time of the warm replicas is billed.
    wait_for("scale to zero", lambda: function_status(server, COLLECT)["replicas"] == 0)
    status = function_status(server, COLLECT)
    assert status["availableReplicas"] == 0 and status["invocationCount"] == 8
    assert metric(server, f'gateway_idle_gb_seconds_total{{function_name="{COLLECT}"}}') > 0
    assert metric(server, f'gateway_billed_gb_seconds_total{{function_name="{COLLECT}"}}') > 0
    assert metric(server, f'gateway_function_invocation_started{{function_name="{COLLECT}"}}') == 8
    assert metric(server, f'gateway_service_count{{function_name="{COLLECT}"}}') == 0


def test_a_cold_start_is_counted_and_marked_and_a_warm_call_is_not(gateways) -> None:
    server = gateways(gateway_zero_duration_seconds=None)  # the stack's 5 min: stays warm
    first = call(server, "POST", "/function/policy-evaluator", b"{}")
    assert first.status == 400 and "Field required" in first.json()["error"]  # the function's own answer
    assert first.headers["X-Cold-Start"] == "true"
    assert 0 < float(first.headers["X-Cold-Start-Seconds"]) <= float(first.headers["X-Duration-Seconds"])
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["X-Call-Id"])
    second = call(server, "POST", "/function/policy-evaluator", b"{}", {"X-Call-Id": "given-id"})
    assert second.status == 400 and "X-Cold-Start" not in second.headers
    assert second.headers["X-Call-Id"] == "given-id"
    assert metric(server, 'gateway_cold_start_seconds_count{function_name="policy-evaluator"}') == 1
    # The replica's start is counted by its own thread once it is ready, maybe after both answers.
    started = 'gateway_replica_start_seconds_count{function_name="policy-evaluator"}'
    assert wait_for("the replica's start to be counted", lambda: metric(server, started)) == 1
    status = function_status(server, "policy-evaluator")
    assert (status["replicas"], status["availableReplicas"], status["invocationCount"]) == (1, 1, 2)


def test_scale_function_by_hand(gateways) -> None:
    server = gateways(gateway_zero_duration_seconds=None)
    name = "reward-aggregator"
    scale = f"/system/scale-function/{name}"
    answer = call(server, "POST", scale, json.dumps({"serviceName": name, "replicas": 2}).encode(), AUTH)
    assert answer.status == 202 and answer.json() == {"serviceName": name, "replicas": 2}
    wait_for("2 ready replicas", lambda: function_status(server, name)["availableReplicas"] == 2)
    warm = call(server, "POST", f"/function/{name}", b"{}")
    assert warm.status == 400 and "X-Cold-Start" not in warm.headers
    # Held above the demand (one call) past the scale-down delay: set by hand, it stays.
    time.sleep(1.0)  # longer than the 0.5 s scale-down delay, to show nothing is stopped
    assert function_status(server, name)["replicas"] == 2
    # More than max is the max (10); then down to zero by hand.
    answer = call(server, "POST", scale, json.dumps({"serviceName": name, "replicas": 99}).encode(), AUTH)
    assert answer.json()["replicas"] == 10
    answer = call(server, "POST", scale, json.dumps({"serviceName": name, "replicas": 0}).encode(), AUTH)
    assert answer.status == 202
    wait_for("zero replicas", lambda: function_status(server, name)["replicas"] == 0)
    wait_for("no process left", lambda: server.gateway.fleet.total_replicas() == 0)
    cold = call(server, "POST", f"/function/{name}", b"{}")
    assert cold.status == 400 and cold.headers["X-Cold-Start"] == "true"


# --------------------------------------------------------------------------- failures


def test_a_replica_killed_mid_call_is_replaced_and_the_engines_retry_succeeds(gateways) -> None:
    from ftg_common.schemas import UpdateResult
    from workflows.engines.invokers import HttpInvoker, InProcessInvoker, RoutingInvoker
    from workflows.engines.local import LocalEngine

    server = gateways(gateway_zero_duration_seconds=None)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    # Long enough collections (4 envs x 2048 steps a shard) that the kill lands while one is running.
    cfg = new_run(n_envs=8, n_steps=2048, shards=2, batch_size=4096, n_epochs=1, total_steps=8 * 2048 * 2)
    fleet = server.gateway.fleet
    killed: list[int] = []

    def kill_one_busy_collector() -> None:
        def busy() -> Any:
            return next((r for r in fleet.replicas(COLLECT) if r.inflight and r.pid), None)

        replica = wait_for("a collector at work", busy, timeout=120)
        killed.append(replica.pid)
        os.kill(replica.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_one_busy_collector)
    killer.start()
    engine = LocalEngine(RoutingInvoker(local=InProcessInvoker(), http=HttpInvoker()), gateway=url)
    params = {
        "run-id": cfg.run_id,
        "iteration": "0",
        "iterations": "2",
        "eval-every": "5",
        "gateway": url,
        "shards": "[0, 1]",
        "config-digest": cfg.digest(),
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    }
    try:
        run = engine.run(params)
    finally:
        engine.close()
        killer.join()
    assert run.phase == "Succeeded", run.message
    assert run.result("update", UpdateResult).version == 1
    assert runtime.meta().get_run(cfg.run_id)["version"] == 1
    # The broken call was answered 502 (retriable), and a replica that is not the killed one took the retry.
    assert metric(server, f'gateway_function_invocation_total{{code="502",function_name="{COLLECT}"}}') == 1
    assert metric(server, f'gateway_function_invocation_total{{code="200",function_name="{COLLECT}"}}') == 2
    assert killed and killed[0] not in {r.pid for r in fleet.replicas(COLLECT)}


def test_a_replica_killed_mid_call_answers_502_with_json_then_a_retry_succeeds(gateways) -> None:
    server = gateways(gateway_zero_duration_seconds=None)
    cfg = new_run(n_envs=4, n_steps=4096, shards=1, batch_size=4096, n_epochs=1, total_steps=4 * 4096)
    fleet = server.gateway.fleet
    answers: list[Answer] = []
    worker = threading.Thread(
        target=lambda: answers.append(call(server, "POST", f"/function/{COLLECT}", collect_body(cfg, 0)))
    )
    worker.start()
    replica = wait_for(
        "the call at work", lambda: next((r for r in fleet.replicas(COLLECT) if r.inflight), None)
    )
    os.kill(replica.pid, signal.SIGKILL)
    worker.join()
    (broken,) = answers
    assert broken.status == 502 and "failed mid-call" in broken.json()["error"]
    assert broken.headers["Retry-After"] == "1"
    retry = call(server, "POST", f"/function/{COLLECT}", collect_body(cfg, 0))
    assert retry.status == 200 and retry.json()["steps"] == 4 * 4096
    assert retry.headers["X-Cold-Start"] == "true"  # the replacement had to start
    assert replica.pid not in {r.pid for r in fleet.replicas(COLLECT)}


def test_a_function_whose_replicas_cannot_start_is_a_503_that_says_why(
    gateways, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replicas inherit the environment; a sitecustomize on their path breaks every interpreter they start.
    broken = tmp_path / "broken-image"
    broken.mkdir()
    (broken / "sitecustomize.py").write_text("raise SystemExit('this image is broken')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken))
    server = gateways()
    answer = call(server, "POST", "/function/policy-evaluator", b"{}")
    assert answer.status == 503, answer.body
    error = answer.json()["error"]
    assert "could not start a replica" in error and "this image is broken" in error
    assert answer.headers["Retry-After"] == "1"
    assert (
        metric(server, 'gateway_function_invocation_total{code="503",function_name="policy-evaluator"}') == 1
    )
    assert server.gateway.fleet.total_replicas() == 0


# --------------------------------------------------------------------------- auth, routes, limits


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic " + "YWRtaW46d3Jvbmc=", "Bearer x", "Basic !!!", BasicAuth("x", user="root").header()],
)
def test_system_routes_need_basic_auth(gateways, authorization: str | None) -> None:
    server = gateways()
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [
        ("GET", "/system/functions"),
        ("GET", "/system/function/rollout-collector"),
        ("POST", "/system/scale-function/rollout-collector"),
        ("GET", "/system/no-such-route"),
    ]:
        answer = call(server, method, path, b'{"replicas": 1}' if method == "POST" else b"", headers)
        assert answer.status == 401, (path, answer.body)
        assert answer.headers["Content-Type"] == "application/json" and "basic auth" in answer.json()["error"]
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert call(server, "GET", "/healthz").status == 200
    assert call(server, "GET", "/metrics").status == 200
    assert server.gateway.fleet.total_replicas() == 0  # nothing was started by any of it


def test_refusals_are_json_404_405_413_400(gateways) -> None:
    server = gateways()

    def refused(
        expected: int, method: str, path: str, body: bytes = b"", headers: dict | None = None
    ) -> Answer:
        answer = call(server, method, path, body, headers)
        assert answer.status == expected, (method, path, answer.body)
        assert answer.headers["Content-Type"] == "application/json" and answer.json()["error"]
        return answer

    assert "no such function" in refused(404, "POST", "/function/nope", b"{}").json()["error"]
    refused(404, "POST", "/async-function/nope", b"{}")
    refused(404, "POST", "/system/scale-function/nope", b'{"replicas": 1}', AUTH)
    refused(404, "GET", "/system/function/nope", headers=AUTH)
    refused(404, "GET", "/system/nothing", headers=AUTH)
    assert refused(405, "GET", f"/function/{COLLECT}").headers["Allow"] == "POST"
    assert refused(405, "GET", f"/async-function/{COLLECT}").headers["Allow"] == "POST"
    assert refused(405, "POST", "/system/functions", headers=AUTH).headers["Allow"] == "GET, HEAD"
    assert refused(405, "GET", f"/system/scale-function/{COLLECT}", headers=AUTH).headers["Allow"] == "POST"
    big = b"x" * (faas.MAX_BODY_BYTES + 1)
    assert "larger than" in refused(413, "POST", f"/function/{COLLECT}", big).json()["error"]
    refused(413, "POST", f"/async-function/{COLLECT}", big)
    scale = f"/system/scale-function/{COLLECT}"
    refused(400, "POST", scale, b"{oops", AUTH)
    refused(400, "POST", scale, b'{"replicas": -1}', AUTH)
    refused(400, "POST", scale, b'{"replicas": "2"}', AUTH)
    refused(400, "POST", scale, b'{"serviceName": "policy-updater", "replicas": 1}', AUTH)
    assert server.gateway.fleet.total_replicas() == 0  # refusals never start a replica


def test_async_without_a_queue_is_a_503_that_says_why(gateways) -> None:
    server = gateways(queue_api=False)
    answer = call(server, "POST", f"/async-function/{COLLECT}", b"{}")
    assert answer.status == 503 and "disabled" in answer.json()["error"]


# --------------------------------------------------------------------------- the async route's contract


class FakeQueueFull(Exception):
    pass


@dataclass(frozen=True)
class FakeAsyncCall:
    call_id: str
    function: str
    body: bytes
    headers: dict[str, str]
    callback_url: str | None


@dataclass
class FakeQueue:
    """The queue interface the gateway uses, in memory: each call runs through the gateway's invoke."""

    capacity: int
    invoke: Callable[[str, bytes, dict[str, str]], tuple[int, bytes, dict[str, str]]] | None = None
    results: dict[str, tuple[FakeAsyncCall, tuple[int, bytes, dict[str, str]]]] = field(default_factory=dict)
    queued: int = 0
    closed: bool = False

    def start(
        self, invoke: Callable[[str, bytes, dict[str, str]], tuple[int, bytes, dict[str, str]]]
    ) -> None:
        self.invoke = invoke

    def enqueue(self, call: FakeAsyncCall) -> None:
        if self.queued >= self.capacity:
            raise FakeQueueFull(f"{self.capacity} calls queued")
        self.queued += 1
        assert self.invoke is not None
        invoke = self.invoke
        threading.Thread(
            target=lambda: self.results.update(
                {call.call_id: (call, invoke(call.function, call.body, call.headers))}
            )
        ).start()

    def depth(self) -> int:
        return self.queued - len(self.results)

    def close(self) -> None:
        self.closed = True


def test_async_calls_are_queued_run_through_the_replicas_and_bounded(gateways) -> None:
    queue = FakeQueue(capacity=2)
    api = SimpleNamespace(AsyncCall=FakeAsyncCall, QueueFull=FakeQueueFull, open_queue=lambda settings: queue)
    server = gateways(queue_api=api, gateway_zero_duration_seconds=None)
    path = "/async-function/policy-evaluator"
    answer = call(server, "POST", path, b"{}", {"X-Callback-Url": "http://127.0.0.1:9/cb", "X-Extra": "1"})
    assert answer.status == 202 and answer.body == ""
    call_id = answer.headers["X-Call-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", call_id)
    queued, (status, body, headers) = wait_for("the async call's result", lambda: queue.results.get(call_id))
    assert (queued.function, queued.body, queued.callback_url) == (
        "policy-evaluator",
        b"{}",
        "http://127.0.0.1:9/cb",
    )
    assert queued.headers["X-Extra"] == "1" and queued.headers["X-Call-Id"] == call_id
    assert headers["X-Call-Id"] == call_id  # the sync path kept the async call's id
    # It went through a replica like a sync call: cold-started, the function's own 400.
    assert (
        status == 400 and "Field required" in json.loads(body)["error"] and headers["X-Cold-Start"] == "true"
    )
    assert call(server, "POST", path, b"{}").status == 202
    full = call(server, "POST", path, b"{}")
    assert full.status == 429 and "full" in full.json()["error"]
    assert "gateway_queue_depth" in call(server, "GET", "/metrics").body
    bad = call(server, "POST", path, b"{}", {"X-Callback-Url": "file:///etc/passwd"})
    assert bad.status == 400
    server.shutdown()
    assert queue.closed


# --------------------------------------------------------------------------- the gateway as a process


def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie is dead; whoever adopted it may reap it late


def test_replicas_do_not_outlive_a_killed_gateway(ftg_env: Path) -> None:
    env = {**os.environ, "FTG_GATEWAY_PASSWORD": PASSWORD}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflows.gateway.server", "--port", "0"],
        env=env,
        cwd=ftg_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip().rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/function/policy-evaluator", body=b"{}")
        resp = conn.getresponse()
        assert resp.status == 400 and resp.getheader("X-Cold-Start") == "true", resp.read()
        conn.close()
        replicas = _children(proc.pid)
        assert len(replicas) == 1
    finally:
        proc.kill()  # SIGKILL: the gateway cleans up nothing; its replicas must notice on their own
        proc.wait()
    wait_for("the orphaned replica to exit", lambda: all(_gone(pid) for pid in replicas), timeout=30)
