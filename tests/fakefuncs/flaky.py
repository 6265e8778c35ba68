"""Fails with 503 for the first ``fail_times`` calls, then answers 200; counts calls in ``state_file``.

Each call first sleeps ``sleep`` seconds (default none), so a test can act while it is in flight.
"""

from __future__ import annotations

import fcntl
import time
from pathlib import Path
from typing import Any

from ._common import ok, request


def handle(event: Any, context: Any) -> dict[str, Any]:
    req = request(event)
    time.sleep(float(req.get("sleep", 0)))
    path = Path(req["state_file"])
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # fan-out children may share a file
        fh.seek(0)
        count = len(fh.read()) + 1
        fh.write("x")
    if count <= int(req["fail_times"]):
        return {"statusCode": 503, "body": {"error": f"flaky failure {count}"}}
    return ok({"calls": count, "echo": req})
