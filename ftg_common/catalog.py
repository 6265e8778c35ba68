"""The table of FaaSTrainGym's functions.

It is the one place their names, DAG steps, handler modules, timeouts and resource limits are written
down.

The python3-http adapter routes by it, the Hera template takes step names and ``timeoutSeconds`` from it,
the cost meter prices invocations with its memory limits, and a test checks ``functions/stack.yml``
(what ``faas-cli`` deploys) against it, so the four can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


class UnknownFunctionError(LookupError):
    """A function name that is not in the catalog (what a gateway answers with 404)."""


@dataclass(frozen=True)
class FunctionSpec:
    """One deployable function.

    Attributes:
        name: OpenFaaS function name (``/function/<name>``).
        step: the DAG template that calls it.
        timeout_s: the HTTP step's ``timeoutSeconds`` and the function's ``exec_timeout``.
        memory: Kubernetes memory limit (a quantity such as ``256Mi``); also the billed memory.
        cpu: Kubernetes CPU limit.
        max_replicas: ``com.openfaas.scale.max``.
    """

    name: str
    step: str
    timeout_s: int
    memory: str
    cpu: str
    max_replicas: int

    @property
    def folder(self) -> str:
        """Folder under ``functions/`` (a Python package name)."""
        return self.name.replace("-", "_")

    @property
    def module(self) -> str:
        """Import path of the handler module."""
        return f"functions.{self.folder}.handler"

    @property
    def memory_gb(self) -> float:
        """Memory limit in GB (10^9 bytes, as cloud FaaS pricing counts)."""
        return parse_memory(self.memory)


FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec("rollout-collector", "collect", 120, "256Mi", "1", 50),
    FunctionSpec("reward-aggregator", "aggregate", 120, "512Mi", "1", 10),
    FunctionSpec("policy-updater", "update", 300, "1Gi", "1", 10),
    FunctionSpec("policy-evaluator", "evaluate", 300, "256Mi", "1", 20),
)
FUNCTION_NAMES: tuple[str, ...] = tuple(f.name for f in FUNCTIONS)
_BY_NAME = {f.name: f for f in FUNCTIONS}
_BY_STEP = {f.step: f for f in FUNCTIONS}
# The DAG's task names, one per function.
COLLECT, AGGREGATE, UPDATE, EVALUATE = (f.step for f in FUNCTIONS)


def function(name: str) -> FunctionSpec:
    """The catalog entry for ``name``; UnknownFunctionError for anything else."""
    spec = _BY_NAME.get(name) if _NAME_RE.fullmatch(name) else None
    if spec is None:
        raise UnknownFunctionError(f"no such function: {name!r} (known: {', '.join(FUNCTION_NAMES)})")
    return spec


def for_step(step: str) -> FunctionSpec | None:
    """The function a DAG template calls, or None for a template that calls none."""
    return _BY_STEP.get(step)


def parse_memory(value: str) -> float:
    """Kubernetes quantity ('256Mi', '1Gi', '512M') -> GB (10^9 bytes)."""
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * _UNITS[suffix] / 1e9
    return float(value) / 1e9
