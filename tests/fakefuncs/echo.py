"""Answers 200 with the request body (parsed), the traceparent header, this process id and whether
``warmup()`` ran in this process (a warm pool worker calls it at start)."""

from __future__ import annotations

import os
from typing import Any

from ._common import ok, request

WARMED = False


def warmup() -> None:
    global WARMED
    WARMED = True


def handle(event: Any, context: Any) -> dict[str, Any]:
    return ok(
        {
            "echo": request(event),
            "traceparent": event.headers.get("traceparent"),
            "pid": os.getpid(),
            "warmed": WARMED,
        }
    )
