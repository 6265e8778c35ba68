"""Reading ``functions/stack.yml``: each function's labels, limits, environment and timeouts.

Only functions of the catalog can be served (a replica runs ``functions/serve.py``, which serves the
catalog's handlers), so a stack naming any other function is refused when it is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ftg_common import catalog
from workflows.gateway.scaler import ScaleRule

STACK_FILE = Path(__file__).resolve().parents[2] / "functions" / "stack.yml"
LABEL = "com.openfaas.scale."
DEFAULT_TIMEOUT_S = 60.0
"""The OpenFaaS gateway's default upstream timeout, for a function that sets none."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# of-watchdog settings: they configure the watchdog, not the function, so a replica does not get them.
_WATCHDOG_ENV = frozenset(
    {"exec_timeout", "read_timeout", "write_timeout", "upstream_timeout", "healthcheck_interval"}
)


class StackError(ValueError):
    """A stack file the gateway cannot serve."""


@dataclass(frozen=True)
class FunctionDef:
    """One function of the stack, as the gateway serves and reports it.

    Attributes:
        name: the function's name (``/function/<name>``).
        image: its image (reported by ``/system/functions``).
        rule: its scaling labels.
        memory: its memory limit (a Kubernetes quantity); what a second of it is billed for.
        timeout_s: seconds a call may take (``upstream_timeout``, else ``exec_timeout``).
        labels: all its labels.
        annotations: its annotations.
        environment: its environment, without the of-watchdog's settings.
        limits: its ``limits`` (memory, cpu).
        requests: its ``requests`` (memory, cpu).
    """

    name: str
    image: str
    rule: ScaleRule
    memory: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    requests: Mapping[str, str] = field(default_factory=dict)

    @property
    def memory_gb(self) -> float:
        """Memory limit in GB (10^9 bytes, as FaaS pricing counts)."""
        return catalog.parse_memory(self.memory)


def parse_duration(text: str) -> float:
    """A Go duration (``5m``, ``1h30m``, ``500ms``, ``2.5s``) or a bare number of seconds, in seconds.

    Raises:
        StackError: anything else.
    """
    value = str(text).strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise StackError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h30m)")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _int_label(labels: Mapping[str, str], key: str, default: int) -> int:
    raw = labels.get(LABEL + key)
    if raw is None:
        return default
    try:
        return int(str(raw))
    except ValueError as exc:
        raise StackError(f"label {LABEL}{key} must be an integer, got {raw!r}") from exc


def scale_rule(labels: Mapping[str, str], zero_duration_s: float | None = None) -> ScaleRule:
    """The scaling rule of a function's labels; ``zero_duration_s``, when given, overrides the label.

    Raises:
        StackError: a label that is not a number, or a scale type other than ``capacity``.
    """
    kind = labels.get(LABEL + "type", "capacity")
    if kind != "capacity":  # rps and cpu need measurements this gateway does not take
        raise StackError(f"{LABEL}type {kind!r} is not supported; use capacity (in-flight calls per replica)")
    zero = str(labels.get(LABEL + "zero", "false")).strip().lower() in ("true", "1", "yes")
    duration = labels.get(LABEL + "zero-duration")
    defaults = ScaleRule()
    try:
        return ScaleRule(
            min=_int_label(labels, "min", defaults.min),
            max=_int_label(labels, "max", defaults.max),
            target=_int_label(labels, "target", defaults.target),
            zero=zero,
            zero_duration=(
                zero_duration_s
                if zero_duration_s is not None
                else (parse_duration(duration) if duration is not None else defaults.zero_duration)
            ),
        )
    except ValueError as exc:
        raise StackError(str(exc)) from exc


def _strings(obj: Any, what: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise StackError(f"{what} must be a mapping, got {type(obj).__name__}")
    return {str(k): str(v) for k, v in obj.items()}


def _function(name: str, spec: Any, zero_duration_s: float | None) -> FunctionDef:
    if not isinstance(spec, Mapping):
        raise StackError(f"function {name!r}: expected a mapping")
    try:
        catalog.function(name)
    except catalog.UnknownFunctionError as exc:
        raise StackError(f"function {name!r} is not one functions/serve.py can serve: {exc}") from exc
    labels = _strings(spec.get("labels"), f"{name}.labels")
    env = _strings(spec.get("environment"), f"{name}.environment")
    limits = _strings(spec.get("limits"), f"{name}.limits")
    requests = _strings(spec.get("requests"), f"{name}.requests")
    memory = limits.get("memory") or requests.get("memory")
    if memory is None:
        raise StackError(f"function {name!r} needs limits.memory: it is what a second of it costs")
    timeout = env.get("upstream_timeout") or env.get("exec_timeout")
    return FunctionDef(
        name=name,
        image=str(spec.get("image", f"faastraingym/{name}")),
        rule=scale_rule(labels, zero_duration_s),
        memory=memory,
        timeout_s=parse_duration(timeout) if timeout else DEFAULT_TIMEOUT_S,
        labels=labels,
        annotations=_strings(spec.get("annotations"), f"{name}.annotations"),
        environment={k: v for k, v in env.items() if k not in _WATCHDOG_ENV},
        limits=limits,
        requests=requests,
    )


def load(path: Path | str = STACK_FILE, zero_duration_s: float | None = None) -> dict[str, FunctionDef]:
    """The functions of the stack file at ``path``, by name, in the file's order.

    Args:
        path: the stack file.
        zero_duration_s: overrides every function's ``zero-duration`` (e.g. a second, in tests).

    Raises:
        StackError: a file that is not a stack, or a function the gateway cannot serve.
    """
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StackError(f"cannot read stack file {path}: {exc}") from exc
    functions = doc.get("functions") if isinstance(doc, Mapping) else None
    if not isinstance(functions, Mapping) or not functions:
        raise StackError(f"stack file {path} has no functions")
    return {str(n): _function(str(n), spec, zero_duration_s) for n, spec in functions.items()}
