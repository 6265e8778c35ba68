"""A stand-in rollout-collector for the real iteration template.

Higher shards answer sooner (so completion order is the reverse of loop order); shard 7 always fails
with 500; shard 8 answers a body that is not JSON. Each answer names the process that ran it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ._common import ok, request


def handle(event: Any, context: Any) -> dict[str, Any]:
    req = request(event)
    shard = int(req["shard"])
    if shard == 7:
        return {"statusCode": 500, "body": {"error": "shard 7 always fails"}}
    if shard == 8:
        return {"statusCode": 200, "body": "not json"}
    time.sleep(max(0.0, 0.12 - 0.04 * shard))
    return ok(
        {
            "key": f"traj/{shard:04d}",
            "shard": shard,
            "run_id": req["run_id"],
            "iteration": req["iteration"],
            "pid": os.getpid(),
        }
    )
