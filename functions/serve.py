"""Container entry point: serve one function's handler on :5000 behind the of-watchdog (http mode).
The image's FTG_FUNCTION names the handler folder, e.g. ``rollout_collector``."""

from __future__ import annotations

import importlib
import socket
from functools import lru_cache
from types import ModuleType

from ftg_common.faas import Context, Event, render_response
from ftg_common.settings import get_settings


@lru_cache(maxsize=1)
def _handler() -> ModuleType:
    name = get_settings().function
    if not name or not name.replace("_", "").isalnum():
        raise SystemExit(f"FTG_FUNCTION must name a handler folder under functions/, got {name!r}")
    return importlib.import_module(f"functions.{name}.handler")


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    event = Event(
        body=environ["wsgi.input"].read(length) if length else b"",
        headers={k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")},
        method=environ.get("REQUEST_METHOD", "POST"),
        path=environ.get("PATH_INFO", "/"),
    )
    resp = render_response(_handler().handle(event, Context(hostname=socket.gethostname())))
    body = resp.body.encode()
    headers = [(k, v) for k, v in resp.headers.items() if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{resp.status} {'OK' if resp.status < 400 else 'ERROR'}", headers)
    return [body]


if __name__ == "__main__":
    from waitress import serve

    _handler()  # fail fast, and pay the imports before the first request
    serve(app, host="127.0.0.1", port=5000)
