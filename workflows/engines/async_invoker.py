"""Function calls through an OpenFaaS gateway's async route, results delivered to a callback server.

With ``FTG_GATEWAY_ASYNC=true`` the embedded engine sends every ``POST <gateway>/function/<name>`` as
``POST <gateway>/async-function/<name>``: the gateway answers 202 at once, queues the call, and POSTs the
result to the ``X-Callback-Url`` sent with it (OpenFaaS's queue-worker contract: the function's body,
``X-Call-Id``, ``X-Function-Status``, ``X-Duration-Seconds``). A ``withParam`` fan-out of 64 shards then
holds no connection per shard while they run: each call is one short POST, and the gateway's queue, not
the number of open connections, decides how many run at once.

**Which calls go async: all of them.** Every POST to ``/function/<name>`` made through this invoker
(fan-out children, the single steps after them, and the driver's direct calls) takes the async route;
only other requests (another method, another path) go synchronously. One rule is simpler to reason about
than a per-step choice, and a single step pays the same small cost (one extra local POST) as a fan-out
child.

The callback server runs in this process (``FTG_GATEWAY_CALLBACK_BIND``, an ephemeral port on 127.0.0.1
by default; on a cluster, bind an address the gateway can reach and set ``FTG_GATEWAY_CALLBACK_URL`` to
how the gateway reaches it). Each call gets its own callback path, ``/callback/<token>`` with a random
128-bit token registered *before* the request is sent, so:

* a result that arrives before the 202 has been read still finds its call;
* a POST from anyone who was not handed the URL cannot resolve a call (the token is unguessable);
* a duplicate callback (the queue delivers at least once) or one for a call the engine gave up on
  (timed out, cancelled) is answered 200 and ignored.

The gateway's ``X-Call-Id`` is kept with the call and returned in the response's headers.

Failures map onto the engine's retry strategy as a sync call's would: a 429 (the queue is full) or no
answer at all (connection refused, reset) fails the future with :class:`InvocationError`, a transport
error the retry strategy retries; any other refusal of the enqueue (404 unknown function, 413, 503) is
returned as the response, like a sync gateway's answer. The engine enforces timeouts itself: a call whose
callback never comes (a gateway that lost its in-memory queue) times out there and is retried.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from ftg_common.faas import Response
from workflows.engines.invokers import HttpInvoker, InvocationError

if TYPE_CHECKING:
    from ftg_common.settings import Settings

__all__ = ["AsyncHttpInvoker", "async_url", "from_settings"]

log = logging.getLogger(__name__)

CALLBACK_PREFIX = "/callback/"
_FUNCTION = "/function/"
_ASYNC_FUNCTION = "/async-function/"
MAX_CALLBACK_BODY = 64 * 2**20
"""Larger callback bodies are refused (413): function answers are small JSON (keys, not payloads)."""


def async_url(url: str) -> str | None:
    """``http://gw[/prefix]/function/<name>`` -> ``http://gw[/prefix]/async-function/<name>``.

    Returns:
        The async URL, or None for a URL that is not a plain function call (a sub-path, a query, no name):
        the gateway's async route takes the function name only.
    """
    parts = urlsplit(url)
    prefix, sep, name = parts.path.rpartition(_FUNCTION)
    if parts.scheme not in ("http", "https") or not sep or not name or "/" in name or parts.query:
        return None
    return urlunsplit((parts.scheme, parts.netloc, f"{prefix}{_ASYNC_FUNCTION}{name}", "", ""))


@dataclass
class _Pending:
    """A call waiting for its callback."""

    future: cf.Future[Response]
    call_id: str | None = None


# W3C trace context names are lower case by specification; the rest read best as HTTP usually spells them.
_LOWER_NAMES = frozenset({"traceparent", "tracestate", "baggage"})


def _canonical(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names in one spelling (``X-Call-Id``, ``traceparent``), whatever case the sender used.

    A callback client may send ``X-call-id`` (Python's urllib capitalizes names), and the response is a
    plain dict, so its readers should not have to guess.
    """
    out: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        out[low if low in _LOWER_NAMES else "-".join(p.capitalize() for p in low.split("-"))] = value
    return out


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


class _CallbackHandler(BaseHTTPRequestHandler):
    """Receives results; the server's ``invoker`` resolves the call named by the path's token."""

    server: _CallbackServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        """Quiet: one line per call would drown the driver's log."""

    def do_POST(self) -> None:
        """Answer first (so the gateway's queue worker is free), then resolve the call."""
        length_text = self.headers.get("Content-Length", "0")
        length = int(length_text) if length_text.isdigit() else -1
        token = self.path[len(CALLBACK_PREFIX) :] if self.path.startswith(CALLBACK_PREFIX) else ""
        if length < 0 or length > MAX_CALLBACK_BODY or not token:
            self.close_connection = True
            self._answer(413 if length > MAX_CALLBACK_BODY else 400)
            return
        body = self.rfile.read(length)
        self._answer(200)
        self.server.invoker._deliver(token, body, _canonical(dict(self.headers.items())))

    def _answer(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _CallbackServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a fan-out's results may all arrive at once
    invoker: AsyncHttpInvoker


class AsyncHttpInvoker:
    """Sends function calls to ``/async-function/<name>`` and completes them from the callbacks.

    Args:
        bind: ``host:port`` the callback server listens on; port 0 picks a free one.
        callback_url: the callback server's base URL as the gateway reaches it; by default
            ``http://<bound host>:<bound port>`` (which needs a bind host other than 0.0.0.0/::).
        http: sends the enqueue POSTs (and the few non-function requests); a new one by default.
    """

    def __init__(
        self, bind: str = "127.0.0.1:0", callback_url: str | None = None, http: HttpInvoker | None = None
    ) -> None:
        host, _, port = bind.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"callback bind address must be host:port, got {bind!r}")
        host = host.strip("[]")
        if callback_url is None and host in ("0.0.0.0", "::", ""):
            raise ValueError(f"binding {bind!r} needs a callback URL the gateway can reach")
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._closed = False
        self._server = _CallbackServer((host, int(port)), _CallbackHandler)
        self._server.invoker = self
        bound = self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.callback_base = (callback_url or f"http://{shown}:{bound}").rstrip("/")
        self._http = http or HttpInvoker()
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="ftg-callbacks", daemon=True
        )
        self._thread.start()

    @property
    def pending(self) -> int:
        """Calls sent and not yet answered, cancelled or timed out."""
        with self._lock:
            return len(self._pending)

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        """Queue the call at the gateway; the Future completes when its result is called back.

        Raises:
            ValueError: not an http(s) URL.
            RuntimeError: the invoker is closed.
        """
        target = async_url(url) if method.upper() == "POST" else None
        if target is None:  # not a function call: the gateway's sync answer is the answer
            return self._http.submit(url, method, headers, body, timeout)
        token = secrets.token_hex(16)
        future: cf.Future[Response] = cf.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the async invoker is closed")
            self._pending[token] = _Pending(future)
        # Left PENDING (not running), so the engine's cancel() on a timeout succeeds and frees the entry.
        future.add_done_callback(lambda _: self._forget(token))
        sent = {
            **{k: v for k, v in headers.items() if k.lower() != "x-callback-url"},
            "X-Callback-Url": f"{self.callback_base}{CALLBACK_PREFIX}{token}",
        }
        try:
            post = self._http.submit(target, "POST", sent, body, timeout)
        except Exception:
            self._forget(token)
            raise
        post.add_done_callback(lambda f: self._enqueued(token, target, f))
        return future

    def _forget(self, token: str) -> None:
        with self._lock:
            self._pending.pop(token, None)

    def _enqueued(self, token: str, url: str, post: cf.Future[Response]) -> None:
        """The answer to the enqueue POST: a 202 waits for the callback, anything else ends the call."""
        with self._lock:
            entry = self._pending.get(token)
        if entry is None:  # already answered (the callback won the race), cancelled or closed
            return
        error: BaseException | None = None
        answer: Response | None = None
        try:
            resp = post.result()
        except BaseException as exc:  # InvocationError from the HTTP invoker, or its pool shutting down
            error = exc if isinstance(exc, InvocationError) else InvocationError(f"POST {url}: {exc}")
        else:
            if resp.status == 202:
                entry.call_id = _header(resp.headers, "X-Call-Id")
                return
            if resp.status == 429:  # retriable by the engine's strategy, as a transport error is
                error = InvocationError(f"POST {url}: 429, the async queue is full: {resp.body[:200]}")
            else:
                answer = resp
        self._forget(token)
        _settle(entry.future, answer, error)

    def _deliver(self, token: str, body: bytes, headers: dict[str, str]) -> None:
        """A callback arrived: complete its call (a duplicate or a late one is ignored)."""
        with self._lock:
            entry = self._pending.pop(token, None)
        if entry is None:
            log.debug("callback for an unknown or finished call (%s...) ignored", token[:8])
            return
        status_text = _header(headers, "X-Function-Status") or ""
        if not status_text.isdigit():
            error = InvocationError(f"callback without a valid X-Function-Status: {status_text!r}")
            _settle(entry.future, None, error)
            return
        if entry.call_id is not None and _header(headers, "X-Call-Id") is None:
            headers["X-Call-Id"] = entry.call_id
        text = body.decode("utf-8", errors="replace")
        _settle(entry.future, Response(int(status_text), headers, text), None)

    def close(self) -> None:
        """Stop the callback server and fail the calls still waiting; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting, self._pending = list(self._pending.values()), {}
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        for entry in waiting:
            _settle(entry.future, None, InvocationError("the async invoker was closed during the call"))
        self._http.close()

    def __enter__(self) -> AsyncHttpInvoker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle(future: cf.Future[Response], value: Response | None, error: BaseException | None) -> None:
    """Complete ``future`` unless it is already done (cancelled by the engine's timeout, say)."""
    with contextlib.suppress(cf.InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]


def from_settings(settings: Settings) -> AsyncHttpInvoker:
    """The invoker ``FTG_GATEWAY_CALLBACK_BIND`` and ``FTG_GATEWAY_CALLBACK_URL`` describe."""
    return AsyncHttpInvoker(bind=settings.gateway_callback_bind, callback_url=settings.gateway_callback_url)
