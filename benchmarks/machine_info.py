"""What a benchmark record says about the machine it ran on.

Other work on the machine inflates every figure, so a record keeps the load average at its start and at
its end; read the before/after ratios, not single figures.
"""

from __future__ import annotations

import os
import platform
from typing import Any


def machine_info(load_before: tuple[float, float, float], **versions: str) -> dict[str, Any]:
    """The ``machine`` object of a benchmark record.

    Args:
        load_before: ``os.getloadavg()`` as the benchmark started.
        **versions: Library name -> version, listed after Python's.

    Returns:
        CPU count, platform, Python and library versions, and the 1-minute load average at the start
        and now (the end).
    """
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
        "loadavg_1min_at_start": round(load_before[0], 2),
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
    }
