"""The gateway's async queue: ``POST /async-function/<name>`` calls, run later, results to a callback.

As OpenFaaS's queue worker: a call is queued durably in **NATS JetStream** (:class:`JetStreamQueue`:
a work-queue stream, a durable pull consumer, acknowledged only once the result was delivered, so a call
survives a crash of the gateway or of a replica and runs at least once), bounded (:class:`QueueFull`,
429, at ``FTG_ASYNC_MAX_QUEUED`` calls queued or in flight), run ``FTG_ASYNC_CONCURRENCY`` at a time, and
its result POSTed to the call's ``X-Callback-Url`` with ``X-Call-Id``, ``X-Function-Name``,
``X-Function-Status`` and ``X-Duration-Seconds``.

Without NATS, :class:`InProcessQueue` has the same interface and rules but is **not durable**: a gateway
that stops or crashes loses the calls it holds.

Usage (the gateway)::

    queue = open_queue(settings)          # FTG_ASYNC_QUEUE=nats|memory|auto, FTG_NATS_URL, ...
    queue.start(invoke)                   # invoke(function, body, headers) -> (status, body, headers)
    queue.enqueue(AsyncCall(call_id, function, body, headers, callback_url))   # QueueFull -> 429
    queue.depth(); queue.close()

Besides :class:`QueueFull`, ``enqueue`` raises :class:`CallTooLarge` (a call larger than one NATS
message, 1 MiB by default: answer 413) and :class:`QueueUnavailable` (closed, or NATS gone: answer 503).
"""

from __future__ import annotations

from ftg_common.settings import Settings, get_settings
from workflows.gateway.asyncq.base import (
    RETRY_STATUSES,
    AsyncCall,
    AsyncQueue,
    CallTooLarge,
    Invoke,
    QueueFull,
    QueueUnavailable,
    Tuning,
    log,
)
from workflows.gateway.asyncq.jetstream import JetStreamQueue
from workflows.gateway.asyncq.memory import InProcessQueue

__all__ = [
    "RETRY_STATUSES",
    "AsyncCall",
    "AsyncQueue",
    "CallTooLarge",
    "InProcessQueue",
    "Invoke",
    "JetStreamQueue",
    "QueueFull",
    "QueueUnavailable",
    "Tuning",
    "open_queue",
]


def tuning_of(settings: Settings) -> Tuning:
    """The retry and callback rules the settings ask for."""
    return Tuning(
        max_deliver=settings.async_max_deliver,
        backoff_s=settings.async_backoff_s,
        callback_attempts=settings.async_callback_attempts,
        callback_timeout_s=settings.async_callback_timeout_s,
    )


def open_queue(settings: Settings | None = None) -> AsyncQueue:
    """The queue the settings ask for, not started.

    ``FTG_ASYNC_QUEUE``: ``nats`` is JetStream at ``FTG_NATS_URL`` or an error; ``memory`` the in-process
    queue; ``auto`` (the default) JetStream when a server with JetStream answers, else the in-process
    queue, with a warning that calls are then not durable.

    Raises:
        QueueUnavailable: ``nats`` asked for and no NATS JetStream server answers.
        nats.js.errors.APIError: the stream exists with settings that cannot be changed.
    """
    settings = settings or get_settings()
    tuning = tuning_of(settings)
    if settings.async_queue != "memory":
        try:
            return JetStreamQueue(
                settings.nats_url,
                settings.async_stream,
                max_queued=settings.async_max_queued,
                concurrency=settings.async_concurrency,
                ack_wait_s=settings.async_ack_wait_s,
                tuning=tuning,
            )
        except QueueUnavailable as exc:
            if settings.async_queue == "nats":
                raise
            log.warning("%s; async calls use the in-process queue, which is NOT durable", exc)
    return InProcessQueue(settings.async_max_queued, settings.async_concurrency, tuning)
