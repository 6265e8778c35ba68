"""A handler with a bug: it raises."""

from __future__ import annotations

from typing import Any


def handle(event: Any, context: Any) -> dict[str, Any]:
    raise RuntimeError("handler bug")
