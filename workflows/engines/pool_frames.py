"""The warm pool's wire format: calls and answers as plain byte frames, never pickles.

A worker's pipe carries length-delimited frames (``Connection.send_bytes``/``recv_bytes``). Pickling a
``Response`` dataclass and the request tuple costs tens of microseconds on each side of every call once
a function body has left the caches cold; a frame is a few byte joins. It also keeps to the rule that
nothing crossing a process boundary is unpickled.

A NUL byte separates the fields: it cannot occur in a module name or in JSON text, and the one field
that may hold anything (a body) comes last.

- parent -> worker: ``Q`` module NUL headers-json NUL body, a call; ``F`` then ``1`` or ``0``, module
  NUL headers-json NUL part NUL part ..., a follow-on call (:class:`FollowOn`); the empty frame tells
  the worker to stop; ``N`` wakes it to poll its pipe for a call about to come;
- worker -> parent: ``R<pid>`` once imported and ready; ``A<status>`` NUL headers-json NUL body for
  each call, the body UTF-8 (``surrogatepass``, so any ``str`` a handler returned survives); ``S``
  for a follow-on it did not run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

from ftg_common.faas import Response
from workflows.engines.base import compact_json

__all__ = [
    "SKIPPED",
    "NUDGE",
    "NUDGE_REQUEST",
    "STOP",
    "Call",
    "FollowOn",
    "FrameError",
    "decode_answer",
    "decode_request",
    "encode_answer",
    "encode_follow_on",
    "encode_ready",
    "encode_request",
    "fill_follow_on",
]

STOP = b""
NUDGE = b"N"
SKIPPED = b"S"
_SEP = b"\0"
_CALL = b"Q"
_FOLLOW_ON = b"F"
_READY = b"R"
_ANSWER = b"A"
_NO_HEADERS = b"{}"


class FrameError(ValueError):
    """A frame that does not follow the format: the peer is broken (or not a pool worker)."""


class Call(NamedTuple):
    """A call for the worker to serve now."""

    module: str
    body: bytes
    headers: dict[str, str]


class FollowOn(NamedTuple):
    """A call whose body holds the previous call's answer, to run only if that answer was 2xx.

    The body is ``answer.join(parts)``, where ``answer`` is the previous call's body, compacted as the
    engine's fan-in compacts a child's result when ``compact`` (it then must be JSON).
    """

    module: str
    headers: dict[str, str]
    parts: list[bytes]
    compact: bool


NUDGE_REQUEST = Call("", b"", {})  # decoded NUDGE: no call, just poll for one


def fill_follow_on(result: str, parts: Sequence[bytes], compact: bool) -> bytes:
    """A follow-on's body: the result of the call it follows in each hole between ``parts``.

    The worker builds the body with it, and the engine checks with it that the call it adopts is the
    one it would have sent. With ``compact`` the result goes in as a fan-in child's (compacted JSON).

    Raises:
        ValueError: with ``compact``, ``result`` is not JSON.
    """
    text = compact_json(result) if compact else result
    return text.encode("utf-8", "surrogatepass").join(parts)


# Nearly every answer carries exactly this header: its frame field is a constant both ways.
_JSON_TYPE = {"Content-Type": "application/json"}
_JSON_TYPE_RAW = json.dumps(_JSON_TYPE).encode()


def _headers_json(headers: dict[str, str]) -> bytes:
    if headers == _JSON_TYPE:
        return _JSON_TYPE_RAW
    return json.dumps(headers).encode() if headers else _NO_HEADERS


def _headers(raw: bytes) -> dict[str, str]:
    if raw == _NO_HEADERS:
        return {}
    if raw == _JSON_TYPE_RAW:
        return dict(_JSON_TYPE)
    try:
        headers = json.loads(raw)
    except ValueError as exc:
        raise FrameError(f"headers are not JSON: {exc}") from None
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise FrameError("headers must be a JSON object of strings")
    return headers


def _module(module: str) -> bytes:
    raw = module.encode()
    if not raw or _SEP in raw:
        raise ValueError(f"not a module name: {module!r}")
    return raw


def encode_request(module: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The frame asking a worker to call handler ``module`` with ``body`` and ``headers``."""
    return _SEP.join((_CALL + _module(module), _headers_json(headers), body))


def encode_follow_on(module: str, headers: dict[str, str], parts: list[bytes], compact: bool) -> bytes:
    """The frame of a :class:`FollowOn`; ValueError if a part holds a NUL byte (it cannot be framed)."""
    if not parts or any(_SEP in p for p in parts):
        raise ValueError("a follow-on needs one or more parts without NUL bytes")
    head = _FOLLOW_ON + (b"1" if compact else b"0") + _module(module)
    return _SEP.join((head, _headers_json(headers), *parts))


def decode_request(frame: bytes) -> Call | FollowOn | None:
    """The call or follow-on a frame carries; None for :data:`STOP`.

    Raises:
        FrameError: the frame is malformed.
    """
    if frame == STOP:
        return None
    tag = frame[:1]
    if frame == NUDGE:
        return NUDGE_REQUEST
    if tag == _CALL:
        parts = frame[1:].split(_SEP, 2)
        if len(parts) == 3 and parts[0]:
            return Call(parts[0].decode(), parts[2], _headers(parts[1]))
    elif tag == _FOLLOW_ON and frame[1:2] in (b"0", b"1"):
        module, headers, *body = frame[2:].split(_SEP)
        if module and body:
            return FollowOn(module.decode(), _headers(headers), body, frame[1:2] == b"1")
    raise FrameError(f"malformed request frame (tag {tag!r})")


def encode_ready(pid: int) -> bytes:
    """The frame a worker sends once its handlers are imported."""
    return _READY + str(pid).encode()


def encode_answer(resp: Response) -> bytes:
    """The frame carrying a call's response."""
    body = resp.body.encode("utf-8", "surrogatepass")
    return _SEP.join((_ANSWER + str(resp.status).encode(), _headers_json(resp.headers), body))


def decode_answer(frame: bytes) -> Response | int | None:
    """A worker's frame: a call's :class:`Response`, a ready worker's pid, or None (:data:`SKIPPED`).

    Raises:
        FrameError: the frame is malformed.
    """
    kind, rest = frame[:1], frame[1:]
    try:
        if kind == _ANSWER:
            status, headers, body = rest.split(_SEP, 2)
            return Response(int(status), _headers(headers), body.decode("utf-8", "surrogatepass"))
        if kind == _READY:
            return int(rest)
    except FrameError:
        raise
    except ValueError as exc:  # a missing field, a status or pid that is not a number, bad UTF-8
        raise FrameError(f"malformed {kind!r} frame: {exc}") from None
    if frame == SKIPPED:
        return None
    raise FrameError(f"unknown frame {frame[:16]!r}")
