"""What a benchmark record says about the machine it ran on.

Other work on the machine inflates every figure, so a record keeps the load average at its start and at
its end; read the before/after ratios, not single figures.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
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


def machine_sentence(machine: dict[str, Any], versions: Sequence[tuple[str, str]] = ()) -> str:
    """The ``machine`` object of a record as the sentence a markdown result starts with.

    Args:
        machine: what :func:`machine_info` returned.
        versions: (label, key) of the library versions to name after Python's, in order.

    Returns:
        ``Machine: <cpus> CPUs, <platform>, Python <v>, [<label> <v>, ...]1-min load average <start> at
        the start and <end> at the end.``
    """
    m = machine
    libraries = "".join(f"{label} {m[key]}, " for label, key in versions)
    return (
        f"Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, {libraries}1-min load average "
        f"{m.get('loadavg_1min_at_start', '-')} at the start and {m.get('loadavg_1min_at_end', '-')} at the "
        "end."
    )
