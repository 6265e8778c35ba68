"""Always answers 400 with a JSON error, as a function does for invalid input."""

from __future__ import annotations

from typing import Any


def handle(event: Any, context: Any) -> dict[str, Any]:
    return {"statusCode": 400, "body": {"error": "bad input", "field": "shard"}}
