"""The in-process async queue: worker threads over a bounded in-memory queue.

**Not durable**: the calls live in the gateway's memory, so a crash or a restart of the gateway loses
every call queued or in flight (their callbacks never come). Use it where NATS JetStream is not running;
:class:`workflows.gateway.asyncq.jetstream.JetStreamQueue` is the durable one.
"""

from __future__ import annotations

import queue
import threading
import time

from workflows.gateway.asyncq.base import (
    AsyncCall,
    Counters,
    Delivery,
    Invoke,
    QueueFull,
    QueueUnavailable,
    Tuning,
    check_call,
    log,
    post_result,
    try_call,
)


class InProcessQueue:
    """Async calls on ``concurrency`` worker threads, at most ``max_queued`` queued or in flight.

    Same interface and the same retry and callback rules as the JetStream queue; not durable.
    """

    def __init__(self, max_queued: int, concurrency: int, tuning: Tuning | None = None) -> None:
        if max_queued < 1 or concurrency < 1:
            raise ValueError(f"max_queued ({max_queued}) and concurrency ({concurrency}) must be at least 1")
        self.max_queued = max_queued
        self.concurrency = concurrency
        self.tuning = tuning or Tuning()
        self.counters = Counters()
        # Unbounded itself: the bound is on calls queued *or in flight*, kept by _pending under _lock.
        self._calls: queue.Queue[AsyncCall | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self._closing = threading.Event()  # take no more calls off the queue
        self._stop = threading.Event()  # abandon backoffs and callback retries now
        self._closed = False
        self._workers: list[threading.Thread] = []

    def start(self, invoke: Invoke) -> None:
        """Start the worker threads; calls queued before this run now.

        Raises:
            RuntimeError: started twice, or after close.
        """
        with self._lock:
            if self._workers or self._closed:
                raise RuntimeError("the queue is already started or closed")
            self._workers = [
                threading.Thread(target=self._work, args=(invoke,), name=f"ftg-async-{i}", daemon=True)
                for i in range(self.concurrency)
            ]
        for worker in self._workers:
            worker.start()

    def enqueue(self, call: AsyncCall) -> None:
        """Queue ``call`` (in memory only).

        Raises:
            QueueFull: ``max_queued`` calls are queued or in flight.
            QueueUnavailable: the queue is closed.
            ValueError: a function name no queue can carry.
        """
        check_call(call)
        with self._lock:
            if self._closed:
                raise QueueUnavailable("the async queue is closed")
            if self._pending >= self.max_queued:
                self.counters.add("rejected_full")
                raise QueueFull(f"{self._pending} calls queued or in flight (at most {self.max_queued})")
            self._pending += 1
            self._calls.put(call)
        self.counters.add("enqueued")

    def depth(self) -> int:
        """Calls queued or in flight."""
        with self._lock:
            return self._pending

    def stats(self) -> dict[str, int]:
        """Event counts (enqueued, completed, retried, callbacks delivered and failed, ...)."""
        return self.counters.snapshot()

    def close(self, timeout: float = 5.0) -> None:
        """Stop: calls in flight get ``timeout`` seconds to finish; the rest are dropped (not durable)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        for _ in self._workers:
            self._calls.put(None)  # wakes each idle worker, which then sees _closing
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()  # what is still running stops at its next wait
        stuck = sum(worker.is_alive() for worker in self._workers)
        with self._lock:
            dropped = self._pending
        if dropped:
            log.warning("in-process async queue closed: %d calls dropped (%d were running)", dropped, stuck)

    def _work(self, invoke: Invoke) -> None:
        while True:
            call = self._calls.get()
            if call is None or self._closing.is_set():
                return
            try:
                delivery = self._run(invoke, call)
            except Exception:  # a worker must outlive any one call
                log.exception("async call %s to %s failed", call.call_id, call.function)
                delivery = Delivery.GAVE_UP
            if delivery is not Delivery.ABORTED:  # counted before it leaves the depth, so depth 0 => counted
                self.counters.add("completed")
            with self._lock:
                self._pending -= 1

    def _run(self, invoke: Invoke, call: AsyncCall) -> Delivery:
        """Try the call until it answers a result or its tries run out, then deliver the result."""
        tries = 0
        while True:
            tries += 1
            result = try_call(invoke, call)
            if not result.retriable:
                break
            if tries >= self.tuning.max_deliver:
                log.warning(
                    "async call %s to %s: %d tries, all retriable", call.call_id, call.function, tries
                )
                self.counters.add("given_up")
                break
            self.counters.add("retried")
            if self._stop.wait(self.tuning.delay(tries)):
                return Delivery.ABORTED
        return post_result(call, result, self.tuning, self._stop, self.counters)
