"""A small OpenFaaS-compatible gateway for one machine: the functions served over real HTTP.

    python -m workflows.gateway.server --port 8080 [--read-timeout 30]

Routes (the subset of the OpenFaaS gateway API the project uses): ``POST /function/<name>`` (sync),
``GET /healthz``, ``GET /system/functions`` and Prometheus ``GET /metrics`` with
``gateway_function_invocation_total{function_name,code}``, ``gateway_functions_seconds`` and
``gateway_service_count``. It serves every function of :mod:`ftg_common.catalog`; handlers run in this
process through the python3-http adapter (:func:`ftg_common.faas.invoke`), so a handler that raises is a 500.

Every request gets an HTTP answer with a JSON body (or, when the client stops sending, the connection is
closed after ``read_timeout`` seconds); nothing a client sends drops a connection unanswered or holds it
forever:

* a route with another method is 405 with ``Allow`` (any method, PUT and DELETE included); an unknown
  path is 404; a malformed request line or header block is 400 (431 for oversized headers; 505 for an
  HTTP version of 2 or more, as HTTP requires);
* a request body is framed by ``Content-Length`` (ASCII digits only: ``abc``, ``-1``, ``+5`` or two
  disagreeing values are 400) or ``Transfer-Encoding: chunked`` (bounded chunk lines and trailers;
  both at once, or any other coding, is 400); more than :data:`MAX_BODY` bytes is 413, read no further;
* a body (or header block) that stops arriving for ``read_timeout`` seconds is 408, and so is a body
  slower than :data:`MIN_BODY_RATE` on average (after a ``read_timeout`` grace), so a client trickling
  bytes cannot hold a connection either;
* the body is checked for size and JSON nesting depth (:func:`ftg_common.faas.check_body`) before the
  function is invoked;
* when an answer leaves request bytes unread, the connection is closed after it, and the unread bytes
  are drained while they keep coming (at most :data:`LINGER_BYTES`, on the same time bounds) so the
  client reads the answer instead of a reset.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ftg_common import catalog, faas
from ftg_common.catalog import FUNCTION_NAMES

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
_GET_ROUTES = ("/healthz", "/metrics", "/system/functions")
_FUNCTION_PREFIX = "/function/"
_DIGITS = re.compile(r"[0-9]{1,19}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")

log = logging.getLogger("ftg.gateway")


class GatewayMetrics:
    """The gateway's Prometheus series and per-function invocation counts (for ``/system/functions``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.invocations = Counter(
            "gateway_function_invocation",
            "Function invocations",
            ["function_name", "code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "gateway_functions_seconds",
            "Function call duration",
            ["function_name", "code"],
            registry=self.registry,
        )
        self.replicas = Gauge(
            "gateway_service_count", "Replicas per function", ["function_name"], registry=self.registry
        )
        for name in FUNCTION_NAMES:
            self.replicas.labels(function_name=name).set(1)
        self.counts = dict.fromkeys(FUNCTION_NAMES, 0)
        self.lock = threading.Lock()

    def observe(self, function: str, code: int, seconds: float) -> None:
        """Record one invocation of ``function`` that answered ``code`` after ``seconds``."""
        self.invocations.labels(function_name=function, code=str(code)).inc()
        self.seconds.labels(function_name=function, code=str(code)).observe(seconds)
        with self.lock:
            self.counts[function] = self.counts.get(function, 0) + 1


class _Refusal(Exception):
    """A request the gateway answers itself with ``status`` and a JSON error."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class GatewayHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests; :func:`make_handler` binds its metrics and read timeout."""

    metrics: GatewayMetrics
    protocol_version = "HTTP/1.1"
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
        path = self.path.split("?", 1)[0]
        allowed: tuple[str, ...]
        if path.startswith(_FUNCTION_PREFIX):
            allowed = ("POST",)
        elif path in _GET_ROUTES:
            allowed = ("GET", "HEAD")
        else:
            raise _Refusal(404, f"no route {_shown(path)}")
        if self.command not in allowed:
            raise _Refusal(
                405,
                f"method {_shown(self.command)} not allowed on {_shown(path)}; use {allowed[0]}",
                {"Allow": ", ".join(allowed)},
            )
        if path.startswith(_FUNCTION_PREFIX):
            self._invoke(path[len(_FUNCTION_PREFIX) :].rstrip("/"))
        elif path == "/healthz":
            self._send(200, b"OK", "text/plain")
        elif path == "/metrics":
            self._send(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        else:
            with self.metrics.lock:
                listing = [
                    {
                        "name": n,
                        "replicas": 1,
                        "availableReplicas": 1,
                        "invocationCount": self.metrics.counts.get(n, 0),
                        "image": f"faastraingym/{n}",
                    }
                    for n in FUNCTION_NAMES
                ]
            self._json(200, listing)

    def _invoke(self, name: str) -> None:
        body = self._read_body()
        try:
            spec = catalog.function(name)
        except catalog.UnknownFunctionError as exc:
            raise _Refusal(404, str(exc)) from exc
        try:
            faas.check_body(body)
        except faas.FunctionError as exc:
            raise _Refusal(exc.status, exc.message) from exc
        start = time.perf_counter()
        resp = faas.invoke(spec.module, faas.Event(body=body, headers=dict(self.headers.items())))
        seconds = time.perf_counter() - start
        self.metrics.observe(name, resp.status, seconds)
        framing = ("content-type", "content-length", "connection", "transfer-encoding")
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in framing}
        headers["X-Duration-Seconds"] = f"{seconds:.6f}"
        ctype = resp.headers.get("Content-Type", "text/plain")
        self._send(resp.status, resp.body.encode(), ctype, headers)

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
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), extra=headers)

    def send_response(self, code: int, message: str | None = None) -> None:
        """The status line with the standard reason phrase (never a message built from the request)."""
        super().send_response(code, None)


class GatewayServer(ThreadingHTTPServer):
    """A thread per connection, and a listen backlog for a DAG's fan-out (http.server's is 5)."""

    request_queue_size = 1024
    daemon_threads = True


def make_handler(
    metrics: GatewayMetrics, read_timeout: float = READ_TIMEOUT_S
) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a gateway that records into ``metrics``.

    Args:
        metrics: where invocations are recorded.
        read_timeout: seconds to wait for the client's next bytes, and for a whole request body.
    """
    attrs = {"metrics": metrics, "read_timeout": read_timeout, "timeout": read_timeout}
    return type("Handler", (GatewayHandler,), attrs)


def serve(
    host: str = "127.0.0.1", port: int = 8080, read_timeout: float = READ_TIMEOUT_S
) -> ThreadingHTTPServer:
    """Start serving in a background thread; returns the server (``shutdown()`` to stop)."""
    server = GatewayServer((host, port), make_handler(GatewayMetrics(), read_timeout))
    # A short poll interval: shutdown() returns within 50 ms instead of http.server's 0.5 s.
    loop = threading.Thread(target=server.serve_forever, args=(0.05,), name="ftg-gateway", daemon=True)
    loop.start()
    return server


def main() -> None:
    """``python -m workflows.gateway.server``: serve in the foreground (``--port 0`` picks a free port)."""
    ap = argparse.ArgumentParser(description="OpenFaaS-compatible gateway serving the four functions")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT_S,
        help="seconds to wait for a client's next bytes, and for a whole request body",
    )
    args = ap.parse_args()
    if not args.read_timeout > 0:
        ap.error("--read-timeout must be positive")
    server = GatewayServer((args.host, args.port), make_handler(GatewayMetrics(), args.read_timeout))
    print(f"gateway on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
