"""Distributed traces with OpenTelemetry: one trace per iteration, driver -> DAG steps -> gateway -> function.

Off unless configured. :func:`configure` installs the SDK's tracer provider, exporting with OTLP over
HTTP, when the settings name an endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, the variables every collector documents); a test installs a
provider of its own with :func:`install`. While off, nothing here imports OpenTelemetry and a span is a
no-op costing one check, so a function's cold start does not pay for tracing it does not do.

Context crosses processes only as the W3C ``traceparent`` header: the driver's iteration span is the
root, the embedded engine opens a span per step attempt and sends that span's header to the function,
the gateway opens a span for the call and forwards its own header to the replica, and the function's
span continues whatever header arrived (under Argo, the driver's: Argo makes no spans of its own).
Header names are matched without regard to case (WSGI servers hand them over title-cased).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ftg_common.settings import Settings, get_settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

Kind = Literal["internal", "server", "client"]

TRACEPARENT = "traceparent"
_lock = threading.Lock()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_configured = False


def install(provider: TracerProvider | None) -> None:
    """Trace into ``provider`` from now on (None: tracing off); for tests and embedding applications."""
    global _tracer, _provider, _configured
    with _lock:
        _provider = provider
        _tracer = provider.get_tracer("faastraingym") if provider is not None else None
        _configured = True


def configure(service: str, settings: Settings | None = None) -> bool:
    """Turn tracing on for this process if the settings name an OTLP endpoint; idempotent.

    Args:
        service: the ``service.name`` of this process's spans (``OTEL_SERVICE_NAME`` wins if set).
        settings: the settings (the process's own when omitted).

    Returns:
        Whether this process now traces.
    """
    global _configured
    if _configured:  # every call of a warm function asks: no lock once it is decided
        return _tracer is not None
    with _lock:
        if _configured:
            return _tracer is not None
        _configured = True
    settings = settings or get_settings()
    if not settings.otlp_endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name or service})
    )
    # The exporter reads the endpoint variables itself (the traces one is a full URL, the base one gets
    # /v1/traces appended), so the two mean what the OpenTelemetry specification says they mean.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500))
    install(provider)
    return True


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _tracer is not None


def shutdown() -> None:
    """Export the spans still buffered and stop; a process calls it before it exits."""
    provider = _provider
    if provider is not None:
        provider.shutdown()


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _context(headers: Mapping[str, str] | None) -> Any:
    if headers is None:
        return None  # the current context
    from opentelemetry.propagate import extract

    return extract(_lowered(headers))


def _kind(kind: Kind) -> Any:
    from opentelemetry.trace import SpanKind

    return {"internal": SpanKind.INTERNAL, "server": SpanKind.SERVER, "client": SpanKind.CLIENT}[kind]


@contextlib.contextmanager
def span(
    name: str,
    *,
    headers: Mapping[str, str] | None = None,
    root: bool = False,
    kind: Kind = "internal",
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[Span | None]:
    """A span around the block, current inside it; ``None`` (and no cost) while tracing is off.

    Args:
        name: the span's name.
        headers: continue the trace of these request headers' ``traceparent`` (a new trace if they have
            none); omitted: the current span's child.
        root: start a new trace whatever is current.
        kind: server for a request served, client for one sent, internal otherwise.
        attributes: the span's attributes.
    """
    tracer = _tracer
    if tracer is None:
        yield None
        return
    if root:
        from opentelemetry.context import Context

        ctx = Context()
    else:
        ctx = _context(headers)
    with tracer.start_as_current_span(name, context=ctx, kind=_kind(kind), attributes=attributes) as s:
        yield s


def start_span(
    name: str,
    *,
    headers: Mapping[str, str] | None = None,
    kind: Kind = "client",
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Span | None:
    """A span that is not made current, for work that ends on another thread (a DAG step's call).

    The caller ends it (:func:`end_span`). ``headers`` as for :func:`span`. None while tracing is off.
    """
    tracer = _tracer
    if tracer is None:
        return None
    return tracer.start_span(name, context=_context(headers), kind=_kind(kind), attributes=attributes)


def end_span(s: Span | None, error: str | None = None, **attributes: str | int | float | bool) -> None:
    """End ``s`` (None is ignored), with ``attributes`` and, if ``error`` is given, an error status."""
    if s is None:
        return
    for key, value in attributes.items():
        s.set_attribute(key, value)
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        s.set_status(Status(StatusCode.ERROR, error))
    s.end()


def inject(headers: dict[str, str], s: Span | None = None) -> dict[str, str]:
    """Set ``headers``' ``traceparent`` (replacing one in any case) to ``s``'s, or the current span's.

    Unchanged while tracing is off, or when there is no span to name.
    """
    if _tracer is None:
        return headers
    from opentelemetry import trace
    from opentelemetry.propagate import inject as otel_inject

    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(s) if s is not None else None
    otel_inject(carrier, context=ctx)
    if TRACEPARENT in carrier:
        for key in [k for k in headers if k.lower() == TRACEPARENT]:
            del headers[key]
        headers[TRACEPARENT] = carrier[TRACEPARENT]
    return headers


def current_traceparent() -> str | None:
    """The current span's ``traceparent`` header value, or None (tracing off, or no span)."""
    return inject({}).get(TRACEPARENT)
