"""The echo function, answering after 0.1 s: a step long enough that the engine acts while it runs."""

from __future__ import annotations

import time
from typing import Any

from . import echo


def handle(event: Any, context: Any) -> dict[str, Any]:
    time.sleep(0.1)
    return echo.handle(event, context)
