"""Answers 200 with this process's garbage-collector thresholds."""

from __future__ import annotations

import gc
from typing import Any

from ._common import ok


def handle(event: Any, context: Any) -> dict[str, Any]:
    return ok({"thresholds": list(gc.get_threshold())})
