from __future__ import annotations

import json
from typing import Any


def request(event: Any) -> dict[str, Any]:
    return json.loads(event.body or b"{}")


def ok(body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "body": body}
