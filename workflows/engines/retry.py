"""Whether and when a failed HTTP call is tried again: the DAG's steps and the engines' direct calls.

The decision follows Argo's ``processNodeRetries`` (``workflow/controller/operator.go``, v4.1.2) for a
retried HTTP node whose last attempt failed, in its order:

1. ``backoff.maxDuration``: past it (counted from the first attempt's start), no retry; nor when the wait
   would end past it.
2. the wait before retry n is ``duration * factor**(n-1)``, at most ``cap``;
3. ``retryPolicy``: Always retries Failed and Error, OnFailure Failed, OnError Error;
4. ``limit``: no more than ``limit`` retries;
5. ``expression``: false means no retry. It sees what Argo binds (``buildRetryStrategyLocalScope``), all
   strings: ``lastRetry.status`` (the attempt's phase), ``lastRetry.message`` (the attempt node's
   message), ``lastRetry.exitCode`` (``"-1"``: an HTTP node has no exit code), ``lastRetry.duration``
   (the attempt's seconds, Go's ``%v`` of a float64) and ``retries`` (attempts so far minus one).

Argo decides 3-5 after the wait; here all of it is decided when the attempt ends, from the same inputs, so
only the timing differs (a call refused by the expression fails without the pointless first wait).
On Argo the attempt's timestamps have second resolution, so its ``lastRetry.duration`` is coarser.

The messages the expression reads are the agent's (``workflow/executor/agent.go``, unchanged from v3.3 to
v4.1.2): ``received non-2xx response code: <code>`` when the template has no ``successCondition``,
``successCondition '<condition>' evaluated false`` when it has one, and the transport error's text
otherwise (Go's ``Post "<url>": ...``; this engine's own wording for transport errors and timeouts
differs, but neither names a status code).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from workflows.engines.compiler import CompiledWorkflow, RetrySpec
from workflows.engines.expr import ExpressionError

__all__ = [
    "HTTP_EXIT_CODE",
    "decide",
    "function_retries",
    "go_float",
    "last_retry_scope",
    "non_2xx_message",
]

HTTP_EXIT_CODE = "-1"  # Argo's lastRetry.exitCode when the attempt's outputs carry no exit code
_RETRIED = {"Always": ("Failed", "Error"), "OnFailure": ("Failed",), "OnError": ("Error",)}
_FUNCTION_URL = re.compile(r"/function/([a-z0-9][a-z0-9-]*)$")


def non_2xx_message(status: int) -> str:
    """The Argo agent's message for a response that fails the default (2xx) success check."""
    return f"received non-2xx response code: {status}"


def go_float(value: float) -> str:
    """``fmt.Sprint(value)`` for a float64: the shortest digits, exponent form below 1e-4 and from 1e6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0.0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    _, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)  # finite
    text = "".join(map(str, digits))
    nd, dp = len(text), len(text) + exponent  # dp: where the decimal point goes
    sign = "-" if value < 0 else ""
    exp = dp - 1
    if exp < -4 or exp >= 6:  # strconv 'g' with the shortest precision uses 6 for this decision
        mantissa = text[0] + ("." + text[1:] if nd > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{text}"
    if dp >= nd:
        return f"{sign}{text}{'0' * (dp - nd)}"
    return f"{sign}{text[:dp]}.{text[dp:]}"


def last_retry_scope(attempt: int, phase: str, message: str, duration_s: float) -> dict[str, str]:
    """What ``retryStrategy.expression`` sees after attempt number ``attempt`` (1-based) of an HTTP node."""
    return {
        "lastRetry.status": phase,
        "lastRetry.message": message,
        "lastRetry.exitCode": HTTP_EXIT_CODE,
        "lastRetry.duration": go_float(duration_s),
        "retries": str(attempt - 1),
    }


def decide(
    spec: RetrySpec | None, attempt: int, phase: str, message: str, duration_s: float, elapsed_s: float
) -> float | str:
    """Seconds to wait before the next attempt, or why there is none (a suffix for the node's message).

    Args:
        spec: the template's retry strategy; None never retries.
        attempt: the attempt that just failed, 1-based.
        phase: its phase, ``Failed`` or ``Error``.
        message: its message, as the Argo agent would have written it.
        duration_s: how long it took.
        elapsed_s: time since the first attempt started.
    """
    if spec is None:
        return ""
    wait = spec.backoff(attempt)
    if spec.duration is not None and spec.max_duration is not None:
        if elapsed_s > spec.max_duration:
            return "; max duration limit exceeded"
        if elapsed_s + wait > spec.max_duration:
            return "; backoff would exceed max duration limit"
    if phase not in _RETRIED[spec.policy]:
        return ""
    if attempt > spec.limit:
        return f"; no more retries left ({attempt} attempts)"
    if spec.expression is not None:
        scope = last_retry_scope(attempt, phase, message, duration_s)
        try:
            again = spec.expression.evaluate_bool(scope)
        except ExpressionError as exc:
            return f"; retryStrategy.expression failed: {exc}"
        if not again:
            return "; retryStrategy.expression evaluated to false"
    return wait


def function_retries(compiled: CompiledWorkflow) -> dict[str, RetrySpec]:
    """Function name -> the retry strategy of the template that calls ``.../function/<name>``.

    So a direct call (:meth:`Engine.call`) is retried as the DAG step calling the same function is.
    """
    out: dict[str, RetrySpec] = {}
    for task in compiled.tasks:
        tmpl = task.template
        m = _FUNCTION_URL.search(tmpl.url.parts[-1])
        if m and tmpl.retry is not None:
            out.setdefault(m.group(1), tmpl.retry)
    return out
