"""What both queues share: the call, the errors, the protocol, one try of a call, posting its result.

A call's life, in either queue: it is tried (``invoke``, on a worker thread); an answer that means "not
now" (:data:`RETRY_STATUSES`) or an ``invoke`` that raised is tried again after a backoff, up to
``max_deliver`` tries in all; the last answer is then POSTed to the call's ``X-Callback-Url`` with
``X-Call-Id``, ``X-Function-Name``, ``X-Function-Status`` and ``X-Duration-Seconds``, as OpenFaaS's
queue worker does. A callback that fails is tried ``callback_attempts`` times with a doubling backoff,
then given up (logged and counted): the call is finished either way.
"""

from __future__ import annotations

import enum
import http.client
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("ftg.gateway.async")

Invoke = Callable[[str, bytes, dict[str, str]], tuple[int, bytes, dict[str, str]]]
"""``(function, body, headers) -> (status, body, headers)``: one synchronous call of a function."""

# Answers that mean "not now" rather than "this is the result": a replica died mid-call (502), none was
# free or the gateway is stopping (503), none answered in time (504), or the function shed load (429).
# The handlers are idempotent, so such a call is tried again, as OpenFaaS's queue worker retries a 429.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

# A function name is also a NATS subject token, so it may hold no '.', '*', '>' or space.
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class AsyncCall:
    """One async call, as the gateway accepted it.

    Attributes:
        call_id: the id answered in ``X-Call-Id`` and sent back with the result.
        function: the function's name (``rollout-collector``).
        body: the request body, raw.
        headers: the request's headers (``traceparent`` included), passed to the function.
        callback_url: where the result is POSTed; None runs the call and drops its result.
    """

    call_id: str
    function: str
    body: bytes
    headers: dict[str, str]
    callback_url: str | None


class QueueFull(Exception):
    """The queue holds its bound of calls, queued or in flight (the gateway answers 429)."""


class CallTooLarge(ValueError):
    """The call's body and headers do not fit in one queue message (the gateway should answer 413)."""


class QueueUnavailable(Exception):
    """The queue did not take the call: closed, or its server unreachable or too slow (answer 503)."""


class AsyncQueue(Protocol):
    """The gateway's async queue."""

    def start(self, invoke: Invoke) -> None:
        """Begin consuming: run each call through ``invoke`` (concurrently, bounded), POST its result."""

    def enqueue(self, call: AsyncCall) -> None:
        """Queue ``call``; durable once this returns (for a durable queue); QueueFull at the bound."""

    def depth(self) -> int:
        """Calls queued or in flight."""

    def close(self) -> None:
        """Stop consuming and release the queue's threads and connections."""


@dataclass(frozen=True)
class Tuning:
    """How hard a queue tries a call and its callback.

    Attributes:
        max_deliver: tries of a call in all (retried answers, crashes) before its last answer is sent.
        backoff_s: the delay after the first failed try of a call or a callback; it doubles each time.
        callback_attempts: tries of one callback POST.
        callback_timeout_s: seconds one callback POST may take.
    """

    max_deliver: int = 5
    backoff_s: float = 0.5
    callback_attempts: int = 4
    callback_timeout_s: float = 10.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed try (1-based)."""
        return float(self.backoff_s * 2 ** max(0, failures - 1))


class Counters:
    """Thread-safe event counts of a queue, for logs, metrics and tests."""

    NAMES = (
        "enqueued",  # calls accepted
        "rejected_full",  # calls refused at the bound
        "completed",  # calls finished: result delivered, given up, or run without a callback
        "retried",  # tries answered with a retry status (or an invoke that raised), tried again
        "redelivered",  # JetStream: deliveries after a call's first (retries, and calls back from a crash)
        "given_up",  # calls whose tries ran out and whose last answer was still a retry status
        "callbacks_delivered",
        "callbacks_failed",  # callbacks given up after their attempts
        "malformed",  # queue messages that were not a call (dropped)
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        """Count ``n`` more ``name`` events."""
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        """Every count, as of now."""
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True)
class Result:
    """One try of a call.

    Attributes:
        status: the function's HTTP status (500 when the gateway could not run the call).
        body: the function's response body.
        headers: the function's response headers.
        seconds: how long the try took.
        failed: ``invoke`` raised: the gateway could not run the call at all.
    """

    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float
    failed: bool = False

    @property
    def retriable(self) -> bool:
        """Whether this answer means "try again" rather than "this is the result"."""
        return self.failed or self.status in RETRY_STATUSES


class Delivery(enum.Enum):
    """What became of a call's result."""

    DELIVERED = "delivered"  # the callback answered 2xx/3xx, or there was no callback to make
    GAVE_UP = "gave-up"  # the callback kept failing, or refused it (4xx): logged and counted
    ABORTED = "aborted"  # the queue is closing: not delivered, the call is not finished


def check_call(call: AsyncCall) -> None:
    """Refuse a call no queue can carry.

    Raises:
        ValueError: the function name is not one a subject (or a route) can hold.
    """
    if not FUNCTION_NAME.match(call.function):
        raise ValueError(f"function name {call.function!r} does not match {FUNCTION_NAME.pattern}")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` in ``headers``, whatever its case (HTTP names are case-insensitive)."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def try_call(invoke: Invoke, call: AsyncCall) -> Result:
    """Run ``call`` once through ``invoke``; an exception becomes a failed (retriable) 500."""
    headers = dict(call.headers)
    if header(headers, "X-Call-Id") is None:  # the function sees the id, as behind OpenFaaS's queue worker
        headers["X-Call-Id"] = call.call_id
    started = time.perf_counter()
    try:
        status, body, out_headers = invoke(call.function, call.body, headers)
    except Exception as exc:  # the gateway failed, not the function: tried again, then reported
        seconds = time.perf_counter() - started
        log.warning("async call %s to %s raised %s: %s", call.call_id, call.function, type(exc).__name__, exc)
        message = json.dumps({"error": f"the gateway could not run the call: {type(exc).__name__}: {exc}"})
        return Result(500, message.encode(), {"Content-Type": "application/json"}, seconds, failed=True)
    return Result(int(status), bytes(body), dict(out_headers), time.perf_counter() - started)


def gave_up(call: AsyncCall, tries: int) -> Result:
    """The result sent for a call whose every try crashed before it could answer."""
    message = json.dumps({"error": f"{call.function} call {call.call_id} crashed on each of {tries} tries"})
    return Result(500, message.encode(), {"Content-Type": "application/json"}, 0.0, failed=True)


def callback_headers(call: AsyncCall, result: Result) -> dict[str, str]:
    """The headers of the result's POST to the callback, as OpenFaaS's queue worker sends them."""
    headers = {
        "X-Call-Id": call.call_id,
        "X-Function-Name": call.function,
        "X-Function-Status": str(result.status),
        "X-Duration-Seconds": f"{result.seconds:.6f}",
        "Content-Type": header(result.headers, "Content-Type") or "application/octet-stream",
    }
    traceparent = header(call.headers, "traceparent")
    if traceparent is not None:  # the receiver's span joins the caller's trace
        headers["traceparent"] = traceparent
    return headers


# Callbacks go straight to their URL: a proxy from the environment must not see (or break) them.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post_once(url: str, body: bytes, headers: dict[str, str], timeout: float) -> bool | None:
    """POST once: True delivered, False refused for good (a 4xx other than 408/429), None worth a retry."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
        return True
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code >= 500 or exc.code in (408, 429):
            log.info("callback %s answered %d; will retry", url, exc.code)
            return None
        log.warning("callback %s refused the result with %d", url, exc.code)
        return False
    except ValueError as exc:  # not a URL urllib can open: no retry will help
        log.warning("callback %s is not usable: %s", url, exc)
        return False
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out: maybe transient
        log.info("callback %s failed (%s: %s); will retry", url, type(exc).__name__, exc)
        return None


def post_result(
    call: AsyncCall, result: Result, tuning: Tuning, stop: threading.Event, counters: Counters
) -> Delivery:
    """POST ``result`` to the call's callback, retrying with backoff; stop early when ``stop`` is set."""
    if call.callback_url is None:
        return Delivery.DELIVERED
    headers = callback_headers(call, result)
    for attempt in range(1, tuning.callback_attempts + 1):
        if stop.is_set():
            return Delivery.ABORTED
        outcome = _post_once(call.callback_url, result.body, headers, tuning.callback_timeout_s)
        if outcome is True:
            counters.add("callbacks_delivered")
            return Delivery.DELIVERED
        if outcome is False:
            break
        if attempt < tuning.callback_attempts and stop.wait(tuning.delay(attempt)):
            return Delivery.ABORTED
    log.error(
        "gave up delivering the result of %s call %s to %s", call.function, call.call_id, call.callback_url
    )
    counters.add("callbacks_failed")
    return Delivery.GAVE_UP
