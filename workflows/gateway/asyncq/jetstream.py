"""The durable async queue: NATS JetStream, as OpenFaaS's queue worker uses it.

Layout on the server (names from the stream setting, ``ftg-async`` by default):

* stream ``ftg-async``, subjects ``ftg.async.<function>`` (the stream name with ``-`` as ``.``), file
  storage, **work-queue retention** (a message is removed when it is acknowledged, so the stream's
  message count is exactly the calls queued or in flight), ``max_msgs`` = the queue bound with the
  **discard-new** policy: at the bound the server refuses the publish, which is :class:`QueueFull`
  (429). The check and the insert are one step on the server, so concurrent gateways cannot overshoot
  it. ``Nats-Msg-Id`` is the call id: a publish retried within two minutes is not queued twice.
* durable pull consumer ``ftg-async-worker``, explicit acks, ``ack_wait`` from the settings. Every gateway
  on the stream pulls from it, so a call runs on one of them.

A message is the call: its body is the request body, its NATS headers carry ``Ftg-Call-Id``,
``Ftg-Function``, ``Ftg-Callback-Url`` and each request header as ``Ftg-Header-<name>`` (``traceparent``
included). No pickle, nothing to deserialise but header strings.

Delivery is at least once. A message is acknowledged only after its result was POSTed to the callback
(or given up, see :mod:`.base`), or, without a callback, after the call finished. While a call runs,
its message is kept alive with in-progress heartbeats every ``ack_wait / 3`` seconds; a gateway that
crashes stops them, so after ``ack_wait`` the server hands the call to another consumer (or to the
restarted gateway). A call that answered a retry status is negatively acknowledged with a backoff delay
and runs again. After ``max_deliver`` deliveries a call is not run again: its callback gets a 500 saying
so and the message is acknowledged, so a call that crashes every gateway cannot loop forever. A crash
between the callback and the ack sends the callback twice: receivers must accept duplicates (the
handlers are idempotent; a callback carries its ``X-Call-Id``).

nats-py is asyncio; the gateway is threaded and synchronous. So the client runs on an event loop of its
own thread, the public methods hand coroutines to it and wait, and calls run on a thread pool of
``concurrency`` workers (a call and its callback hold one worker).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from workflows.gateway.asyncq.base import (
    AsyncCall,
    CallTooLarge,
    Counters,
    Delivery,
    Invoke,
    QueueFull,
    QueueUnavailable,
    Result,
    Tuning,
    check_call,
    gave_up,
    log,
    post_result,
    try_call,
)

T = TypeVar("T")

HDR_CALL_ID = "Ftg-Call-Id"
HDR_FUNCTION = "Ftg-Function"
HDR_CALLBACK = "Ftg-Callback-Url"
HDR_REQUEST = "Ftg-Header-"  # + the request header's name
HDR_MSG_ID = "Nats-Msg-Id"  # JetStream's de-duplication key

# JetStream API error codes of a publish refused because the stream is at its bound (discard new).
_FULL_ERR_CODES = frozenset({10077, 10078})  # maximum messages / maximum bytes exceeded
_STREAM_NAME_IN_USE = 10058

FETCH_WAIT_S = 0.5  # one pull request's lifetime: also how long close() may wait for the consumer loop
REQUEST_TIMEOUT_S = 5.0  # a JetStream API request (publish, info)
DUPLICATE_WINDOW_S = 120.0


def subject_prefix(stream: str) -> str:
    """The subjects' prefix of a stream: ``ftg-async`` -> ``ftg.async`` (calls go to ``<prefix>.<fn>``)."""
    return stream.replace("-", ".")


def encode(call: AsyncCall) -> dict[str, str]:
    """The NATS headers of a call's message (the body is the message's payload)."""
    headers = {HDR_MSG_ID: call.call_id, HDR_CALL_ID: call.call_id, HDR_FUNCTION: call.function}
    if call.callback_url is not None:
        headers[HDR_CALLBACK] = call.callback_url
    headers.update({HDR_REQUEST + name: value for name, value in call.headers.items()})
    return headers


def decode(msg: Msg) -> AsyncCall:
    """The call a message carries.

    Raises:
        ValueError: the message lacks the call's id or function.
    """
    headers = msg.headers or {}
    call_id, function = headers.get(HDR_CALL_ID), headers.get(HDR_FUNCTION)
    if not call_id or not function:
        raise ValueError(f"message on {msg.subject} has no {HDR_CALL_ID} or {HDR_FUNCTION} header")
    request = {
        name[len(HDR_REQUEST) :]: value for name, value in headers.items() if name.startswith(HDR_REQUEST)
    }
    return AsyncCall(call_id, function, msg.data, request, headers.get(HDR_CALLBACK) or None)


def _message_size(call: AsyncCall, headers: dict[str, str]) -> int:
    # Payload plus the header block as sent ("NATS/1.0\r\n", "name: value\r\n" each, "\r\n").
    return len(call.body) + 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


def reachable(url: str, timeout: float) -> bool:
    """Whether any server of a NATS URL list (``nats://h:p[,nats://h2:p2]``) accepts a TCP connection.

    A quick probe, so a missing server is known at once instead of after the client's connect retries.
    """
    for one in url.split(","):
        parts = urllib.parse.urlsplit(one.strip() if "://" in one else f"nats://{one.strip()}")
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout):
                return True
        except OSError:
            continue
    return False


class JetStreamQueue:
    """The durable async queue on NATS JetStream (see the module's doc for the layout and guarantees).

    Connects, and creates (or updates) the stream and the consumer, when constructed.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        max_queued: int,
        concurrency: int,
        ack_wait_s: float,
        tuning: Tuning | None = None,
        connect_timeout_s: float = 2.0,
    ) -> None:
        """Connect and set up the stream and its consumer.

        Raises:
            QueueUnavailable: no NATS server at ``url``, or one without JetStream.
            ValueError: a bound below 1.
            nats.js.errors.APIError: the stream exists with settings that cannot be changed.
        """
        if max_queued < 1 or concurrency < 1 or ack_wait_s <= 0:
            raise ValueError(
                f"bad bounds: max_queued={max_queued} concurrency={concurrency} ack_wait={ack_wait_s}"
            )
        self.url, self.stream, self.consumer = url, stream, f"{stream}-worker"
        self.subject_prefix = subject_prefix(stream)
        self.max_queued, self.concurrency, self.ack_wait_s = max_queued, concurrency, ack_wait_s
        self.tuning = tuning or Tuning()
        self.counters = Counters()
        self._invoke: Invoke | None = None
        self._closed = False
        self._stopping = False  # on the loop: the consumer loop takes no more calls
        self._stop = threading.Event()  # for worker threads: abandon callback retries now
        self._inflight: dict[asyncio.Task[None], Msg] = {}
        self._wake = asyncio.Event()  # a worker slot freed, or closing
        self._consumer_task: asyncio.Task[None] | None = None
        self._connected = False
        self._outage = False  # disconnected, reconnecting
        self._executor = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="ftg-async")
        self._busy_lock = threading.Lock()
        self._busy = 0  # worker threads running a call or a callback
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ftg-async-nats", daemon=True)
        self._thread.start()
        try:
            if not reachable(url, connect_timeout_s):
                raise QueueUnavailable(f"no NATS server answers at {url}")
            self._call(self._connect(connect_timeout_s), connect_timeout_s + 3 * REQUEST_TIMEOUT_S)
        except BaseException:
            self._stop_loop()
            raise

    # ------------------------------------------------------------------ the public, synchronous side

    def start(self, invoke: Invoke) -> None:
        """Begin pulling calls and running them through ``invoke``, ``concurrency`` at a time.

        Raises:
            RuntimeError: started twice, or after close.
        """
        if self._invoke is not None or self._closed:
            raise RuntimeError("the queue is already started or closed")
        self._invoke = invoke
        self._call(self._start_consumer(), REQUEST_TIMEOUT_S)

    def enqueue(self, call: AsyncCall) -> None:
        """Publish ``call``; once this returns it is on the server's disk.

        Raises:
            QueueFull: the stream holds ``max_queued`` calls (queued or in flight).
            CallTooLarge: body and headers exceed the server's message size.
            QueueUnavailable: closed, or the server did not confirm in time.
            ValueError: a function name that cannot be a subject token.
        """
        check_call(call)
        if self._closed:
            raise QueueUnavailable("the async queue is closed")
        self._call(self._publish(call), REQUEST_TIMEOUT_S + 1)
        self.counters.add("enqueued")

    def depth(self) -> int:
        """Calls queued or in flight, on every gateway sharing the stream (the stream's message count).

        Raises:
            QueueUnavailable: closed, or the server did not answer in time.
        """
        if self._closed:
            raise QueueUnavailable("the async queue is closed")
        if self._outage:  # answer a metrics scrape now rather than after a request timeout
            raise QueueUnavailable(f"NATS at {self.url} is disconnected")
        return self._call(self._depth(), REQUEST_TIMEOUT_S + 1)

    def stats(self) -> dict[str, int]:
        """This gateway's event counts (enqueued, completed, retried, redelivered, callbacks, ...)."""
        return self.counters.snapshot()

    def close(self, timeout: float = 5.0) -> None:
        """Stop pulling; calls in flight get ``timeout`` seconds, the rest go back to the server at once.

        Nothing is lost: a call not finished here is negatively acknowledged (or, if even that fails,
        redelivered after ``ack_wait``) and runs on the next consumer.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._shutdown(timeout), timeout + FETCH_WAIT_S + 2 * REQUEST_TIMEOUT_S)
        except Exception:  # the loop and the threads must be released anyway
            log.exception("closing the JetStream async queue failed")
        finally:
            self._stop_loop()

    # ------------------------------------------------------------------ bridging to the loop thread

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise QueueUnavailable(f"NATS at {self.url} did not answer within {timeout:g} s") from exc

    def _stop_loop(self) -> None:
        self._stop.set()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._busy_lock:
            idle = self._busy == 0
        if idle and not self._thread.is_alive():
            # A call still hanging in a worker hands its result to the loop when it ends; the loop is
            # left open (stopped) for it rather than have that hand-over fail on a closed loop.
            self._loop.close()

    def _in_worker(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on the worker pool, counting it as busy until it returns."""

        def run() -> T:
            with self._busy_lock:
                self._busy += 1
            try:
                return fn(*args)
            finally:
                with self._busy_lock:
                    self._busy -= 1

        return self._loop.run_in_executor(self._executor, run)

    # ------------------------------------------------------------------ on the loop thread

    async def _on_error(self, exc: Exception) -> None:
        # While connecting, a refused attempt is expected (the caller reports it); during an outage each
        # reconnect attempt fails the same way: say it once, when it is news.
        level = logging.WARNING if self._connected and not self._outage else logging.DEBUG
        log.log(level, "NATS connection %s: %s: %s", self.url, type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        if not self._closed:  # closing disconnects too: no news then
            self._outage = True
            log.warning("NATS %s disconnected; reconnecting (queued calls wait on its disk)", self.url)

    async def _on_reconnected(self) -> None:
        self._outage = False
        log.warning("NATS %s reconnected", self.url)

    async def _connect(self, timeout: float) -> None:
        try:
            self._nc: Client = await asyncio.wait_for(
                nats.connect(
                    self.url,
                    name="ftg-gateway-async",
                    connect_timeout=max(1, round(timeout)),
                    reconnect_time_wait=0.5,
                    max_reconnect_attempts=-1,  # once up, a gateway outlives NATS restarts
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
                timeout,
            )
        except (asyncio.TimeoutError, OSError, nats.errors.Error) as exc:
            raise QueueUnavailable(
                f"cannot connect to NATS at {self.url}: {type(exc).__name__}: {exc}"
            ) from exc
        self._connected = True
        self._js: JetStreamContext = self._nc.jetstream(timeout=REQUEST_TIMEOUT_S)
        try:
            await self._ensure_stream()
            await self._ensure_consumer()
            self._sub = await self._js.pull_subscribe_bind(durable=self.consumer, stream=self.stream)
        except (
            nats.errors.NoRespondersError,
            nats.errors.TimeoutError,
            nats.js.errors.ServiceUnavailableError,
        ) as exc:
            await self._nc.close()
            raise QueueUnavailable(
                f"NATS at {self.url} has no JetStream: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:
            await self._nc.close()
            raise

    async def _ensure_stream(self) -> None:
        config = api.StreamConfig(
            name=self.stream,
            description="FaaSTrainGym gateway: queued async function calls",
            subjects=[f"{self.subject_prefix}.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            max_msgs=self.max_queued,
            discard=api.DiscardPolicy.NEW,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=1,
        )
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _STREAM_NAME_IN_USE:
                raise
            # The stream exists with other settings (a new bound): take the configured ones. Retention
            # and storage cannot change; a stream that differs there is refused with the server's reason.
            await self._js.update_stream(config)

    async def _ensure_consumer(self) -> None:
        config = api.ConsumerConfig(
            durable_name=self.consumer,
            description="FaaSTrainGym gateway: runs queued async calls",
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,  # the tries are counted here (max_deliver), so no message is stranded
            filter_subject=f"{self.subject_prefix}.>",
            max_ack_pending=self.max_queued,
        )
        try:
            await self._js.add_consumer(self.stream, config)
        except nats.js.errors.BadRequestError as exc:
            # Servers that refuse to change a durable consumer in place: keep the one there.
            info = await self._js.consumer_info(self.stream, self.consumer)
            log.warning(
                "kept the existing consumer %s (ack_wait %s s) of stream %s: %s",
                self.consumer,
                info.config.ack_wait,
                self.stream,
                exc,
            )

    async def _publish(self, call: AsyncCall) -> None:
        headers = encode(call)
        size = _message_size(call, headers)
        if size > self._nc.max_payload:
            raise CallTooLarge(f"call of {size} bytes; the NATS server takes at most {self._nc.max_payload}")
        subject = f"{self.subject_prefix}.{call.function}"
        try:
            await self._js.publish(subject, call.body, headers=headers, stream=self.stream)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _FULL_ERR_CODES:
                self.counters.add("rejected_full")
                raise QueueFull(
                    f"stream {self.stream} holds {self.max_queued} calls: {exc.description}"
                ) from exc
            raise QueueUnavailable(f"JetStream refused the call: {exc}") from exc
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            raise QueueUnavailable(f"NATS at {self.url}: {type(exc).__name__}: {exc}") from exc

    async def _depth(self) -> int:
        try:
            info = await self._js.stream_info(self.stream)
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            raise QueueUnavailable(f"NATS at {self.url}: {type(exc).__name__}: {exc}") from exc
        return int(info.state.messages)

    async def _start_consumer(self) -> None:
        self._consumer_task = asyncio.create_task(self._consume(), name="ftg-async-consumer")

    async def _consume(self) -> None:
        """Pull one message per free worker slot and run each on its own task."""
        while not self._stopping:
            if len(self._inflight) >= self.concurrency:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                # One message per request: a pull request that outlived its fetch would take a message
                # no worker is free for, which would then wait out ack_wait unstarted.
                msgs = await self._sub.fetch(1, timeout=FETCH_WAIT_S)
            except asyncio.TimeoutError:  # nothing queued (nats' timeouts subclass asyncio's)
                continue
            except Exception as exc:  # disconnected: the client reconnects; pull again after a pause
                level = logging.DEBUG if self._outage else logging.WARNING  # an outage is reported once
                log.log(
                    level, "pulling async calls from %s failed: %s: %s", self.stream, type(exc).__name__, exc
                )
                await asyncio.sleep(FETCH_WAIT_S)
                continue
            for msg in msgs:
                task = asyncio.create_task(self._handle(msg))
                self._inflight[task] = msg
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("an async call's handler failed", exc_info=task.exception())

    async def _heartbeat(self, msg: Msg) -> None:
        """Tell the server the call is still running, so ack_wait measures silence, not call length."""
        interval = max(self.ack_wait_s / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                await msg.in_progress()
            except Exception as exc:  # a reconnect will resume; at worst the call is redelivered
                log.debug("heartbeat of %s failed: %s", msg.subject, exc)

    async def _handle(self, msg: Msg) -> None:
        tries = msg.metadata.num_delivered or 1
        try:
            call = decode(msg)
        except ValueError as exc:
            log.error("dropping a message that is not a call: %s", exc)
            self.counters.add("malformed")
            await msg.term()
            return
        if tries > 1:
            self.counters.add("redelivered")
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            await self._process(msg, call, tries)
        finally:
            heartbeat.cancel()

    async def _process(self, msg: Msg, call: AsyncCall, tries: int) -> None:
        """Try the call once; send it back for a retry, or deliver its result and acknowledge it."""
        result: Result
        if tries > self.tuning.max_deliver:  # earlier tries crashed their gateway: do not run it again
            log.error(
                "async call %s to %s: delivered %d times; giving up", call.call_id, call.function, tries
            )
            self.counters.add("given_up")
            result = gave_up(call, tries - 1)
        else:
            assert self._invoke is not None  # set before the consumer starts
            result = await self._in_worker(try_call, self._invoke, call)
            if result.retriable and tries < self.tuning.max_deliver:
                self.counters.add("retried")
                await msg.nak(delay=self.tuning.delay(tries))
                return
            if result.retriable:
                self.counters.add("given_up")
        delivery = await self._in_worker(post_result, call, result, self.tuning, self._stop, self.counters)
        if delivery is Delivery.ABORTED:
            await msg.nak()
            return
        try:
            await msg.ack_sync(timeout=REQUEST_TIMEOUT_S)
        except Exception as exc:  # the server will hand it out again: the callback may come twice
            log.warning("ack of async call %s failed (%s); it will run again", call.call_id, exc)
            return
        self.counters.add("completed")

    async def _shutdown(self, timeout: float) -> None:
        self._stopping = True
        self._wake.set()
        if self._consumer_task is not None:
            # The loop ends within one pull request's life; waiting for it leaves no request behind.
            _, pending = await asyncio.wait({self._consumer_task}, timeout=FETCH_WAIT_S + 1)
            for task in pending:
                task.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)
        self._stop.set()  # callbacks still retrying stop now, and their calls go back to the server
        unfinished = dict(self._inflight)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        for msg in unfinished.values():
            with contextlib.suppress(Exception):  # if even this fails, ack_wait hands it out again
                await msg.nak()
        if unfinished:
            log.warning(
                "async queue closed with %d calls unfinished; they go back to %s",
                len(unfinished),
                self.stream,
            )
        with contextlib.suppress(Exception):
            await self._nc.flush(timeout=2)
        with contextlib.suppress(Exception):
            await self._nc.close()
