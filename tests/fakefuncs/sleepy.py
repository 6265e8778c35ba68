"""Sleeps ``sleep`` seconds, then answers 200 with the request."""

from __future__ import annotations

import time
from typing import Any

from ._common import ok, request


def handle(event: Any, context: Any) -> dict[str, Any]:
    req = request(event)
    time.sleep(float(req.get("sleep", 0)))
    return ok({"echo": req})
