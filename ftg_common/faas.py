"""The OpenFaaS ``python3-http`` contract, in-process.

A handler module defines ``handle(event, context)``; ``event.body`` is raw bytes. Its return value is
turned into (status, headers, body text) exactly as the template's waitress server does: ``None`` is an
empty 200; a dict carries ``statusCode``/``body``/``headers``; a dict body is sent as JSON and any other
body is ``str()``-ed (which is why our handlers always return dict bodies).
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

FUNCTION_NAMES = ("rollout-collector", "reward-aggregator", "policy-updater", "policy-evaluator")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


@dataclass
class Event:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    query: dict[str, str] = field(default_factory=dict)
    path: str = "/"


@dataclass
class Context:
    hostname: str = "localhost"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class UnknownFunctionError(LookupError):
    pass


def module_name(function: str) -> str:
    if not _NAME_RE.fullmatch(function) or function not in FUNCTION_NAMES:
        raise UnknownFunctionError(f"no such function: {function!r} (known: {', '.join(FUNCTION_NAMES)})")
    return f"functions.{function.replace('-', '_')}.handler"


def load_handler(function: str) -> ModuleType:
    return importlib.import_module(module_name(function))


def render_response(result: Any) -> Response:
    if result is None:
        return Response(200, {}, "")
    if isinstance(result, dict):
        status = int(result.get("statusCode", 200))
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        body = result.get("body", "")
        if isinstance(body, dict):
            headers.setdefault("Content-Type", "application/json")
            return Response(status, headers, json.dumps(body))
        return Response(status, headers, str(body))
    return Response(200, {}, str(result))


def call(function: str, body: bytes, headers: dict[str, str] | None = None) -> Response:
    """Invoke a function's handler in this process through the python3-http contract."""
    handler = load_handler(function)
    return render_response(handler.handle(Event(body=body, headers=dict(headers or {})), Context()))
