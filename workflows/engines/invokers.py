"""How the local engine reaches a function: in this process, in a warm process pool, or over HTTP.

Every invoker answers ``submit(url, method, headers, body, timeout) -> Future[Response]``; the engine
enforces the timeout itself (a timed-out call may keep running in its worker, as an HTTP request to a
gateway would). Local URLs look like ``local://gateway/function/<name>`` so the compiled Argo template runs
unchanged with the workflow parameter ``gateway=local://gateway``.

A handler that raises is answered with a 500, as the python3-http template's server would; our handlers
answer 400 for bad input and never raise on purpose.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import importlib
import json
import logging
import math
import multiprocessing
import os
import select
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from ftg_common import catalog, faas, gc_policy
from ftg_common.faas import Response
from ftg_common.settings import get_settings
from workflows.engines import pool_frames as frames
from workflows.engines.spin import CallTimes, spin_until

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

__all__ = [
    "HttpInvoker",
    "InProcessInvoker",
    "InvocationError",
    "Invoker",
    "PoolInvoker",
    "PoolUsage",
    "RoutingInvoker",
    "default_modules",
    "function_from_url",
]

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Invoker(Protocol):
    """How the engine reaches functions."""

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        """Start one HTTP-shaped call; the Future holds the response or the transport error."""
        ...


@dataclass(frozen=True)
class Ahead:
    """A call sent ahead (:meth:`ChainingInvoker.chain`): its URL and headers, and its body's parts.

    The body is the answer of the call it follows joined with ``parts`` (``answer.join(parts)``),
    that answer compacted first as a fan-in child's result when ``compact``.
    """

    url: str
    headers: dict[str, str]
    parts: list[bytes]
    compact: bool


class ChainingInvoker(Invoker, Protocol):
    """An invoker that can send a call ahead to run right after another, where that one runs."""

    def chain(self, after: cf.Future[Response], call: Ahead) -> cf.Future[Response] | None:
        """Queue ``call`` to start as soon as the call ``after`` answers 2xx, in the same place.

        If ``after`` does not answer 2xx (or, with ``call.compact``, answers something that is not
        JSON) the call does not run and its Future fails with :class:`FollowOnSkipped`.

        Returns:
            The call's Future, or None when it cannot be queued (``after`` is not in flight here, or
            already has a follow-on): the caller then submits it in the usual way when it is due.
        """
        ...


class InvocationError(RuntimeError):
    """The call did not produce an HTTP response (connection refused, reset, ...)."""


class FollowOnSkipped(InvocationError):
    """A follow-on call did not run: the call it followed did not answer 2xx."""


def default_modules() -> dict[str, str]:
    """Function name -> handler module, for every function in the catalog."""
    return {spec.name: spec.module for spec in catalog.FUNCTIONS}


@functools.lru_cache(maxsize=256)  # a workflow calls the same few URLs every iteration
def function_from_url(url: str) -> str:
    """``local://<host>/function/<name>`` -> ``<name>``; anything else is refused."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    if parts.scheme != "local" or len(segments) != 3 or segments[:2] != ["", "function"] or not segments[2]:
        raise ValueError(f"not a local function URL: {url!r} (expected local://<host>/function/<name>)")
    return segments[2]


def _not_found(function: str, known: Mapping[str, str]) -> Response:
    # What an OpenFaaS gateway answers for an undeployed function, so a typo fails like it would there.
    msg = {"error": f"function not found: {function!r} (known: {', '.join(sorted(known))})"}
    return Response(404, {"Content-Type": "application/json"}, json.dumps(msg))


def _completed(value: Response | None = None, error: BaseException | None = None) -> cf.Future[Response]:
    fut: cf.Future[Response] = cf.Future()
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)  # type: ignore[arg-type]
    return fut


class _ModuleInvoker(ABC):
    """Routes ``local://…/function/<name>`` to a handler module; subclasses decide where it runs."""

    modules: dict[str, str]

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        function = function_from_url(url)
        module = self.modules.get(function)
        if module is None:
            return _completed(_not_found(function, self.modules))
        return self._run(module, body, dict(headers))

    @abstractmethod
    def _run(self, module: str, body: bytes, headers: dict[str, str]) -> cf.Future[Response]: ...


class InProcessInvoker(_ModuleInvoker):
    """Runs the handler synchronously in the calling thread; the Future is already done.

    No timeout can be enforced (the call has returned before the engine could wait on it); use
    :class:`PoolInvoker` when that matters.
    """

    def __init__(self, modules: Mapping[str, str] | None = None) -> None:
        self.modules = dict(default_modules() if modules is None else modules)

    def _run(self, module: str, body: bytes, headers: dict[str, str]) -> cf.Future[Response]:
        return _completed(faas.invoke(module, faas.Event(body=body, headers=headers)))


def _init_worker(modules: tuple[str, ...]) -> None:
    # Ctrl-C in a terminal signals the whole process group; the driver owns the shutdown (it lets the
    # running iterations finish), so a worker must not die mid-call with a KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # BLAS pools sized to the core count would oversubscribe N workers; numpy/torch read these at import.
    for var in _THREAD_ENV:
        os.environ[var] = "1"
    for module in modules:
        try:
            handler = importlib.import_module(module)
            # A handler that defers a heavy import (torch) to keep its own cold start short can expose it
            # as warmup(), so a warm worker pays it here instead of on the first call.
            hook = getattr(handler, "warmup", None)
            if callable(hook):
                hook()
        except Exception as exc:  # a handler still being written must not stop the pool from starting
            log.warning("worker %d: cannot pre-import %s: %s", os.getpid(), module, exc)
    # After the imports, whose objects live as long as the worker: the calls' churn is what it tunes.
    gc_policy.apply(get_settings().gc_thresholds)


def _worker_main(conn: Connection, modules: tuple[str, ...], spin_s: float = 0.0) -> None:
    """A pool worker: import the handlers, say ready, then serve one call at a time until told to stop.

    After each answer it polls its pipe for up to ``spin_s`` before sleeping: the DAG's next call
    usually follows within microseconds (:mod:`workflows.engines.spin`). A follow-on call
    (:meth:`PoolInvoker.chain`) runs on the previous answer, or is answered "skipped".
    """
    _init_worker(modules)
    poller = select.poll()  # one system call per look while polling, no selector built each time
    poller.register(conn.fileno(), select.POLLIN)

    def called() -> bool:
        return bool(poller.poll(0))

    conn.send_bytes(frames.encode_ready(os.getpid()))
    last: Response | None = None  # the previous call's answer, for a follow-on
    while True:
        try:
            request = frames.decode_request(conn.recv_bytes())
        except (EOFError, OSError):  # the parent is gone
            return
        if request is None:
            return
        if request is frames.NUDGE_REQUEST:  # a call is about to come: be polling when it does
            spin_until(called, max(spin_s, _NUDGE_SPIN_S))
            continue
        if isinstance(request, frames.FollowOn):
            body = follow_on_body(request, last)
            if body is None:
                last = None  # a follow-on of this one is skipped too
                conn.send_bytes(frames.SKIPPED)
                continue
            module, headers = request.module, request.headers
        else:
            module, body, headers = request
        last = faas.invoke(module, faas.Event(body=body, headers=headers))
        conn.send_bytes(frames.encode_answer(last))
        if spin_s > 0:
            spin_until(called, spin_s)


# How long a nudged worker polls for the call it was woken for (the engine's run set-up is ~0.1 ms).
_NUDGE_SPIN_S = 0.002


def follow_on_body(follow: frames.FollowOn, previous: Response | None) -> bytes | None:
    """The body of a follow-on call after ``previous``; None when it must not run.

    It runs only after a 2xx answer, as the engine would start the dependent step only then; with
    ``compact`` the answer must be JSON (else the engine's fan-in fails the step, which then never runs).
    """
    if previous is None or not 200 <= previous.status < 300:
        return None
    try:
        return frames.fill_follow_on(previous.body, follow.parts, follow.compact)
    except ValueError:
        return None


class _Worker:
    """One worker process, its end of the pipe, and the call it is serving (if any)."""

    def __init__(self, ctx: SpawnContext, modules: tuple[str, ...], spin_s: float) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, modules, spin_s), daemon=True)
        self.process.start()
        child.close()
        self.ready = threading.Event()
        self.pid = 0
        self.call: cf.Future[Response] | None = None
        self.module = ""  # the handler module of the call in flight
        # For idle accounting (PoolInvoker.usage): monotonic times, and seconds spent serving calls.
        self.ready_at: float | None = None
        self.call_t0 = 0.0
        self.busy_s = 0.0
        self.answered_at = 0.0  # monotonic time of its last answer
        self.follow: tuple[cf.Future[Response], str] | None = None  # a follow-on queued behind the call

    def send(self, fut: cf.Future[Response], request: tuple[str, bytes, dict[str, str]]) -> None:
        self.call = fut
        self.module = request[0]
        self.call_t0 = time.monotonic()
        self.conn.send_bytes(frames.encode_request(*request))

    def end_call(self, now: float) -> None:
        """The call in flight ended (answered, or the worker died): count its seconds as busy."""
        if self.call is not None and self.ready_at is not None:
            # A call sent before the worker was ready waited for its imports: that is start-up, not work.
            self.busy_s += now - max(self.call_t0, self.ready_at)
        self.call = None

    def usage(self, now: float) -> tuple[float, float]:
        """(seconds since it became ready, seconds of those spent in calls, the current one included)."""
        if self.ready_at is None:
            return 0.0, 0.0
        current = now - max(self.call_t0, self.ready_at) if self.call is not None else 0.0
        return now - self.ready_at, self.busy_s + current


def _last_answer(w: _Worker) -> float:
    return w.answered_at


_ANSWER, _EXIT, _WAKE = "answer", "exit", "wake"


class _PipeWatch:
    """One poll(2) object over the reader's wake-up pipe and every worker's pipe and exit.

    Built once per set of workers (again only when one is replaced), so a wait costs one system call
    rather than a selector built, filled and torn down each time.
    """

    def __init__(self, wake: Connection, pool: list[_Worker]) -> None:
        self.pool = pool
        self._what: dict[int, tuple[str, _Worker | None]] = {wake.fileno(): (_WAKE, None)}
        for w in pool:
            self._what[w.conn.fileno()] = (_ANSWER, w)
            self._what[w.process.sentinel] = (_EXIT, w)
        self._poll = select.poll()
        for fd in self._what:
            self._poll.register(fd, select.POLLIN)

    def ready(self, timeout: float | None) -> list[tuple[str, _Worker | None]]:
        """What became readable within ``timeout`` seconds (None: wait until something does)."""
        ms = None if timeout is None else math.ceil(max(0.0, timeout) * 1000)
        return [self._what[fd] for fd, _ in self._poll.poll(ms)]


@dataclass(frozen=True)
class PoolUsage:
    """How a warm pool's workers spent their time, summed over every worker it ever ran.

    Attributes:
        alive_s: seconds workers were ready (started and imported) and not yet stopped.
        busy_s: seconds of those spent serving calls.
        memory_gb: what one worker reserves: the largest memory limit of the functions it can serve.
    """

    alive_s: float
    busy_s: float
    memory_gb: float

    @property
    def idle_gb_s(self) -> float:
        """Ready but serving nothing, times the memory a worker reserves."""
        return max(0.0, self.alive_s - self.busy_s) * self.memory_gb


_MAX_START_FAILURES = 3


class PoolInvoker(_ModuleInvoker):
    """A warm pool of spawned worker processes, one duplex pipe each.

    Each worker has the handler modules already imported (and their optional module-level ``warmup()``
    called). A call goes to an idle worker over its pipe, or waits in a queue; one reader thread waits
    on every pipe and every worker's exit at once, so a round trip costs two pipe messages (a
    ``ProcessPoolExecutor`` adds a feeder queue and a manager thread on each side), plain byte frames
    (:mod:`workflows.engines.pool_frames`). A call can also be queued behind the one a worker is
    serving (:meth:`chain`), to start there with no round trip. A worker that dies mid-call fails that
    call, and the one queued behind it, with :class:`InvocationError` (the engine's retry strategy
    decides) and is replaced.

    ``spawn`` (not ``fork``): the parent runs threads (engine, HTTP pool), and forking a threaded process
    can deadlock on locks held at fork time. A call that times out keeps its worker busy until it returns.

    The thread-count variables are set before the handlers are imported; a spawned child re-imports the
    parent's ``__main__`` first, so a CLI module that imports numpy at its top level defeats them.

    Args:
        workers: worker processes.
        modules: function name -> handler module (the catalog's when omitted).
        spin_us: how long workers and the reader poll instead of sleeping (:mod:`workflows.engines.spin`).
        follow_ons: whether :meth:`chain` queues follow-on calls (else it always declines).
    """

    def __init__(
        self,
        workers: int,
        modules: Mapping[str, str] | None = None,
        spin_us: int = 0,
        follow_ons: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError(f"PoolInvoker needs at least one worker, got {workers}")
        if spin_us < 0:
            raise ValueError(f"spin_us must be >= 0, got {spin_us}")
        self.workers = workers
        # Polling instead of sleeping (workflows/engines/spin.py): the worker's window after an answer,
        # the reader's lead before a call's expected end; an idle CPU is needed for the reader to poll.
        self._spin_s = spin_us / 1e6
        self._follow_ons = follow_ons  # chain() queues follow-on calls (workflows/engines/follow_on.py)
        self._times = CallTimes()
        self._cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self._reader_blocked = False  # the reader sleeps with no poll planned: flush() wakes it
        self._wake_due = False  # a call was sent while the reader slept (flush)
        self.modules = dict(default_modules() if modules is None else modules)
        # Spawned children inherit the environment, and one may import numpy (re-importing the
        # parent's __main__) before the initializer runs; multi-threaded BLAS in N workers on N cores
        # busy-waits and starves the other workers. This process's own pools are already sized.
        for var in _THREAD_ENV:
            os.environ[var] = "1"
        self._ctx = multiprocessing.get_context("spawn")
        self._imports = tuple(sorted(set(self.modules.values())))
        self._lock = threading.Lock()
        self._queue: deque[tuple[cf.Future[Response], tuple[str, bytes, dict[str, str]]]] = deque()
        self._closed = False
        # Workers that died before saying ready, in a row: a pool that cannot start stops respawning.
        self._start_failures = 0
        self._broken: str | None = None
        # Ready and busy seconds of workers already stopped (replaced, or the pool closed).
        self._retired_alive_s = 0.0
        self._retired_busy_s = 0.0
        # A worker serves any function, so it reserves the memory of the largest one.
        self.memory_gb = max((s.memory_gb for s in catalog.FUNCTIONS if s.name in self.modules), default=0.0)
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._pool = [_Worker(self._ctx, self._imports, self._spin_s) for _ in range(workers)]
        self._reader = threading.Thread(target=self._read, name="ftg-pool-reader", daemon=True)
        self._reader.start()

    def warmup(self, timeout: float = 120.0) -> list[int]:
        """Block until every worker process has started and imported the handlers; returns their pids."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pool, broken = list(self._pool), self._broken
            if broken is not None:
                raise InvocationError(broken)
            pending = [w for w in pool if not w.ready.is_set()]
            if not pending:
                return sorted(w.pid for w in pool)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"only {len(pool) - len(pending)} of {self.workers} workers started within {timeout}s"
                )
            # Short waits: a worker that dies is replaced by another object, which this loop then sees.
            pending[0].ready.wait(min(remaining, 0.1))

    def _run(self, module: str, body: bytes, headers: dict[str, str]) -> cf.Future[Response]:
        fut: cf.Future[Response] = cf.Future()
        fut.set_running_or_notify_cancel()
        request = (module, body, headers)
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if self._broken is not None:
                fut.set_exception(InvocationError(self._broken))
                return fut
            # The worker that answered last: it is likeliest still polling its pipe after that answer
            # (no wake-up) and its caches are warmest, so a DAG's chain of single calls stays on it.
            idle = max((w for w in self._pool if w.call is None), key=_last_answer, default=None)
            if idle is None:
                self._queue.append((fut, request))
            else:
                idle.send(fut, request)
            # The reader should plan a poll for this call instead of sleeping through its end; it is
            # woken by flush(), once the caller has sent every call it has for now.
            self._wake_due = self._wake_due or self._reader_blocked and self._spin_s > 0
        return fut

    def flush(self) -> None:
        """The caller has sent the calls it has for now: wake the sleeping reader if it would poll.

        A reader asleep when a call was sent plans no poll for its end (it wakes only when an answer
        comes, 50-150 µs late on a VM). Waking it after each call of a fan-out costs the sending thread
        a system call between two sends, and the reader a turn on a CPU the workers need; after the
        last one, and only if fewer calls than CPUs are then in flight (else it would not poll), it
        costs neither. A caller that never flushes only loses the poll.
        """
        with self._lock:
            if not self._wake_due:
                return
            self._wake_due = False
            busy = sum(1 for w in self._pool if w.call is not None)
            if busy >= self._cpus or not self._reader_blocked:
                return
            self._reader_blocked = False
        self._wake_w.send(b"")

    def nudge(self) -> None:
        """Wake the idle workers that are likely asleep, because calls are about to come.

        A worker sleeping in its pipe read takes 100-150 µs to wake on a VM; the engine nudges at the
        start of a run, so the wake-up overlaps its set-up instead of delaying a fan-out's second call.
        """
        if self._spin_s <= 0:
            return
        with self._lock:
            now = time.monotonic()
            idle = [w for w in self._pool if w.call is None and w.ready.is_set()]
            # The next call goes to the worker that answered last (_run): its own frame wakes it as
            # soon as a nudge would, so only the others are nudged, one system call fewer.
            first = max(idle, key=_last_answer, default=None)
            for w in idle:
                if w is not first and now - w.answered_at > self._spin_s:
                    w.conn.send_bytes(frames.NUDGE)

    def chain(self, after: cf.Future[Response], call: Ahead) -> cf.Future[Response] | None:
        """Send a follow-on call to the worker serving ``after`` (see :class:`ChainingInvoker`).

        The worker starts it the moment it has sent ``after``'s answer: the next DAG level needs no
        round trip through this process (two wake-ups, two hand-offs with cold caches).
        """
        module = self.modules.get(function_from_url(call.url))
        if module is None or not self._follow_ons:
            return None
        try:
            frame = frames.encode_follow_on(module, call.headers, call.parts, call.compact)
        except ValueError:
            return None
        with self._lock:
            if self._closed or self._broken is not None:
                return None
            w = next((w for w in self._pool if w.call is after), None)
            if w is None or w.follow is not None:
                return None
            fut: cf.Future[Response] = cf.Future()
            fut.set_running_or_notify_cancel()
            w.follow = (fut, module)
            w.conn.send_bytes(frame)
        return fut

    def _dispatch(self, w: _Worker) -> None:
        # Called with the lock held when ``w`` has become idle.
        if self._queue and not self._closed:
            w.send(*self._queue.popleft())

    def _poll_window(self, pool: list[_Worker], now: float) -> tuple[float, float] | None:
        """(when to start polling, until when) for the call expected to end first; None: just sleep.

        Called with the lock held. No polling without a spin setting, or when every CPU already has a
        busy worker: a poller would then take CPU from the work it waits for.
        """
        if self._spin_s <= 0:
            return None
        busy = [w for w in pool if w.call is not None]
        if not busy or len(busy) >= self._cpus:
            return None
        windows = [self._times.spin_window(w.module, w.call_t0, self._spin_s) for w in busy]
        live = [win for win in windows if win is not None and win[1] > now]
        return min(live) if live else None

    def _wait(self, watch: _PipeWatch) -> list[tuple[str, _Worker | None]]:
        """Wait for a message or a worker's exit: sleep, or poll near a call's expected end."""
        with self._lock:
            window = self._poll_window(watch.pool, time.monotonic())
            self._reader_blocked = window is None
        if window is None:
            ready = watch.ready(None)
            with self._lock:
                # Awake now: calls submitted from here on (often from this thread's own callbacks) are
                # planned by the next turn, with no need to wake it.
                self._reader_blocked = False
            return ready
        start, until = window
        ready = watch.ready(start - time.monotonic())
        if ready:
            return ready
        found: list[tuple[str, _Worker | None]] = []

        def answered() -> bool:
            found[:] = watch.ready(0)
            return bool(found)

        if spin_until(answered, until - time.monotonic()):
            return found
        return []  # past the window: the next turn plans again (or sleeps)

    def _read(self) -> None:
        watch: _PipeWatch | None = None
        while True:
            with self._lock:
                if self._closed:
                    return
                pool = list(self._pool)
            if watch is None or watch.pool != pool:  # first turn, or a worker was replaced
                watch = _PipeWatch(self._wake_r, pool)
            for kind, w in self._wait(watch):
                if w is None:  # the wake-up pipe
                    with contextlib.suppress(EOFError, OSError):
                        self._wake_r.recv_bytes()
                elif kind == _ANSWER:
                    self._receive(w)
                elif not w.process.is_alive():
                    self._replace(w)

    def _receive(self, w: _Worker) -> None:
        try:
            msg = frames.decode_answer(w.conn.recv_bytes())
        except (EOFError, OSError):
            self._replace(w)
            return
        except frames.FrameError as exc:  # not our worker's protocol: stop trusting that process
            log.error("worker %d sent a malformed frame (%s); replacing it", w.pid, exc)
            w.process.kill()
            self._replace(w)
            return
        if isinstance(msg, int):
            w.pid = msg
            w.ready_at = time.monotonic()
            w.ready.set()
            self._start_failures = 0
            return
        with self._lock:
            fut = w.call
            now = time.monotonic()
            if msg is not None:  # a skipped follow-on took no time worth predicting from
                self._times.add(w.module, now - w.call_t0)
            w.end_call(now)
            w.answered_at = now
            if w.follow is not None:  # the worker goes straight on to its follow-on
                w.call, w.module = w.follow
                w.follow = None
                w.call_t0 = now
            else:
                self._dispatch(w)
        if fut is None:
            return
        if msg is None:
            fut.set_exception(FollowOnSkipped("the call it follows did not answer 2xx"))
        else:
            fut.set_result(msg)

    def _replace(self, w: _Worker) -> None:
        with self._lock:
            if self._closed or w not in self._pool:
                return
            fut = w.call
            self._retire(w)
            failed = [fut] if fut is not None else []
            if w.follow is not None:
                failed.append(w.follow[0])
                w.follow = None
            if not w.ready.is_set():
                self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                self._broken = f"worker processes exit before they start ({self._start_failures} in a row)"
                log.error("worker pool broken: %s", self._broken)
                self._pool.remove(w)
                failed += [f for f, _ in self._queue]
                self._queue.clear()
            else:
                log.warning("worker %d exited (code %s); starting a new one", w.pid, w.process.exitcode)
                fresh = _Worker(self._ctx, self._imports, self._spin_s)
                self._pool[self._pool.index(w)] = fresh
                self._dispatch(fresh)
        w.conn.close()
        for f in failed:
            f.set_exception(InvocationError(self._broken or f"worker process {w.pid} died during the call"))

    def _retire(self, w: _Worker) -> None:
        # Called with the lock held for a worker leaving the pool: keep its seconds in the totals.
        now = time.monotonic()
        alive, _ = w.usage(now)
        w.end_call(now)
        self._retired_alive_s += alive
        self._retired_busy_s += w.busy_s
        w.ready_at = None

    def usage(self) -> PoolUsage:
        """Ready and busy seconds of every worker so far (the calls in flight counted up to now)."""
        now = time.monotonic()
        with self._lock:
            alive, busy = self._retired_alive_s, self._retired_busy_s
            for w in self._pool:
                a, b = w.usage(now)
                alive += a
                busy += b
        return PoolUsage(alive, busy, self.memory_gb)

    def close(self) -> None:
        """Stop the workers, cancelling calls not yet started; workers hold no state worth waiting for."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            queued, self._queue = list(self._queue), deque()
            pool = list(self._pool)
        self._wake_w.send(None)
        self._reader.join(timeout=5)
        for fut, _ in queued:
            fut.set_exception(cf.CancelledError("the worker pool was closed"))
        for w in pool:
            with contextlib.suppress(OSError):
                w.conn.send_bytes(frames.STOP)
        for w in pool:
            w.process.join(timeout=1)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=1)
            w.conn.close()
            for call in (w.call, w.follow[0] if w.follow else None):
                if call is not None and not call.done():
                    call.set_exception(InvocationError("the worker pool was closed during the call"))

    def __enter__(self) -> PoolInvoker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpInvoker:
    """Real HTTP (e.g. an OpenFaaS gateway) through ``requests``; up to ``workers`` calls in flight.

    The default matches the gateway's machine-wide replica cap, so a 64-shard fan-out is not queued here.
    """

    def __init__(self, session: requests.Session | None = None, workers: int = 64) -> None:
        import requests  # deferred: the in-process and pool paths never need it
        from requests.adapters import HTTPAdapter

        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=workers)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self._request_error = requests.RequestException
        self.session = session
        self._executor = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ftg-http")

    def _call(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> Response:
        try:
            resp = self.session.request(method, url, headers=headers, data=body, timeout=timeout)
        except self._request_error as exc:
            raise InvocationError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        return Response(resp.status_code, dict(resp.headers), resp.text)

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        """Send the request on the thread pool; ValueError for anything but http(s) URLs."""
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"HttpInvoker handles http(s) URLs only, got {url!r}")
        return self._executor.submit(self._call, url, method, dict(headers), body, timeout)

    def close(self) -> None:
        """Drop queued requests and close the connection pool."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    def __enter__(self) -> HttpInvoker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RoutingInvoker:
    """Dispatches ``local://`` URLs to the local invoker and ``http(s)://`` URLs to the HTTP one."""

    def __init__(self, local: Invoker, http: Invoker) -> None:
        self.local = local
        self.http = http

    def submit(
        self, url: str, method: str, headers: dict[str, str], body: bytes, timeout: float | None
    ) -> cf.Future[Response]:
        """Route by URL scheme; ValueError for a scheme neither invoker handles."""
        scheme = url.split(":", 1)[0] if ":" in url else ""
        if scheme == "local":
            return self.local.submit(url, method, headers, body, timeout)
        if scheme in ("http", "https"):
            return self.http.submit(url, method, headers, body, timeout)
        raise ValueError(f"no invoker for URL {url!r} (schemes: local, http, https)")

    def chain(self, after: cf.Future[Response], call: Ahead) -> cf.Future[Response] | None:
        """A follow-on (:class:`ChainingInvoker`) of a ``local://`` call, if the local invoker chains."""
        chain = getattr(self.local, "chain", None)
        if chain is None or not call.url.startswith("local:"):
            return None
        result: cf.Future[Response] | None = chain(after, call)
        return result

    def nudge(self) -> None:
        """Nudge the local invoker's idle workers, if it has any (:meth:`PoolInvoker.nudge`)."""
        nudge = getattr(self.local, "nudge", None)
        if nudge is not None:
            nudge()

    def flush(self) -> None:
        """Flush the local invoker's sent calls, if it batches them (:meth:`PoolInvoker.flush`)."""
        flush = getattr(self.local, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Close both invokers."""
        for inv in (self.local, self.http):
            close = getattr(inv, "close", None)
            if close is not None:
                close()
