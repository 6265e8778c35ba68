"""A small OpenFaaS-compatible gateway for one machine: the functions served over real HTTP.

    python -m workflows.gateway.server --port 8080

Routes (the subset of the OpenFaaS gateway API the project uses): ``POST /function/<name>`` (sync),
``GET /healthz``, ``GET /system/functions`` and Prometheus ``GET /metrics`` with
``gateway_function_invocation_total{function_name,code}``, ``gateway_functions_seconds`` and
``gateway_service_count``. It serves every function of :mod:`ftg_common.catalog`; handlers run in this
process through the python3-http adapter (:func:`ftg_common.faas.invoke`), so a handler that raises is a 500.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
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

MAX_BODY = 8 * 2**20


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


def make_handler(metrics: GatewayMetrics) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a gateway that records into ``metrics``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:  # quiet: metrics carry the signal
            pass

        def _send(
            self, code: int, body: bytes, ctype: str = "application/json", extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: object) -> None:
            self._send(code, json.dumps(obj).encode())

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, b"OK", "text/plain")
            elif self.path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/system/functions":
                with metrics.lock:
                    self._json(
                        200,
                        [
                            {
                                "name": n,
                                "replicas": 1,
                                "availableReplicas": 1,
                                "invocationCount": metrics.counts.get(n, 0),
                                "image": f"faastraingym/{n}",
                            }
                            for n in FUNCTION_NAMES
                        ],
                    )
            else:
                self._json(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            if not self.path.startswith("/function/"):
                self._json(404, {"error": f"no route {self.path}"})
                return
            name = self.path[len("/function/") :].split("?", 1)[0].rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(413, {"error": f"body larger than {MAX_BODY} bytes"})
                return
            body = self.rfile.read(length)
            try:
                spec = catalog.function(name)
            except catalog.UnknownFunctionError as exc:
                self._json(404, {"error": str(exc)})
                return
            start = time.perf_counter()
            resp = faas.invoke(spec.module, faas.Event(body=body, headers=dict(self.headers.items())))
            seconds = time.perf_counter() - start
            metrics.observe(name, resp.status, seconds)
            framing = ("content-type", "content-length")  # _send writes these itself
            headers = {k: v for k, v in resp.headers.items() if k.lower() not in framing}
            headers["X-Duration-Seconds"] = f"{seconds:.6f}"
            ctype = resp.headers.get("Content-Type", "text/plain")
            self._send(resp.status, resp.body.encode(), ctype, headers)

    return Handler


def serve(host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """Start serving in a background thread; returns the server (``shutdown()`` to stop)."""
    server = ThreadingHTTPServer((host, port), make_handler(GatewayMetrics()))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ftg-gateway", daemon=True).start()
    return server


def main() -> None:
    """``python -m workflows.gateway.server``: serve in the foreground."""
    ap = argparse.ArgumentParser(description="OpenFaaS-compatible gateway serving the four functions")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(GatewayMetrics()))
    print(f"gateway on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
