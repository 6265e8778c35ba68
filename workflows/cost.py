"""Serverless cost accounting: every invocation costs duration x memory (GB-s).

Memory is the function's limit in :mod:`ftg_common.catalog`, which is also what ``functions/stack.yml``
deploys (a test keeps the two equal), so the bill matches what the cluster reserves.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftg_common import catalog
from ftg_common.catalog import parse_memory

__all__ = ["SweepCost", "invocation_gb_seconds", "parse_memory", "sweep_cost"]


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


@dataclass(frozen=True)
class SweepCost:
    """What a sweep cost, serverless beside a dedicated server for the same wall time.

    Attributes:
        wall_s: the sweep's wall time (its trials' run, every resumed segment added).
        billed_gb_s: the trials' call seconds x memory limits (what a FaaS provider bills).
        idle_gb_s: warm capacity that served no call, x the memory it reserved; None when unknown.
        cold_starts: calls that waited for a replica to start; None when unknown.
        faas_usd: ``billed_gb_s`` at the FaaS price.
        idle_usd: ``idle_gb_s`` at the same price: what keeping capacity warm costs when it is paid for
            (a self-hosted gateway), the number that scaling to zero saves; None when unknown.
        dedicated_usd: a dedicated server for ``wall_s``.
        source: where the idle and cold-start figures come from (a gateway, the warm pool).
    """

    wall_s: float
    billed_gb_s: float
    idle_gb_s: float | None
    cold_starts: int | None
    faas_usd: float
    idle_usd: float | None
    dedicated_usd: float
    source: str = ""


def sweep_cost(
    wall_s: float,
    billed_gb_s: float,
    idle_gb_s: float | None,
    cold_starts: float | None,
    usd_per_gb_s: float,
    dedicated_usd_per_hour: float,
    source: str = "",
) -> SweepCost:
    """The cost report of a sweep from its counters.

    Args:
        wall_s: the sweep's wall time.
        billed_gb_s: its trials' billed GB-s.
        idle_gb_s: idle warm GB-s over the sweep, or None when unknown.
        cold_starts: cold starts over the sweep, or None when unknown.
        usd_per_gb_s: the FaaS price per GB-s.
        dedicated_usd_per_hour: a dedicated server's price per hour.
        source: where the idle and cold-start figures come from.
    """
    return SweepCost(
        wall_s=wall_s,
        billed_gb_s=billed_gb_s,
        idle_gb_s=idle_gb_s,
        cold_starts=None if cold_starts is None else round(cold_starts),
        faas_usd=billed_gb_s * usd_per_gb_s,
        idle_usd=None if idle_gb_s is None else idle_gb_s * usd_per_gb_s,
        dedicated_usd=wall_s / 3600.0 * dedicated_usd_per_hour,
        source=source,
    )
