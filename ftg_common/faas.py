"""The OpenFaaS ``python3-http`` contract, both sides.

A handler module defines ``handle(event, context)``; ``event.body`` is raw bytes. Handlers answer through
:func:`serve`, which validates the body, runs the work and maps every failure to a JSON error. Callers
reach a handler in this process (:func:`invoke`, :func:`call`) or over WSGI (:func:`wsgi_app`, what a
function image serves behind the of-watchdog). Either way the handler's return value becomes
(status, headers, body text) exactly as the template's server does it (:func:`render_response`).
"""

from __future__ import annotations

import importlib
import json
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError

from ftg_common import catalog, runtime
from ftg_common.errors import BadRequest, Conflict, FunctionError, UnknownEnvError
from ftg_common.ids import InvalidIdError
from ftg_common.meta.base import RunNotFoundError
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import RunRef
from ftg_common.store.base import InvalidKeyError, KeyNotFoundError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "BadRequest",
    "Conflict",
    "Context",
    "Event",
    "FunctionError",
    "Response",
    "call",
    "invoke",
    "render_response",
    "serve",
    "wsgi_app",
]

log = logging.getLogger("ftg.function")

Req = TypeVar("Req", bound=RunRef)
Res = TypeVar("Res", bound=BaseModel)

_JSON = "application/json"

# Library errors that mean "bad input" even though the work raised them: (type, status, field).
_INPUT_ERRORS: tuple[tuple[type[Exception], int, str | None], ...] = (
    (KeyNotFoundError, 400, "key"),
    (InvalidIdError, 400, None),
    (InvalidKeyError, 400, None),
    (UnknownEnvError, 400, "env_id"),
    (RunNotFoundError, 400, "run_id"),
)


@dataclass
class Event:
    """One request as the template hands it to ``handle``."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    query: dict[str, str] = field(default_factory=dict)
    path: str = "/"


@dataclass
class Context:
    """The template's per-call context; only the hostname is provided."""

    hostname: str = "localhost"


@dataclass(frozen=True)
class Response:
    """A rendered response: what went over the wire, or would have."""

    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def render_response(result: Any) -> Response:
    """Turn a handler's return value into a response, as the python3-http template does.

    ``None`` is an empty 200; a dict carries ``statusCode``/``body``/``headers``; a dict body is sent as
    JSON and any other body is ``str()``-ed (which is why our handlers always return dict bodies).
    """
    if result is None:
        return Response(200, {}, "")
    if isinstance(result, dict):
        status = int(result.get("statusCode", 200))
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        body = result.get("body", "")
        if isinstance(body, dict):
            headers.setdefault("Content-Type", _JSON)
            return Response(status, headers, json.dumps(body))
        return Response(status, headers, str(body))
    return Response(200, {}, str(result))


# --------------------------------------------------------------------------- the handler side


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "body": body, "headers": {"Content-Type": _JSON, **(headers or {})}}


def _error(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return _answer(status, body)


def _parse(body: bytes, model: type[Req]) -> Req:
    """The request body validated as ``model``; BadRequest naming the first field at fault."""
    try:
        raw = json.loads(body or b"")
    except (ValueError, RecursionError) as exc:  # ValueError covers bad JSON and bad UTF-8
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = exc.errors()
        where = [".".join(str(p) for p in e["loc"]) for e in problems]
        detail = "; ".join(f"{w or '<body>'}: {e['msg']}" for w, e in zip(where, problems, strict=True))
        raise BadRequest(f"invalid request: {detail}", where[0] or None) from exc


def _failure(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, FunctionError):
        return _error(exc.status, exc.message, exc.field)
    for kind, status, field_name in _INPUT_ERRORS:
        if isinstance(exc, kind):
            return _error(status, str(exc), field_name)
    # The contract is a JSON body even for our own bugs; the traceback goes to the log, not the caller.
    log.error("function failed", exc_info=exc)
    return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def serve(event: Event, model: type[Req], work: Callable[[Req, FunctionContext], Res]) -> dict[str, Any]:
    """Serve one python3-http request with ``work``.

    Validates ``event.body`` as ``model``, builds the run's context (config checked against the
    request's digest, store clients, a started clock), runs ``work(req, ctx)`` and fills the result's
    ``seconds`` from the context's clock.

    Args:
        event: the request; only POST is served.
        model: the function's request model (a run reference).
        work: the function's work; it raises :class:`FunctionError` for failures it means.

    Returns:
        The handler's return value for the template: 200 with the result as a JSON object, or a JSON
        ``{"error", "field"?}`` with 400 (bad input, unknown run, missing object), 405 (not POST), 409
        (config digest or run state mismatch) or 500 (a bug; never a stack trace).
    """
    if event.method != "POST":
        refusal = {"error": f"method {event.method} not allowed; POST a JSON object"}
        return _answer(405, refusal, {"Allow": "POST"})
    try:
        req = _parse(event.body, model)
        ctx = runtime.context_for(req)
        result = work(req, ctx)
        if "seconds" in type(result).model_fields:
            result = result.model_copy(update={"seconds": ctx.clock.seconds()})
        return _answer(200, result.model_dump(mode="json"))
    except Exception as exc:
        return _failure(exc)


# --------------------------------------------------------------------------- the caller side


def invoke(module: str, event: Event, context: Context | None = None) -> Response:
    """Call handler module ``module``'s ``handle`` in this process and render its answer.

    A handler that raises (or cannot be imported) is answered with a 500 and a text body, as the
    template's server would, so a function's bug never takes its caller down.
    """
    try:
        handler = importlib.import_module(module)
        return render_response(handler.handle(event, context or Context()))
    except Exception as exc:
        log.error("handler %s raised", module, exc_info=exc)
        return Response(500, {"Content-Type": "text/plain"}, f"{type(exc).__name__}: {exc}")


def call(function: str, body: bytes, headers: dict[str, str] | None = None) -> Response:
    """POST ``body`` to the catalog function named ``function``, in this process.

    Raises:
        UnknownFunctionError: ``function`` is not in the catalog (a gateway answers 404).
    """
    return invoke(catalog.function(function).module, Event(body=body, headers=dict(headers or {})))


def _wsgi_event(environ: WSGIEnvironment) -> Event:
    try:
        length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        length = 0
    headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
    # WSGI moves these two out of the HTTP_ namespace.
    for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        if environ.get(key):
            headers[name] = environ[key]
    return Event(
        body=environ["wsgi.input"].read(length) if length else b"",
        headers=headers,
        method=environ.get("REQUEST_METHOD", "POST"),
        query=dict(parse_qsl(environ.get("QUERY_STRING", ""))),
        path=environ.get("PATH_INFO") or "/",
    )


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} {'OK' if status < 400 else 'Error'}"


def wsgi_app(module: str) -> WSGIApplication:
    """A WSGI application serving handler module ``module`` (what a function image runs).

    The module is imported now, so a broken image fails at start rather than on its first request.
    """
    importlib.import_module(module)
    context = Context(hostname=socket.gethostname())

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        resp = invoke(module, _wsgi_event(environ), context)
        body = resp.body.encode()
        headers = [(k, v) for k, v in resp.headers.items() if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(_status_line(resp.status), headers)
        return [body]

    return app
