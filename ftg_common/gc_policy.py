"""How often CPython's cyclic garbage collector runs in this project's long-lived processes.

The driver (with the embedded engine) and a warm worker each allocate a few thousand short-lived
containers per iteration (JSON trees, pydantic models, a run's nodes). At CPython's default thresholds
(700, 10, 10) that triggers about three young collections per iteration in the driver, 90-100 µs each,
and a 1.1-1.3 ms middle-generation one every fourth iteration, mostly while the engine hands one DAG
level to the next. At 20,000 the collector runs about 30 times less often and its total time halves,
for about 20,000 objects of cyclic garbage held a little longer (measured in
``benchmarks/results/2026-11-29-gc-thresholds-ab.md``).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

__all__ = ["apply"]


def apply(thresholds: Sequence[int]) -> None:
    """Set the collector's thresholds (gen0, gen1, gen2); an empty sequence leaves Python's own.

    Raises:
        ValueError: not three non-negative numbers.
    """
    if not thresholds:
        return
    if len(thresholds) != 3 or any(t < 0 for t in thresholds):
        raise ValueError(f"GC thresholds are three numbers >= 0 (gen0, gen1, gen2), got {list(thresholds)}")
    gc.set_threshold(*thresholds)
