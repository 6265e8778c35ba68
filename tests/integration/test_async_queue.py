"""The gateway's async queue against a real NATS JetStream server and a real HTTP callback receiver.

Each test has its own stream (and so its own subjects and consumer), deleted afterwards, so the tests are
independent in any order. NATS is ``FTG_TEST_NATS_URL`` or nats://127.0.0.1:4222; without one the
JetStream cases skip, saying so (CI runs one).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

import nats
import nats.js.errors
import pytest

from ftg_common.settings import Settings
from tests.http_servers import serve_in_thread, stop
from tests.nats_streams import NATS_URL, delete_stream, new_stream_name
from workflows.gateway.async_queue import (
    AsyncCall,
    CallTooLarge,
    InProcessQueue,
    JetStreamQueue,
    QueueFull,
    QueueUnavailable,
    open_queue,
)
from workflows.gateway.asyncq.jetstream import reachable

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[2]
KINDS = ["nats", "memory"]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- the callback receiver


@dataclass(frozen=True)
class Post:
    path: str
    headers: Message  # case-insensitive, as HTTP header names are
    body: bytes


class Receiver:
    """An HTTP server that records every POST and answers the statuses of ``script`` in turn, then 200."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.script: collections.deque[int] = collections.deque()
        self.always: int | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.posts.append(Post(self.path, self.headers, body))
                    status = receiver.always or (receiver.script.popleft() if receiver.script else 200)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = serve_in_thread(Handler)

    def url(self, path: str = "/callback") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def received(self) -> list[Post]:
        with self._lock:
            return list(self.posts)

    def delivered(self) -> dict[str, Post]:
        """The last successful POST of each call id (the 200s; scripted failures are left out)."""
        return {p.headers["X-Call-Id"]: p for p in self.received()}

    def close(self) -> None:
        stop(self.server)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# ------------------------------------------------------------------- functions, standing in for replicas


class Functions:
    """An ``invoke`` that records its calls and answers by ``answer`` (default: echo, 200)."""

    def __init__(
        self, answer: Callable[[str, bytes, dict[str, str]], tuple[int, bytes, dict[str, str]]] | None = None
    ):
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()
        self.answer = answer or (
            lambda fn, body, headers: (200, b"echo:" + body, {"Content-Type": "text/plain"})
        )

    def __call__(
        self, function: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.calls.append((function, body, headers))
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return self.answer(function, body, headers)
        finally:
            with self._lock:
                self.running -= 1

    def tries(self, call_id: str) -> int:
        with self._lock:
            return sum(1 for _, _, h in self.calls if h.get("X-Call-Id") == call_id)


# --------------------------------------------------------------------------- queues, fresh per test


@pytest.fixture(scope="session")
def nats_url() -> str:
    if not reachable(NATS_URL, 2.0):
        pytest.skip(
            f"NATS is not reachable at {NATS_URL}: the JetStream queue tests need a NATS server with "
            "JetStream (`nats-server -js`); set FTG_TEST_NATS_URL to use another"
        )
    return NATS_URL


@pytest.fixture
def stream(request: pytest.FixtureRequest) -> Iterator[str]:
    """A stream name no other test uses (its subjects and consumer follow from it); deleted afterwards."""
    name = new_stream_name()
    yield name
    if reachable(NATS_URL, 1.0):
        delete_stream(name)


QueueFactory = Callable[..., Any]


@pytest.fixture
def make_queue(request: pytest.FixtureRequest, stream: str) -> Iterator[QueueFactory]:
    """``make_queue(kind, **settings)``: a queue of that kind on this test's stream, closed afterwards."""
    opened: list[Any] = []

    def make(kind: str, **overrides: Any) -> Any:
        if kind == "nats":
            request.getfixturevalue("nats_url")
        queue = open_queue(settings_for(kind, stream, **overrides))
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close(timeout=1.0)


def settings_for(kind: str, stream: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "async_queue": kind,
        "nats_url": NATS_URL,
        "async_stream": stream,
        "async_max_queued": 100,
        "async_concurrency": 4,
        "async_ack_wait_s": 5.0,
        "async_backoff_s": 0.02,
        "async_callback_attempts": 3,
        "async_callback_timeout_s": 5.0,
        **overrides,
    }
    return Settings(**values)


def new_call(receiver: Receiver | None, n: int = 0, function: str = "echo", **headers: str) -> AsyncCall:
    return AsyncCall(
        call_id=f"{uuid.uuid4().hex}-{n}",
        function=function,
        body=f"body-{n}".encode(),
        headers={"Content-Type": "text/plain", **headers},
        callback_url=receiver.url() if receiver else None,
    )


def enqueue_and_wait(queue: Any, call: AsyncCall, receiver: Receiver) -> Any:
    """Enqueue ``call`` on a started ``queue`` and wait for its callback: the POST the receiver got."""
    queue.enqueue(call)
    wait_until(lambda: call.call_id in receiver.delivered(), "the callback")
    return receiver.delivered()[call.call_id]


# --------------------------------------------------------------------------- behaviour of both queues


@pytest.mark.parametrize("kind", KINDS)
def test_a_call_runs_and_its_result_is_posted_with_openfaas_headers(
    kind: str, make_queue: QueueFactory, receiver: Receiver
) -> None:
    seen = Functions(
        lambda fn, body, headers: (201, b'{"got": "' + body + b'"}', {"Content-Type": "application/json"})
    )
    queue = make_queue(kind)
    queue.start(seen)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    call = new_call(receiver, 7, function="rollout-collector", traceparent=traceparent)

    post = enqueue_and_wait(queue, call, receiver)
    assert post.path == "/callback"
    assert post.body == b'{"got": "body-7"}'
    assert post.headers["X-Function-Status"] == "201"
    assert post.headers["X-Function-Name"] == "rollout-collector"
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["traceparent"] == traceparent
    assert 0 <= float(post.headers["X-Duration-Seconds"]) < 10
    # The function got the request as sent, its trace context, and the call id (as behind OpenFaaS).
    ((function, body, headers),) = seen.calls
    assert (function, body) == ("rollout-collector", b"body-7")
    assert headers["traceparent"] == traceparent
    assert headers["Content-Type"] == "text/plain"
    assert headers["X-Call-Id"] == call.call_id
    wait_until(lambda: queue.depth() == 0, "an empty queue")
    wait_until(lambda: queue.stats()["completed"] == 1, "the call counted as completed")
    assert len(receiver.received()) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_call_without_callback_runs_and_leaves_the_queue(kind: str, make_queue: QueueFactory) -> None:
    seen = Functions()
    queue = make_queue(kind)
    queue.start(seen)
    queue.enqueue(new_call(None))
    wait_until(lambda: queue.stats()["completed"] == 1, "the call to finish")
    wait_until(lambda: queue.depth() == 0, "an empty queue")  # counted first, then taken off the queue
    assert len(seen.calls) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_queue_raises_queue_full_until_calls_finish(
    kind: str, make_queue: QueueFactory, receiver: Receiver
) -> None:
    queue = make_queue(kind, async_max_queued=3)
    calls = [new_call(receiver, i) for i in range(3)]
    for call in calls:
        queue.enqueue(call)
    assert queue.depth() == 3

    with pytest.raises(QueueFull):
        queue.enqueue(new_call(receiver, 3))

    assert queue.depth() == 3  # the refused call took no place
    queue.start(Functions())
    wait_until(lambda: len(receiver.delivered()) == 3, "three callbacks")
    wait_until(lambda: queue.depth() == 0, "an empty queue")
    queue.enqueue(new_call(receiver, 4))  # room again
    wait_until(lambda: len(receiver.delivered()) == 4, "the fourth callback")
    assert queue.stats()["rejected_full"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_calls_in_flight_stay_within_the_concurrency_bound(
    kind: str, make_queue: QueueFactory, receiver: Receiver
) -> None:
    release = threading.Event()

    def slow(fn: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        release.wait(10)
        return 200, body, {}

    seen = Functions(slow)
    queue = make_queue(kind, async_concurrency=3)
    queue.start(seen)
    try:
        for i in range(8):
            queue.enqueue(new_call(receiver, i))
        wait_until(lambda: seen.running == 3, "three calls in flight")
        assert queue.depth() == 8  # five queued, three in flight
    finally:
        release.set()
    wait_until(lambda: len(receiver.delivered()) == 8, "eight callbacks")
    assert seen.peak == 3


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_status_is_tried_again_and_the_final_answer_delivered(
    kind: str, make_queue: QueueFactory, receiver: Receiver
) -> None:
    answers: collections.deque[tuple[int, bytes, dict[str, str]]] = collections.deque(
        [(503, b"busy", {}), (502, b"replica died", {})]
    )

    def flaky(fn: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        return answers.popleft() if answers else (200, b"done", {})

    seen = Functions(flaky)
    queue = make_queue(kind, async_max_deliver=5)
    queue.start(seen)
    call = new_call(receiver)
    post = enqueue_and_wait(queue, call, receiver)
    assert (post.headers["X-Function-Status"], post.body) == ("200", b"done")
    assert seen.tries(call.call_id) == 3
    assert len(receiver.received()) == 1  # only the final answer is sent


@pytest.mark.parametrize("kind", KINDS)
def test_tries_run_out_and_the_last_retry_status_is_delivered(
    kind: str, make_queue: QueueFactory, receiver: Receiver
) -> None:
    def broken(fn: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        raise ConnectionError("the replica is gone")

    seen = Functions(broken)
    queue = make_queue(kind, async_max_deliver=3)
    queue.start(seen)
    call = new_call(receiver)
    post = enqueue_and_wait(queue, call, receiver)
    assert post.headers["X-Function-Status"] == "500"
    assert b"the replica is gone" in post.body
    assert seen.tries(call.call_id) == 3
    wait_until(lambda: queue.depth() == 0, "the call to leave the queue")
    assert queue.stats()["given_up"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_callback_is_retried_with_backoff(
    kind: str, make_queue: QueueFactory, receiver: Receiver
) -> None:
    receiver.script.extend([500, 503])
    queue = make_queue(kind, async_callback_attempts=4)
    queue.start(Functions())
    call = new_call(receiver)
    queue.enqueue(call)
    wait_until(lambda: queue.stats()["callbacks_delivered"] == 1, "the callback to get through")
    posts = receiver.received()
    assert len(posts) == 3
    assert {p.headers["X-Call-Id"] for p in posts} == {call.call_id}
    wait_until(lambda: queue.depth() == 0, "an empty queue")


@pytest.mark.parametrize("kind", KINDS)
def test_a_callback_that_keeps_failing_is_given_up_and_the_call_finished(
    kind: str, make_queue: QueueFactory, receiver: Receiver
) -> None:
    receiver.always = 502
    queue = make_queue(kind, async_callback_attempts=3)
    queue.start(Functions())
    queue.enqueue(new_call(receiver))
    wait_until(lambda: queue.stats()["callbacks_failed"] == 1, "the callback to be given up")
    wait_until(lambda: queue.depth() == 0, "the call acknowledged")
    assert len(receiver.received()) == 3
    # JetStream counts a call completed once its acknowledgement has returned, just after depth drops.
    wait_until(lambda: queue.stats()["completed"] == 1, "the call counted as completed")


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_callback_is_not_retried(kind: str, make_queue: QueueFactory, receiver: Receiver) -> None:
    receiver.always = 404
    queue = make_queue(kind, async_callback_attempts=3)
    queue.start(Functions())
    queue.enqueue(new_call(receiver))
    wait_until(lambda: queue.stats()["callbacks_failed"] == 1, "the callback to be given up")
    assert len(receiver.received()) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_function_name_that_cannot_be_a_subject_is_refused(kind: str, make_queue: QueueFactory) -> None:
    queue = make_queue(kind)
    for bad in ("a.b", "a*", "a>", "a b", ""):
        with pytest.raises(ValueError):
            queue.enqueue(new_call(None, function=bad))
    assert queue.depth() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_closed_queue_refuses_calls(kind: str, make_queue: QueueFactory) -> None:
    queue = make_queue(kind)
    queue.start(Functions())
    queue.close()
    with pytest.raises(QueueUnavailable):
        queue.enqueue(new_call(None))
    queue.close()  # idempotent


# --------------------------------------------------------------------------- JetStream: durability


def test_calls_in_flight_when_the_queue_closes_run_on_the_next_queue(
    make_queue: QueueFactory, receiver: Receiver
) -> None:
    stuck = threading.Event()
    blocked = Functions(lambda fn, body, headers: (stuck.wait(30), (200, b"too late", {}))[1])
    first = make_queue("nats", async_concurrency=2)
    first.start(blocked)
    calls = [new_call(receiver, i) for i in range(6)]
    try:
        for call in calls:
            first.enqueue(call)
        wait_until(lambda: blocked.running == 2, "two calls in flight")
        started = time.monotonic()
        first.close(timeout=0.2)  # the gateway stops while two calls hang in their replicas
        assert time.monotonic() - started < 10  # far from the 30 s the stuck calls would take
    finally:
        stuck.set()

    second = make_queue("nats", async_concurrency=2)
    assert second.depth() == 6  # nothing was lost or acknowledged
    second.start(Functions())
    wait_until(lambda: len(receiver.delivered()) == 6, "all six callbacks")
    delivered = receiver.delivered()
    assert set(delivered) == {c.call_id for c in calls}
    for i, call in enumerate(calls):
        assert delivered[call.call_id].body == f"echo:body-{i}".encode()
        assert delivered[call.call_id].headers["X-Function-Status"] == "200"
    wait_until(lambda: second.depth() == 0, "an empty queue")
    # The two that were in flight came back (a pull that outlived its fetch's timeout can add one).
    assert second.stats()["redelivered"] >= 2


_CRASHING_GATEWAY = """
import json, sys, threading
from ftg_common.settings import Settings
from workflows.gateway.async_queue import AsyncCall, open_queue

settings, count, callback = Settings(**json.loads(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
queue = open_queue(settings)
for i in range(count):
    queue.enqueue(AsyncCall(f"{sys.argv[4]}-{i}", "echo", f"body-{i}".encode(), {}, callback))
print("enqueued", flush=True)

def hang(function, body, headers):
    print("running", headers["X-Call-Id"], flush=True)
    threading.Event().wait()

queue.start(hang)
threading.Event().wait()
"""


def _lines_until(out: Any, enough: Callable[[list[str]], bool], timeout: float = 60.0) -> list[str]:
    """Lines read from a child's ``out`` until ``enough`` of them; a failure names what it printed."""
    lines: SimpleQueue[str] = SimpleQueue()

    def pump() -> None:
        for line in iter(out.readline, ""):
            lines.put(line)
        lines.put("")  # the end of ``out``: the child exited

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not enough(seen):
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except Empty:
            pytest.fail(f"the gateway process printed only {seen} in {timeout:g} s")
        assert line, f"the gateway process ended early: {seen}"
        seen.append(line)
    return seen


def test_calls_of_a_killed_gateway_are_redelivered_and_all_complete(
    nats_url: str, stream: str, make_queue: QueueFactory, receiver: Receiver
) -> None:
    overrides = {"async_concurrency": 3, "async_ack_wait_s": 1.0}
    settings = settings_for("nats", stream, **overrides).model_dump(
        include={*overrides, "async_queue", "nats_url", "async_stream"}
    )
    prefix = uuid.uuid4().hex
    gateway = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_GATEWAY, json.dumps(settings), "7", receiver.url(), prefix],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert gateway.stdout is not None
        _lines_until(gateway.stdout, lambda seen: sum(x.startswith("running") for x in seen) >= 3)
        gateway.kill()  # SIGKILL: no nak, no close; three calls in flight, four queued
        gateway.wait(10)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait(10)
        if gateway.stdout is not None:
            gateway.stdout.close()
    assert receiver.received() == []

    restarted = make_queue("nats", **overrides)
    assert restarted.depth() == 7
    restarted.start(Functions())
    wait_until(lambda: len(receiver.delivered()) == 7, "all seven callbacks")
    delivered = receiver.delivered()
    assert set(delivered) == {f"{prefix}-{i}" for i in range(7)}
    assert {p.body for p in delivered.values()} == {f"echo:body-{i}".encode() for i in range(7)}
    wait_until(lambda: restarted.depth() == 0, "an empty queue")
    # The three in flight came back after ack_wait (a loop starved past ack_wait could add one).
    assert restarted.stats()["redelivered"] >= 3


def test_two_gateways_on_one_stream_share_the_calls(make_queue: QueueFactory, receiver: Receiver) -> None:
    first, second = Functions(), Functions()
    a, b = make_queue("nats", async_concurrency=2), make_queue("nats", async_concurrency=2)
    a.start(first)
    b.start(second)
    calls = [new_call(receiver, i) for i in range(20)]
    for i, call in enumerate(calls):
        (a if i % 2 else b).enqueue(call)
    wait_until(lambda: len(receiver.delivered()) == 20, "twenty callbacks")
    ran = [h["X-Call-Id"] for _, _, h in first.calls + second.calls]
    assert sorted(ran) == sorted(c.call_id for c in calls)  # each exactly once (no crash, no retry)
    assert len(receiver.received()) == 20


def test_a_call_larger_than_a_nats_message_is_refused(make_queue: QueueFactory) -> None:
    queue = make_queue("nats")
    big = AsyncCall("big", "echo", b"x" * (2 * 2**20), {}, None)
    with pytest.raises(CallTooLarge):
        queue.enqueue(big)
    assert queue.depth() == 0


def test_a_call_enqueued_twice_is_queued_once(make_queue: QueueFactory, receiver: Receiver) -> None:
    queue = make_queue("nats")
    call = new_call(receiver)
    queue.enqueue(call)
    queue.enqueue(call)  # a retried publish: JetStream de-duplicates by call id
    assert queue.depth() == 1


def test_the_stream_keeps_the_calls_on_disk_with_the_configured_bound(
    nats_url: str, stream: str, make_queue: QueueFactory
) -> None:
    make_queue("nats", async_max_queued=42)

    async def info() -> Any:
        nc = await nats.connect(nats_url)
        try:
            return await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()

    config = asyncio.run(info()).config
    assert config.storage == "file"
    assert config.retention == "workqueue"
    assert config.discard == "new"
    assert config.max_msgs == 42
    assert config.subjects == [stream.replace("-", ".") + ".>"]
    # A gateway restarted with another bound updates the stream in place.
    make_queue("nats", async_max_queued=50)
    assert asyncio.run(info()).config.max_msgs == 50


# --------------------------------------------------------------------------- choosing the queue


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_auto_falls_back_to_the_in_process_queue_without_nats(stream: str) -> None:
    url = f"nats://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    queue = open_queue(settings_for("auto", stream, nats_url=url))
    try:
        assert isinstance(queue, InProcessQueue)
    finally:
        queue.close()
    assert time.monotonic() - started < 10  # no reconnect loop (nats-py would retry for minutes)
    with pytest.raises(QueueUnavailable, match="no NATS server"):
        open_queue(settings_for("nats", stream, nats_url=url))


def test_auto_uses_jetstream_when_nats_answers(make_queue: QueueFactory, nats_url: str) -> None:
    assert isinstance(make_queue("auto"), JetStreamQueue)
    assert isinstance(make_queue("memory"), InProcessQueue)


def test_the_in_process_queue_is_not_durable(make_queue: QueueFactory, receiver: Receiver) -> None:
    first = make_queue("memory")
    for i in range(3):
        first.enqueue(new_call(receiver, i))
    first.close()
    second = make_queue("memory")
    assert second.depth() == 0  # what the first held is gone: documented, and why JetStream is the default


# --------------------------------------------------------------------------- JetStream: a NATS restart


class PrivateNats:
    """A nats-server of this test's own (JetStream, file store in ``store``), to kill and restart."""

    def __init__(self, binary: str, store: Path) -> None:
        self.binary, self.store, self.port = binary, store, _closed_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: reachable(self.url, 0.2), f"nats-server on port {self.port}", timeout=10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if binary is None:
        pytest.skip("no nats-server binary to run a private server (apt-get install nats-server)")
    server = PrivateNats(binary, tmp_path / "jetstream")
    server.start()
    yield server
    server.kill()


def test_queued_calls_survive_a_nats_crash_and_the_queue_reconnects(
    private_nats: PrivateNats, stream: str, receiver: Receiver
) -> None:
    queue: Any = open_queue(settings_for("nats", stream, nats_url=private_nats.url))
    try:
        calls = [new_call(receiver, i) for i in range(5)]
        for call in calls:
            queue.enqueue(call)  # durable once this returns
        private_nats.kill()  # SIGKILL: whatever was only in the server's memory is gone
        private_nats.start()  # same store directory
        wait_until(lambda: _depth_or_none(queue) == 5, "the queue to reconnect and find its five calls")
        queue.start(Functions())
        wait_until(lambda: len(receiver.delivered()) == 5, "all five callbacks")
        assert set(receiver.delivered()) == {c.call_id for c in calls}
        queue.enqueue(new_call(receiver, 5))  # and the reconnected queue takes new calls
        wait_until(lambda: len(receiver.delivered()) == 6, "the sixth callback")
    finally:
        queue.close(timeout=1.0)


def _depth_or_none(queue: Any) -> int | None:
    try:
        return int(queue.depth())
    except QueueUnavailable:
        return None
