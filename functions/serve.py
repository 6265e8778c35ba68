"""Container entry point: serve one function's handler on :5000 behind the of-watchdog (http mode)."""

from __future__ import annotations

import importlib
import os

from ftg_common.faas import Context, Event, render_response


def app(environ, start_response):
    module = importlib.import_module(f"functions.{os.environ['FTG_FUNCTION']}.handler")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    event = Event(
        body=environ["wsgi.input"].read(length) if length else b"",
        headers={k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")},
        method=environ.get("REQUEST_METHOD", "POST"),
        path=environ.get("PATH_INFO", "/"),
    )
    resp = render_response(module.handle(event, Context(hostname=os.environ.get("HOSTNAME", "localhost"))))
    body = resp.body.encode()
    headers = [(k, v) for k, v in resp.headers.items() if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{resp.status} {'OK' if resp.status < 400 else 'ERROR'}", headers)
    return [body]


if __name__ == "__main__":
    from waitress import serve

    serve(app, host="127.0.0.1", port=5000)
