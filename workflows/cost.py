"""Serverless cost accounting: every invocation costs duration x memory (GB-s).

Memory is the function's limit in :mod:`ftg_common.catalog`, which is also what ``functions/stack.yml``
deploys (a test keeps the two equal), so the bill matches what the cluster reserves.
"""

from __future__ import annotations

from ftg_common import catalog
from ftg_common.catalog import parse_memory

__all__ = ["invocation_gb_seconds", "parse_memory"]


def invocation_gb_seconds(template: str, seconds: float) -> float:
    """GB-seconds billed for ``seconds`` spent in a call made by DAG template ``template``.

    Args:
        template: the DAG template (step) that made the call, e.g. ``update``.
        seconds: time spent in the call, retries included.

    Returns:
        ``seconds`` times the function's memory limit in GB; 0 for a template that calls no function.
    """
    spec = catalog.for_step(template)
    return 0.0 if spec is None else seconds * spec.memory_gb
