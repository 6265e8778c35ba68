"""Small HTTP servers that tests run in this process: a free port on 127.0.0.1, a daemon thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_in_thread(
    handler: type[BaseHTTPRequestHandler], server_cls: type[ThreadingHTTPServer] = ThreadingHTTPServer
) -> ThreadingHTTPServer:
    """A ``server_cls`` on a free port, serving ``handler`` in a daemon thread; :func:`stop` ends it."""
    server = server_cls(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def stop(server: ThreadingHTTPServer) -> None:
    """Stop serving and close the socket."""
    server.shutdown()
    server.server_close()
