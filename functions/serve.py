"""Container entry point: serve one function's handler over HTTP with waitress (python3-http contract).

    python -m functions.serve [--host 127.0.0.1] [--port 5000] [--threads 4] [--exit-with-stdin]

In an image it runs behind the of-watchdog (http mode, ``upstream_url=http://127.0.0.1:5000``); the
local gateway (:mod:`workflows.gateway.replicas`) runs the same command as one replica, with
``--port 0`` (a free port, announced on stdout) and ``--exit-with-stdin``. ``FTG_FUNCTION`` names the
function, by its handler folder (``rollout_collector``) or its catalog name (``rollout-collector``).

Once the handler is imported and the socket listens, one line goes to stdout:
``listening on http://HOST:PORT``. ``GET /_/health`` answers ``200 OK`` without calling the handler
(the of-watchdog's health path), so a readiness probe never runs the function.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING


class _ImportedOnFirstUse(types.ModuleType):
    """Stands in for a module during start-up; the first attribute read imports the real one."""

    def __getattr__(self, attr: str) -> object:
        return getattr(importlib.import_module(self.__name__), attr)


@contextmanager
def _not_executed(name: str) -> Iterator[None]:
    """Let the imports in the block bind ``name`` without executing it; later imports get the real one.

    pydantic-settings imports asyncio at its top for ``CliApp`` (async commands), which no function
    uses; executing asyncio (it pulls in ssl, selectors and concurrent.futures) is about 15 ms of every
    replica's cold start. Its name stays bound to a stand-in that imports asyncio on first use.
    """
    if name in sys.modules:
        yield
        return
    stand_in = _ImportedOnFirstUse(name)
    stand_in.__spec__ = importlib.util.find_spec(name)  # so `import name` takes it as initialised
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


with _not_executed("asyncio"):
    from ftg_common.catalog import FUNCTIONS
    from ftg_common.faas import wsgi_app
    from ftg_common.settings import get_settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

DEFAULT_PORT = 5000
HEALTH_PATH = "/_/health"
READY_PREFIX = "listening on http://"


@lru_cache(maxsize=1)
def _handler() -> WSGIApplication:
    """The WSGI app of the function named by the settings; exits if it names none of the catalog's."""
    name = get_settings().function
    for spec in FUNCTIONS:
        if name in (spec.folder, spec.name):
            return wsgi_app(spec.module)
    known = ", ".join(spec.folder for spec in FUNCTIONS)
    raise SystemExit(f"FTG_FUNCTION must name a function ({known}), got {name!r}")


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """WSGI entry: the health path, or the configured function's app."""
    if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"OK"]
    return _handler()(environ, start_response)


def _exit_when_stdin_closes() -> None:
    # The gateway holds the other end of stdin: when it dies, even by SIGKILL, the pipe closes and this
    # replica must not outlive it (an orphan would keep its port and memory forever).
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    """Import the handler, bind, announce the address on stdout, serve until killed."""
    ap = argparse.ArgumentParser(description="serve one FaaSTrainGym function (python3-http contract)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    ap.add_argument("--threads", type=int, default=4, help="waitress worker threads (concurrent calls)")
    ap.add_argument(
        "--exit-with-stdin", action="store_true", help="exit when stdin closes (the parent is gone)"
    )
    args = ap.parse_args(argv)

    from waitress import create_server

    _handler()  # fail fast, and pay the imports before the first request
    # channel_timeout: an idle keep-alive connection from the gateway stays open this long; the gateway
    # drops pooled connections well before that, so it never writes into one waitress has closed.
    server = create_server(app, host=args.host, port=args.port, threads=args.threads, channel_timeout=300)
    port = getattr(server, "effective_port", args.port)
    print(f"{READY_PREFIX}{args.host}:{port}", flush=True)
    if args.exit_with_stdin:
        threading.Thread(target=_exit_when_stdin_closes, name="stdin-watch", daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
