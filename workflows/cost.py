"""Serverless cost accounting: every invocation costs duration x memory (GB-s)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

STACK_FILE = Path(__file__).resolve().parents[1] / "functions" / "stack.yml"
TEMPLATE_FUNCTION = {
    "collect": "rollout-collector",
    "aggregate": "reward-aggregator",
    "update": "policy-updater",
    "evaluate": "policy-evaluator",
}
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def parse_memory(value: str) -> float:
    """Kubernetes quantity ('256Mi', '1Gi', '512M') -> GB (10^9 bytes, as cloud FaaS pricing uses)."""
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * _UNITS[suffix] / 1e9
    return float(value) / 1e9


@lru_cache(maxsize=1)
def function_memory_gb(stack_file: Path = STACK_FILE) -> dict[str, float]:
    """Memory limit per function from functions/stack.yml."""
    stack = yaml.safe_load(stack_file.read_text())
    out = {}
    for name, fn in (stack.get("functions") or {}).items():
        limit = ((fn.get("limits") or {}).get("memory")) or "256Mi"
        out[name] = parse_memory(str(limit))
    return out


def invocation_gb_seconds(template: str, seconds: float) -> float:
    fn = TEMPLATE_FUNCTION.get(template)
    if fn is None:
        return 0.0
    return seconds * function_memory_gb().get(fn, 0.256)
