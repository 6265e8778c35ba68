"""The OpenFaaS ``python3-http`` contract, both sides.

A handler module defines ``handle(event, context)``; ``event.body`` is raw bytes. Handlers answer through
:func:`serve`, which validates the body, runs the work and maps every failure to a JSON error. Callers
reach a handler in this process (:func:`invoke`, :func:`call`) or over WSGI (:func:`wsgi_app`, what a
function image serves behind the of-watchdog). Either way the handler's return value becomes
(status, headers, body text) exactly as the template's server does it (:func:`render_response`).

Bodies are bounded before they are parsed (:func:`check_body`): at most :data:`MAX_BODY_BYTES` bytes
(413) and :data:`MAX_JSON_DEPTH` levels of nested arrays and objects (400), so no body can exhaust the
parser's recursion. Only strict JSON is accepted (no ``NaN``/``Infinity`` literals), and only strict
JSON is emitted: a result holding a non-finite number is the function's bug and is answered 500 with a
JSON error, never a body that is not JSON.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError

from ftg_common import catalog, runtime, tracing
from ftg_common.errors import BadRequest, Conflict, FunctionError, UnknownEnvError
from ftg_common.ids import InvalidIdError
from ftg_common.meta.base import RunNotFoundError
from ftg_common.runtime import FunctionContext
from ftg_common.schemas import RunRef
from ftg_common.store.base import InvalidKeyError, KeyNotFoundError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "BadRequest",
    "BodyTooLarge",
    "Conflict",
    "Context",
    "Event",
    "FunctionError",
    "Response",
    "call",
    "check_body",
    "invoke",
    "render_response",
    "serve",
    "wsgi_app",
]

log = logging.getLogger("ftg.function")

Req = TypeVar("Req", bound=RunRef)
Res = TypeVar("Res", bound=BaseModel)

_JSON = "application/json"

MAX_BODY_BYTES = 8 * 2**20
"""Largest request body served (the largest real one, an aggregator's fan-in, is far smaller)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects in a request body (real bodies nest at most 3 levels)."""
_MAX_PROBLEMS = 5  # validation problems listed in a 400's message

# Library errors that mean "bad input" even though the work raised them: (type, status, field).
_INPUT_ERRORS: tuple[tuple[type[Exception], int, str | None], ...] = (
    (KeyNotFoundError, 400, "key"),
    (InvalidIdError, 400, None),
    (InvalidKeyError, 400, None),
    (UnknownEnvError, 400, "env_id"),
    (RunNotFoundError, 400, "run_id"),
)


class BodyTooLarge(FunctionError):
    """The request body is larger than :data:`MAX_BODY_BYTES` (413)."""

    status = 413


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

    A dict body that is not strict JSON (a NaN or infinity, or a value JSON cannot hold) is answered
    500 with a JSON error instead: what goes over the wire always parses.
    """
    if result is None:
        return Response(200, {}, "")
    if isinstance(result, dict):
        status = int(result.get("statusCode", 200))
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        body = result.get("body", "")
        if isinstance(body, dict):
            headers.setdefault("Content-Type", _JSON)
            try:
                return Response(status, headers, json.dumps(body, allow_nan=False))
            except (ValueError, TypeError) as exc:
                log.error("handler answered a body that is not JSON", exc_info=exc)
                error = {"error": f"internal error: the function's answer is not valid JSON: {exc}"}
                return Response(500, {**headers, "Content-Type": _JSON}, json.dumps(error))
        return Response(status, headers, str(body))
    return Response(200, {}, str(result))


# --------------------------------------------------------------------------- the handler side


def _answer(status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "body": body, "headers": {"Content-Type": _JSON, **(headers or {})}}


def _error(status: int, message: str, field: str | None = None, key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    if key is not None:  # the object-store key at fault: missing (400) or corrupt (422)
        body["key"] = key
    return _answer(status, body)


# A JSON string literal (escapes included); what remains outside them is structure and scalars.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def _too_deep(body: bytes) -> bool:
    """Whether ``body`` nests arrays and objects deeper than :data:`MAX_JSON_DEPTH` levels.

    Counts brackets outside string literals, without parsing (so without recursion): the running depth
    is the cumulative sum of +1 per opening and -1 per closing bracket.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    if brackets.count(b"[") + brackets.count(b"{") <= MAX_JSON_DEPTH:
        return False
    import numpy as np  # only for bodies with many brackets; every function imports numpy anyway

    step = np.zeros(256, dtype=np.int8)
    step[list(b"[{")] = 1
    step[list(b"]}")] = -1
    depth = np.cumsum(step[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int32)
    return int(depth.max()) > MAX_JSON_DEPTH


def check_body(body: bytes) -> None:
    """Refuse a request body too large or too deeply nested to parse safely.

    Raises:
        BodyTooLarge: more than :data:`MAX_BODY_BYTES` bytes (413).
        BadRequest: arrays and objects nested deeper than :data:`MAX_JSON_DEPTH` levels (400).
    """
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"request body is {len(body)} bytes; at most {MAX_BODY_BYTES} are served")
    if _too_deep(body):
        raise BadRequest(f"request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _describe(exc: ValidationError) -> tuple[str, str | None]:
    """(the problems of ``exc``, one per field, the first few only; the first field at fault)."""
    problems = exc.errors(include_input=False, include_url=False)
    where = [".".join(str(p) for p in e["loc"]) for e in problems]
    shown = [f"{w or '<body>'}: {e['msg']}" for w, e in zip(where, problems, strict=True)][:_MAX_PROBLEMS]
    if len(problems) > _MAX_PROBLEMS:
        shown.append(f"and {len(problems) - _MAX_PROBLEMS} more")
    return "; ".join(shown), (where[0] or None) if where else None


def _parse(body: bytes | str | None, model: type[Req]) -> Req:
    """The request body validated as ``model``; BadRequest naming the first field at fault.

    Raises:
        BodyTooLarge: see :func:`check_body`.
        BadRequest: too deep, not strict JSON (bad syntax or UTF-8, ``NaN``/``Infinity``, integers of
            more than 4300 digits), not an object, or not a valid ``model``.
    """
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else (body or b"")
    check_body(data)
    try:
        # pydantic's own JSON parser validates in one pass, several times faster than json.loads and
        # then the model. It refuses all json.loads refuses but for NaN/Infinity literals, which no
        # request field accepts (allow_inf_nan=False): every refusal is re-derived below, so the 400
        # says the same whichever parser saw the body first.
        return model.model_validate_json(data)
    except ValidationError:
        pass
    try:
        raw = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # ValueError covers bad JSON and bad UTF-8
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        detail, field_name = _describe(exc)
        raise BadRequest(f"invalid request: {detail}", field_name) from exc


def _failure(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, FunctionError):  # CorruptObjectError (422) included: it names its key
        return _error(exc.status, exc.message, exc.field, exc.key)
    for kind, status, field_name in _INPUT_ERRORS:
        if isinstance(exc, kind):
            key = exc.key if isinstance(exc, KeyNotFoundError) else None
            if isinstance(exc, UnknownEnvError):  # env_id, env_kwargs, ...: the field it names
                field_name = exc.field
            return _error(status, str(exc), field_name, key)
    # The contract is a JSON body even for our own bugs; the traceback goes to the log, not the caller.
    log.error("function failed", exc_info=exc)
    if isinstance(exc, ValidationError):  # e.g. a result holding a non-finite number: never sent as NaN
        return _error(500, f"internal error: invalid {exc.title}: {_describe(exc)[0]}")
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
        (config digest or run state mismatch), 413 (body too large), 422 (a stored object is corrupt:
        ``key`` names it, as it does a missing object's) or 500 (a bug, such as a result
        holding a non-finite number; never a stack trace, never a body that is not JSON).
    """
    if event.method != "POST":
        refusal = {"error": f"method {event.method} not allowed; POST a JSON object"}
        return _answer(405, refusal, {"Allow": "POST"})
    name = _function_name(work)
    if not tracing.configure(name):
        return _serve(event, model, work)
    with tracing.span(f"function {name}", headers=event.headers, kind="server") as span:
        answer = _serve(event, model, work)
        if span is not None:
            span.set_attribute("http.response.status_code", int(answer["statusCode"]))
        return answer


@functools.lru_cache(maxsize=64)
def _function_name(work: Callable[..., Any]) -> str:
    """The catalog name of the function whose handler module defines ``work`` (else the module)."""
    module = getattr(work, "__module__", "")
    return next((spec.name for spec in catalog.FUNCTIONS if spec.module == module), module)


def _serve(event: Event, model: type[Req], work: Callable[[Req, FunctionContext], Res]) -> dict[str, Any]:
    try:
        req = _parse(event.body, model)
        ctx = runtime.context_for(req)
        result = work(req, ctx)
        seconds = ctx.clock.seconds()
        if "seconds" in type(result).model_fields:
            if type(result).model_config.get("frozen"):
                result = result.model_copy(update={"seconds": seconds})
            else:  # the work's own fresh result: filled in place, no copy
                result.seconds = seconds  # type: ignore[attr-defined]
        return _answer(200, _result_body(result))
    except Exception as exc:
        return _failure(exc)


def _result_body(result: BaseModel) -> str | dict[str, Any]:
    """``result`` as the answer's body: its JSON text, or a dict for :func:`render_response` to write.

    A model that writes non-finite numbers as ``NaN``/``Infinity`` literals (the wire messages,
    :mod:`ftg_common.schemas`) is written by pydantic's own serializer, several times faster than
    building a dict and ``json.dumps``; text holding either word goes the slow way, where
    render_response answers 500 for a non-finite number (a word inside a string is written as usual).
    A model that writes them as ``null`` (pydantic's default) would hide them, so it goes the slow way.
    """
    if type(result).model_config.get("ser_json_inf_nan") == "constants":
        text = result.model_dump_json()
        if "NaN" not in text and "Infinity" not in text:
            return text
    return result.model_dump(mode="json")


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
        # Read at most one byte past the limit: enough for serve to answer 413.
        length = min(max(0, int(environ.get("CONTENT_LENGTH") or 0)), MAX_BODY_BYTES + 1)
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
