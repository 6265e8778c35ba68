"""A fault-injecting HTTP proxy in front of a function gateway: a test tool, not shipped behaviour.

    python -m benchmarks.reliability.faultproxy --upstream http://127.0.0.1:8080 --port 8081 --p 0.2

Each ``POST /function/<name>`` fails with probability ``p``, in one of four ways:

- **before** the function ran (the call never reaches the gateway): the connection is reset, or the
  proxy answers 503;
- **after** it ran (the call was forwarded and answered, so its writes are in the store): the response
  is dropped by resetting the connection, or the proxy answers 502 instead.

``before_share`` of the faults happen before (half by default), and each side splits half and half
between its two kinds. Every other request (and every other path) is relayed unchanged.

Decisions are seeded and keyed on the request rather than drawn in arrival order: the k-th time a given
request arrives, its fate is a hash of (seed, request, k), where the request is its path and, for a JSON
body naming a run, the fields that identify the call (run, iteration, shard, mode, version), so timings
inside a body (an aggregator's shard results carry their ``seconds``) do not change the draw. Concurrent
calls therefore get the same faults whatever the thread timing, a run with the same ids gets the same
faults every time, and a retry (k + 1) is an independent draw.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import socket
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["AFTER_502", "AFTER_RESET", "BEFORE_503", "BEFORE_RESET", "PASS", "FaultProxy"]

PASS, BEFORE_RESET, BEFORE_503, AFTER_RESET, AFTER_502 = (
    "pass",
    "before-reset",
    "before-503",
    "after-reset",
    "after-502",
)
KINDS = (PASS, BEFORE_RESET, BEFORE_503, AFTER_RESET, AFTER_502)
_IDENTITY = ("run_id", "iteration", "shard", "mode", "version")
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection", "upgrade"}
)


class FaultProxy:
    """The proxy: start it, point the engine's gateway at :attr:`url`, read :attr:`counts` afterwards.

    Args:
        upstream: base URL of the gateway (``http://host:port``).
        p: probability that a function call fails.
        seed: seeds every decision.
        before_share: the fraction of faults injected before forwarding.
        host: interface to listen on.
        port: port to listen on (0: any free one).
        upstream_timeout: seconds to wait for the gateway's answer.
    """

    def __init__(
        self,
        upstream: str,
        p: float = 0.2,
        seed: int = 0,
        before_share: float = 0.5,
        host: str = "127.0.0.1",
        port: int = 0,
        upstream_timeout: float = 600.0,
    ) -> None:
        if not 0.0 <= p <= 1.0 or not 0.0 <= before_share <= 1.0:
            raise ValueError(f"p ({p}) and before_share ({before_share}) must be in [0, 1]")
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.p = p
        self.seed = seed
        self.before_share = before_share
        self.upstream_timeout = upstream_timeout
        self.counts: Counter[str] = Counter()  # decisions by kind
        self.by_function: Counter[tuple[str, str]] = Counter()  # (function, kind)
        self.upstream_errors = 0  # forwarded calls the gateway did not answer
        self._seen: Counter[bytes] = Counter()
        self._lock = threading.Lock()
        self._server = _Server((host, port), _handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the proxy."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        """Serve on a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving (if started) and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()  # blocks until serve_forever returns: only once it runs
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decide(self, path: str, body: bytes) -> str:
        """The fate of this request: one of :data:`KINDS`; counted."""
        request = hashlib.sha256(path.encode() + b"\0" + _identity(body)).digest()
        with self._lock:
            self._seen[request] += 1
            k = self._seen[request]
        draw = hashlib.sha256(struct.pack(">qQ", self.seed, k) + request).digest()
        u = int.from_bytes(draw[:8], "big") / 2**64  # uniform in [0, 1)
        if u >= self.p:
            kind = PASS
        else:
            v = u / self.p  # uniform in [0, 1) again, given a fault
            if v < self.before_share:
                kind = BEFORE_RESET if v < self.before_share / 2 else BEFORE_503
            else:
                kind = AFTER_RESET if v < (1 + self.before_share) / 2 else AFTER_502
        function = path.rsplit("/", 1)[-1]
        with self._lock:
            self.counts[kind] += 1
            self.by_function[(function, kind)] += 1
        return kind

    @property
    def faults(self) -> int:
        """Faults injected so far."""
        return sum(n for kind, n in self.counts.items() if kind != PASS)

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request to the gateway; (status, headers, body) of its answer.

        Raises:
            OSError: the gateway did not answer (http.client errors are OSErrors or HTTPExceptions).
            http.client.HTTPException: the gateway's answer was not valid HTTP.
        """
        conn = http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=self.upstream_timeout
        )
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP], data
        finally:
            conn.close()


def _identity(body: bytes) -> bytes:
    """What identifies a call: its identifying JSON fields when it names a run, else the whole body."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body
    if not isinstance(obj, dict) or "run_id" not in obj:
        return body
    return json.dumps({k: obj[k] for k in _IDENTITY if k in obj}, sort_keys=True).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets are the point; a client that went away is not news


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            pass

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout makes close() send RST: the client sees "connection reset".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self._answer(status, [("Content-Type", "application/json")], body)

        def _relay(self, faults: bool) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            kind = proxy.decide(self.path, body) if faults else PASS
            if kind == BEFORE_RESET:
                self._reset()
                return
            if kind == BEFORE_503:
                self._error(503, "fault injected before forwarding")
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                status, out_headers, out_body = proxy.forward(self.command, self.path, headers, body)
            except (OSError, http.client.HTTPException) as exc:
                with proxy._lock:
                    proxy.upstream_errors += 1
                self._error(502, f"upstream: {type(exc).__name__}: {exc}")
                return
            if kind == AFTER_RESET:
                self._reset()
            elif kind == AFTER_502:
                self._error(502, "fault injected after the function ran")
            else:
                self._answer(status, out_headers, out_body)

        def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
            self._relay(faults=self.path.startswith("/function/"))

        def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
            self._relay(faults=False)

    return Handler


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.reliability.faultproxy``: serve in the foreground."""
    ap = argparse.ArgumentParser(description="Fault-injecting proxy in front of a function gateway")
    ap.add_argument("--upstream", required=True, help="the gateway, e.g. http://127.0.0.1:8080")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--p", type=float, default=0.2, help="probability that a function call fails")
    ap.add_argument("--before-share", type=float, default=0.5, help="fraction of faults before forwarding")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    proxy = FaultProxy(args.upstream, args.p, args.seed, args.before_share, args.host, args.port)
    print(f"fault proxy on {proxy.url} -> {args.upstream} (p={args.p}, seed={args.seed})", flush=True)
    try:
        proxy._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy._server.server_close()
        print(json.dumps(dict(proxy.counts)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
