"""A local OpenFaaS-compatible gateway: the functions of ``functions/stack.yml`` as elastic replicas.

    python -m workflows.gateway.server --port 8080 [--read-timeout 30] [--stack functions/stack.yml]

Each function runs as replicas, each a separate ``python -m functions.serve`` process (the entry point of
the function images) started on demand and reached over HTTP; they scale by the function's OpenFaaS
labels within a machine-wide cap (:mod:`workflows.gateway.fleet`, :mod:`workflows.gateway.scaler`).

Routes (the subset of the OpenFaaS gateway API the project uses):

* ``POST /function/<name>[/<path>]``: a sync call (the rest of the path and the query go to the
  function). A call that waited for a replica to start is marked ``X-Cold-Start: true`` and
  ``X-Cold-Start-Seconds``; every answer has ``X-Call-Id`` and ``X-Duration-Seconds``.
* ``POST /async-function/<name>``: queued (:mod:`workflows.gateway.async_queue`), 202 with
  ``X-Call-Id``; the result goes to ``X-Callback-Url``; 429 when the queue is full.
* ``GET /system/functions``, ``GET /system/function/<name>`` and ``POST /system/scale-function/<name>``
  (``{"serviceName": name, "replicas": n}``, 202): basic auth as user ``admin``
  (:mod:`workflows.gateway.auth`); without it 401.
* ``GET /healthz`` and Prometheus ``GET /metrics`` (:mod:`workflows.gateway.metrics`), open.

Every request gets an HTTP answer with a JSON body (or, when the client stops sending, the connection is
closed after ``read_timeout`` seconds); nothing a client sends drops a connection unanswered or holds it
forever:

* a route with another method is 405 with ``Allow`` (any method, PUT and DELETE included); an unknown
  path or function is 404; a malformed request line or header block is 400 (431 for oversized headers;
  505 for an HTTP version of 2 or more, as HTTP requires);
* a request body is framed by ``Content-Length`` (ASCII digits only: ``abc``, ``-1``, ``+5`` or two
  disagreeing values are 400) or ``Transfer-Encoding: chunked`` (bounded chunk lines and trailers;
  both at once, or any other coding, is 400); more than :data:`MAX_BODY` bytes is 413, read no further;
* a body (or header block) that stops arriving for ``read_timeout`` seconds is 408, and so is a body
  slower than :data:`MIN_BODY_RATE` on average (after a ``read_timeout`` grace), so a client trickling
  bytes cannot hold a connection either;
* the body is checked for size and JSON nesting depth (:func:`ftg_common.faas.check_body`) before the
  function is invoked;
* a replica that dies mid-call is answered 502, one that does not answer in time 504, and no replica
  in time 503 (all retriable; the broken replica is replaced);
* when an answer leaves request bytes unread, the connection is closed after it, and the unread bytes
  are drained while they keep coming (at most :data:`LINGER_BYTES`, on the same time bounds) so the
  client reads the answer instead of a reset.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ftg_common import faas, tracing
from ftg_common.settings import Settings, get_settings
from workflows.gateway import auth, stack
from workflows.gateway.fleet import Fleet
from workflows.gateway.metrics import GatewayMetrics
from workflows.gateway.stack import FunctionDef

MAX_BODY = faas.MAX_BODY_BYTES
READ_TIMEOUT_S = 30.0
"""Seconds a connection may wait for the client's next bytes."""
MIN_BODY_RATE = 256 * 2**10
"""Bytes per second a request body must average, after a grace of one read timeout."""
LINGER_BYTES = 64 * 2**20
"""Unread request bytes drained after an early answer, so the client reads it rather than a reset."""
MAX_CHUNK_LINE = 1024
MAX_TRAILERS = 64
_MAX_LINE = 65536  # request line, as http.server bounds it
_MAX_EMPTY_LINES = 8
_GET_ROUTES = ("/healthz", "/metrics")
_FUNCTION_PREFIX = "/function/"
_ASYNC_PREFIX = "/async-function/"
_SYSTEM_PREFIX = "/system/"
_DIGITS = re.compile(r"[0-9]{1,19}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
ENV_PROCESS = "python -m functions.serve"
"""What each replica runs (``fprocess`` of the function images)."""
_GET = ("GET", "HEAD")
_POST = ("POST",)

log = logging.getLogger("ftg.gateway")


@dataclass
class Gateway:
    """Everything a request handler reaches: the functions, their replicas, metrics, auth, the queue.

    Attributes:
        functions: the stack's functions by name.
        fleet: their replicas.
        metrics: the Prometheus series.
        auth: the ``/system/*`` credentials.
        queue: the async queue, or None when there is none (``queue_problem`` says why).
        queue_api: the module (or stand-in) defining ``AsyncCall`` and ``QueueFull``.
    """

    functions: Mapping[str, FunctionDef]
    fleet: Fleet
    metrics: GatewayMetrics
    auth: auth.BasicAuth
    queue: Any = None
    queue_api: Any = None
    queue_problem: str = "no async queue configured"
    created_at: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    _closed: bool = False

    def invoke(
        self, function: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        """A sync call through the replicas, for the async queue: (status, body, headers)."""
        if function not in self.functions:
            message = json.dumps({"error": f"no such function: {function!r}"}).encode()
            return 404, message, {"Content-Type": "application/json"}
        out = self.fleet.invoke(function, body, list(headers.items()))
        return out.status, out.body, {"Content-Type": out.content_type, **out.headers}

    def status(self, name: str) -> dict[str, Any]:
        """One function as OpenFaaS's ``FunctionStatus``."""
        fdef = self.functions[name]
        return {
            "name": name,
            "image": fdef.image,
            "namespace": "openfaas-fn",
            "envProcess": ENV_PROCESS,
            "labels": dict(fdef.labels),
            "annotations": dict(fdef.annotations),
            "limits": dict(fdef.limits),
            "requests": dict(fdef.requests),
            "readOnlyRootFilesystem": False,
            "invocationCount": self.metrics.invocation_count(name),
            **self.fleet.status(name),
            "createdAt": self.created_at,
        }

    def close(self) -> None:
        """Stop the queue's consumer, then every replica (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.queue is not None:
            try:
                self.queue.close()
            except Exception:  # the replicas must still be stopped
                log.exception("closing the async queue failed")
        self.fleet.close()


class _Refusal(Exception):
    """A request the gateway answers itself with ``status`` and a JSON error."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _NeverRaised(Exception):
    """Stands in for an exception type a queue module does not define."""


def _shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class GatewayHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests; :func:`make_handler` binds its gateway and read timeout."""

    gateway: Gateway
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # answers are small and go out whole: never wait to coalesce them
    _headers_buffer: list[bytes]  # http.server's pending head (not in its type stubs)
    # A request line without a version is answered with a status line, never as HTTP/0.9 (body only).
    default_request_version = "HTTP/1.0"
    read_timeout = READ_TIMEOUT_S
    timeout = READ_TIMEOUT_S  # socket timeout of each read and write (StreamRequestHandler.setup)

    # Per request: unread body bytes are pending (so the connection closes after the answer), an
    # answer was started, the client asked for ``100 Continue``, and bytes of a request have arrived.
    _pending = False
    _answered = False
    _expect_continue = False
    _started = False
    _version = "HTTP/1.0"

    @property
    def request_version(self) -> str:
        """The request's HTTP version; never ``HTTP/0.9``, for which http.server omits status lines."""
        return self._version

    @request_version.setter
    def request_version(self, version: str) -> None:
        self._version = "HTTP/1.0" if version == "HTTP/0.9" else version

    def log_message(self, fmt: str, *args: object) -> None:
        """Quiet: the metrics carry the signal, and a hostile client must not fill a log."""

    # ------------------------------------------------------------------ one request

    def handle_one_request(self) -> None:
        """Read and answer one request (``BaseHTTPRequestHandler``'s loop, with every failure answered)."""
        self._pending = self._answered = self._expect_continue = self._started = False
        self.raw_requestline = b""
        self.requestline = self.command = ""
        try:
            self.raw_requestline = self._request_line()
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > _MAX_LINE:
                self.requestline = self.request_version = ""
                self.send_error(
                    HTTPStatus.REQUEST_URI_TOO_LONG, f"request line longer than {_MAX_LINE} bytes"
                )
            elif self.parse_request():  # when it fails it has answered through send_error, or not at all:
                self._pending = self._declares_body()
                try:
                    self._route()
                except _Refusal as refusal:
                    self._json(refusal.status, {"error": refusal.message}, refusal.headers)
            elif not self._answered:  # a request line of only whitespace, which it drops silently
                self.send_error(HTTPStatus.BAD_REQUEST, "empty request line")
            self.wfile.flush()
            if self._pending:
                self._linger()
        except TimeoutError:
            # The client stopped sending. Mid-request, say so; between requests, just close.
            self.close_connection = True
            if (self._started or self.raw_requestline) and not self._answered:
                self._answer_quietly(408, f"request not received within {self.read_timeout:g} s")
        except OSError:  # the client went away (reset, broken pipe): nobody to answer
            self.close_connection = True
        except Exception as exc:  # a bug of the gateway: still a JSON answer, never a dropped connection
            log.error("gateway failed on %s", _shown(getattr(self, "requestline", "")), exc_info=exc)
            self.close_connection = True
            if not self._answered:
                self._answer_quietly(500, f"gateway error: {type(exc).__name__}")

    def _request_line(self) -> bytes:
        """The next request line, past the few empty lines a client may send before it (RFC 9112 2.2)."""
        line = self.rfile.readline(_MAX_LINE + 1)
        for _ in range(_MAX_EMPTY_LINES):
            if line not in (b"\r\n", b"\n"):
                break
            self._started = True
            line = self.rfile.readline(_MAX_LINE + 1)
        return line

    def _answer_quietly(self, code: int, message: str) -> None:
        """Answer ``code`` if the socket still takes it; a failure here has no one left to tell."""
        try:
            self._pending = True  # the request was not read to its end: close after the answer
            self._json(code, {"error": message})
            self.wfile.flush()
        except OSError:
            pass

    def _route(self) -> None:
        path, _, query = self.path.partition("?")
        if path.startswith(_SYSTEM_PREFIX):
            self._system(path)
            return
        if path.startswith(_FUNCTION_PREFIX):
            self._allow(path, _POST)
            name, _, rest = path[len(_FUNCTION_PREFIX) :].partition("/")
            self._invoke(name, "/" + rest + (f"?{query}" if query else ""))
        elif path.startswith(_ASYNC_PREFIX):
            self._allow(path, _POST)
            self._enqueue(path[len(_ASYNC_PREFIX) :].rstrip("/"))
        elif path == "/healthz":
            self._allow(path, _GET)
            self._send(200, b"OK", "text/plain")
        elif path == "/metrics":
            self._allow(path, _GET)
            self._send(200, generate_latest(self.gateway.metrics.registry), CONTENT_TYPE_LATEST)
        else:
            raise _Refusal(404, f"no route {_shown(path)}")

    def _allow(self, path: str, allowed: tuple[str, ...]) -> None:
        if self.command not in allowed:
            raise _Refusal(
                405,
                f"method {_shown(self.command)} not allowed on {_shown(path)}; use {allowed[0]}",
                {"Allow": ", ".join(allowed)},
            )

    def _function(self, name: str) -> str:
        """``name`` if the stack has it; 404 otherwise."""
        if name not in self.gateway.functions:
            known = ", ".join(self.gateway.functions)
            raise _Refusal(404, f"no such function: {_shown(name)} (known: {known})")
        return name

    def _checked_body(self, name: str) -> bytes:
        """The request body for function ``name``: 404 for an unknown one, then the body's checks."""
        body = self._read_body()  # read first: a refusal that read the whole request keeps the connection
        self._function(name)
        try:
            faas.check_body(body)
        except faas.FunctionError as exc:
            raise _Refusal(exc.status, exc.message) from exc
        return body

    def _invoke(self, name: str, path: str) -> None:
        body = self._checked_body(name)
        out = self.gateway.fleet.invoke(name, body, self.headers.items(), path)
        self._send(out.status, out.body, out.content_type, out.headers)

    def _enqueue(self, name: str) -> None:
        body = self._checked_body(name)
        gw = self.gateway
        if gw.queue is None:
            raise _Refusal(503, f"async calls are not available: {gw.queue_problem}")
        callback = self.headers.get("X-Callback-Url")
        if callback is not None and not callback.startswith(("http://", "https://")):
            raise _Refusal(400, f"X-Callback-Url must be an http(s) URL, got {_shown(callback)}")
        call_id = uuid.uuid4().hex
        headers = {k: v for k, v in self.headers.items() if k.lower() != "x-call-id"}
        headers["X-Call-Id"] = call_id  # the function sees the id the client was given
        call = gw.queue_api.AsyncCall(
            call_id=call_id,
            function=name,
            body=body,
            headers=headers,
            callback_url=callback,
        )
        # CallTooLarge and QueueUnavailable are optional in a queue module: without them, never raised.
        too_large = getattr(gw.queue_api, "CallTooLarge", _NeverRaised)
        unavailable = getattr(gw.queue_api, "QueueUnavailable", _NeverRaised)
        try:
            gw.queue.enqueue(call)
        except gw.queue_api.QueueFull as exc:
            raise _Refusal(429, f"the async queue is full: {exc}", {"Retry-After": "1"}) from exc
        except too_large as exc:
            raise _Refusal(413, f"the call does not fit in the async queue: {exc}") from exc
        except unavailable as exc:
            raise _Refusal(
                503, f"the async queue did not take the call: {exc}", {"Retry-After": "1"}
            ) from exc
        self._send(202, b"", "text/plain", {"X-Call-Id": call_id})

    # ------------------------------------------------------------------ /system/*

    def _system(self, path: str) -> None:
        """The OpenFaaS system API: authenticated before anything else, so it reveals nothing to strangers."""
        if not self.gateway.auth.allows(self.headers.get("Authorization")):
            raise _Refusal(
                401,
                "/system/ needs basic auth (user admin)",
                {"WWW-Authenticate": 'Basic realm="faastraingym"'},
            )
        rest = path[len(_SYSTEM_PREFIX) :]
        if rest == "functions":
            self._allow(path, _GET)
            self._json(200, [self.gateway.status(n) for n in self.gateway.functions])
        elif rest.startswith("function/"):
            self._allow(path, _GET)
            self._json(200, self.gateway.status(self._function(rest[len("function/") :].rstrip("/"))))
        elif rest.startswith("scale-function/"):
            self._allow(path, _POST)
            self._scale(rest[len("scale-function/") :].rstrip("/"))
        else:
            raise _Refusal(404, f"no route {_shown(path)}")

    def _scale(self, name: str) -> None:
        body = self._checked_body(name)
        try:
            request = json.loads(body or b"{}")
        except ValueError as exc:
            raise _Refusal(400, f"scale request is not valid JSON: {exc}") from exc
        replicas = request.get("replicas") if isinstance(request, dict) else None
        service = request.get("serviceName", name) if isinstance(request, dict) else None
        if type(replicas) is not int or replicas < 0:
            raise _Refusal(
                400, 'scale request needs {"serviceName": name, "replicas": a non-negative integer}'
            )
        if service != name:
            raise _Refusal(
                400, f"serviceName {_shown(str(service))} does not match the path's {_shown(name)}"
            )
        applied = self.gateway.fleet.scale(name, replicas)
        self._json(202, {"serviceName": name, "replicas": applied})

    # ------------------------------------------------------------------ the request body

    def _declares_body(self) -> bool:
        """Whether the head announces body bytes (or framing too broken to know it does not)."""
        lengths = self.headers.get_all("Content-Length") or []
        return "Transfer-Encoding" in self.headers or any(v.strip() != "0" for v in lengths)

    def handle_expect_100(self) -> bool:
        """Defer ``100 Continue`` until the body's framing is known to be acceptable."""
        self._expect_continue = True
        return True

    def _read_body(self) -> bytes:
        """The request body, framed by Content-Length or chunked; refusals for anything else.

        Raises:
            _Refusal: bad framing (400), too large (413), incomplete (400), or too slow (408).
        """
        codings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if codings:
            if lengths:
                raise _Refusal(400, "a request may not carry both Transfer-Encoding and Content-Length")
            coding = ",".join(codings).strip().lower()
            if coding != "chunked":
                raise _Refusal(400, f"unsupported Transfer-Encoding {_shown(coding)}; use chunked")
            self._continue()
            return self._read_chunked(self._deadline(MAX_BODY))
        if not lengths:
            return b""
        values = {v.strip() for v in lengths}
        value = values.pop()
        if values or not _DIGITS.fullmatch(value):
            shown = ", ".join(_shown(v) for v in lengths)
            raise _Refusal(400, f"Content-Length must be one non-negative decimal integer, got {shown}")
        length = int(value)
        if length > MAX_BODY:
            raise _Refusal(413, f"body of {length} bytes is larger than {MAX_BODY} bytes")
        self._continue()
        body = self._read_exact(length, self._deadline(length))
        self._pending = False
        return body

    def _continue(self) -> None:
        if self._expect_continue:
            self._expect_continue = False
            self.send_response_only(HTTPStatus.CONTINUE)
            self.end_headers()
            self.wfile.flush()

    def _deadline(self, size: int) -> float:
        """When ``size`` bytes must have arrived: one read timeout, plus their time at MIN_BODY_RATE."""
        return time.monotonic() + self.read_timeout + size / MIN_BODY_RATE

    def _read_exact(self, n: int, deadline: float) -> bytes:
        parts: list[bytes] = []
        got = 0
        try:
            while got < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(min(left, self.read_timeout))
                chunk = self.rfile.read1(min(n - got, 2**16))
                if not chunk:
                    raise _Refusal(400, f"body ended after {got} of the {n} bytes declared")
                parts.append(chunk)
                got += len(chunk)
        except TimeoutError as exc:
            raise _Refusal(408, f"body not received in time ({got} of {n} bytes arrived)") from exc
        finally:
            self.connection.settimeout(self.read_timeout)
        return b"".join(parts)

    def _read_line(self, deadline: float, what: str) -> bytes:
        line = self._read_until_newline(deadline)
        if len(line) > MAX_CHUNK_LINE:
            raise _Refusal(400, f"{what} longer than {MAX_CHUNK_LINE} bytes")
        if not line.endswith(b"\n"):
            raise _Refusal(400, f"body ended inside a {what}")
        return line

    def _read_until_newline(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            self.connection.settimeout(min(left, self.read_timeout))
            return self.rfile.readline(MAX_CHUNK_LINE + 1)
        except TimeoutError as exc:
            raise _Refusal(408, "chunked body not received in time") from exc
        finally:
            self.connection.settimeout(self.read_timeout)

    def _read_chunked(self, deadline: float) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self._read_line(deadline, "chunk-size line")
            size_text = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):
                raise _Refusal(400, f"bad chunk size {_shown(size_text.decode('latin-1'))}")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise _Refusal(413, f"chunked body larger than {MAX_BODY} bytes")
            parts.append(self._read_exact(size, deadline))
            if self._read_exact(2, deadline) != b"\r\n":
                raise _Refusal(400, "chunk data not followed by CRLF")
        for _ in range(MAX_TRAILERS):
            if self._read_line(deadline, "trailer line") in (b"\r\n", b"\n"):
                self._pending = False
                return b"".join(parts)
        raise _Refusal(400, f"more than {MAX_TRAILERS} trailer lines")

    def _linger(self) -> None:
        """Close after an answer that left request bytes unread: drain them (bounded), then close.

        Draining stops at the client's end of stream, after a read timeout of silence, after
        :data:`LINGER_BYTES`, or when those bytes would have taken longer than at MIN_BODY_RATE.
        """
        self.close_connection = True
        deadline = self._deadline(LINGER_BYTES)
        drained = 0
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while drained < LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.connection.settimeout(min(left, self.read_timeout))
                chunk = self.connection.recv(2**16)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    # ------------------------------------------------------------------ answers

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error the HTTP machinery itself raises, answered as JSON (and the connection closed)."""
        self._pending = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._json(code, {"error": message or phrase})

    def _send(
        self, code: int, body: bytes, ctype: str = "application/json", extra: dict[str, str] | None = None
    ) -> None:
        self._answered = True
        if self._pending:
            self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        # Head and body in one write: two small writes on a keep-alive connection meet the client's
        # delayed ACK (40 ms a call on Linux) whenever Nagle holds the second one back.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _json(self, code: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), extra=headers)

    def send_response(self, code: int, message: str | None = None) -> None:
        """The status line with the standard reason phrase (never a message built from the request)."""
        super().send_response(code, None)


class GatewayServer(ThreadingHTTPServer):
    """A thread per connection, and a listen backlog for a DAG's fan-out (http.server's is 5).

    ``shutdown()`` (or ``server_close()``) also stops the async queue and every replica.
    """

    request_queue_size = 1024
    daemon_threads = True
    gateway: Gateway

    def shutdown(self) -> None:
        """Stop serving, then stop the gateway's queue and replicas."""
        super().shutdown()
        self.gateway.close()

    def server_close(self) -> None:
        """Close the socket, then stop the gateway's queue and replicas (if not done yet)."""
        super().server_close()
        self.gateway.close()


def make_handler(gateway: Gateway, read_timeout: float = READ_TIMEOUT_S) -> type[BaseHTTPRequestHandler]:
    """The request handler class of ``gateway``.

    Args:
        gateway: what the requests reach.
        read_timeout: seconds to wait for the client's next bytes, and for a whole request body.
    """
    attrs = {"gateway": gateway, "read_timeout": read_timeout, "timeout": read_timeout}
    return type("Handler", (GatewayHandler,), attrs)


def _open_queue(gateway: Gateway, settings: Settings, queue_api: Any) -> None:
    """Open and start the async queue; without one, async calls answer 503 and say why."""
    if queue_api is False:
        gateway.queue_problem = "disabled"
        return
    if queue_api is None:
        try:
            queue_api = importlib.import_module("workflows.gateway.async_queue")
        except ImportError as exc:
            gateway.queue_problem = f"workflows.gateway.async_queue cannot be imported: {exc}"
            log.warning("async calls disabled: %s", gateway.queue_problem)
            return
    try:
        queue = queue_api.open_queue(settings)
        queue.start(gateway.invoke)
    except Exception as exc:  # the sync gateway still serves; async calls say what is wrong
        gateway.queue_problem = f"the queue did not open: {type(exc).__name__}: {exc}"
        log.error("async calls disabled: %s", gateway.queue_problem, exc_info=exc)
        return
    gateway.queue, gateway.queue_api = queue, queue_api

    def depth() -> float:
        try:
            return float(queue.depth())
        except Exception:  # a scrape must not fail because the queue's server is away
            return float("nan")

    gateway.metrics.queue_depth.set_function(depth)


def build(
    settings: Settings | None = None, stack_file: Path | str | None = None, queue_api: Any = None
) -> Gateway:
    """A gateway for the functions of ``stack_file``, its scaler started, its async queue open.

    Args:
        settings: defaults to the process's settings (``FTG_*``).
        stack_file: defaults to ``functions/stack.yml``.
        queue_api: the async queue's module (``AsyncCall``, ``QueueFull``, ``open_queue``); None imports
            :mod:`workflows.gateway.async_queue`, False runs without async calls.

    Raises:
        stack.StackError: a stack the gateway cannot serve.
        auth.PasswordError: a password file that cannot be read.
    """
    settings = settings or get_settings()
    functions = stack.load(stack_file or stack.STACK_FILE, settings.gateway_zero_duration_seconds)
    metrics = GatewayMetrics(functions)
    gateway = Gateway(functions, Fleet(functions, settings, metrics), metrics, auth.from_settings(settings))
    gateway.fleet.start()
    _open_queue(gateway, settings, queue_api)
    return gateway


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    read_timeout: float = READ_TIMEOUT_S,
    *,
    settings: Settings | None = None,
    stack_file: Path | str | None = None,
    queue_api: Any = None,
) -> GatewayServer:
    """Start serving in a background thread; returns the server (``shutdown()`` to stop it all).

    The server's ``gateway`` attribute holds the fleet, metrics and credentials (see :func:`build`).
    """
    gateway = build(settings, stack_file, queue_api)
    try:
        server = GatewayServer((host, port), make_handler(gateway, read_timeout))
    except BaseException:
        gateway.close()
        raise
    server.gateway = gateway
    # A short poll interval: shutdown() returns within 50 ms instead of http.server's 0.5 s.
    loop = threading.Thread(target=server.serve_forever, args=(0.05,), name="ftg-gateway", daemon=True)
    loop.start()
    return server


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """``python -m workflows.gateway.server``: serve in the foreground (``--port 0`` picks a free port)."""
    ap = argparse.ArgumentParser(description="OpenFaaS-compatible gateway serving the functions of a stack")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT_S,
        help="seconds to wait for a client's next bytes, and for a whole request body",
    )
    ap.add_argument("--stack", default=str(stack.STACK_FILE), help="the stack file of the functions")
    args = ap.parse_args()
    if not args.read_timeout > 0:
        ap.error("--read-timeout must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tracing.configure("ftg-gateway")
    try:
        gateway = build(stack_file=args.stack)
    except (stack.StackError, auth.PasswordError) as exc:
        raise SystemExit(f"gateway: {exc}") from exc
    server: GatewayServer | None = None
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        server = GatewayServer((args.host, args.port), make_handler(gateway, args.read_timeout))
        server.gateway = gateway
        # The first stdout line is the address (scripts read it); the rest of the log goes to stderr.
        print(f"gateway on http://{args.host}:{server.server_address[1]}", flush=True)
        print(
            f"/system/* basic auth: user admin, password from {gateway.auth.source}",
            file=sys.stderr,
            flush=True,
        )
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            with contextlib.suppress(OSError):
                server.server_close()
        gateway.close()
        tracing.shutdown()


if __name__ == "__main__":
    main()
