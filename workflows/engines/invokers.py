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
import importlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from ftg_common import catalog, faas
from ftg_common.faas import Response

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

__all__ = [
    "HttpInvoker",
    "InProcessInvoker",
    "InvocationError",
    "Invoker",
    "PoolInvoker",
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


class InvocationError(RuntimeError):
    """The call did not produce an HTTP response (connection refused, reset, ...)."""


def default_modules() -> dict[str, str]:
    """Function name -> handler module, for every function in the catalog."""
    return {spec.name: spec.module for spec in catalog.FUNCTIONS}


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


def _worker_pid(hold_s: float) -> int:
    # Holding the worker briefly makes concurrent warm-up calls land on distinct workers.
    time.sleep(hold_s)
    return os.getpid()


class PoolInvoker(_ModuleInvoker):
    """A warm pool of spawned worker processes.

    Each worker has the handler modules already imported (and their optional module-level ``warmup()``
    called).

    ``spawn`` (not ``fork``): the parent runs threads (engine, HTTP pool), and forking a threaded process
    can deadlock on locks held at fork time. A call that times out keeps its worker busy until it returns.

    The thread-count variables are set before the handlers are imported; a spawned child re-imports the
    parent's ``__main__`` first, so a CLI module that imports numpy at its top level defeats them.
    """

    def __init__(self, workers: int, modules: Mapping[str, str] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"PoolInvoker needs at least one worker, got {workers}")
        self.workers = workers
        self.modules = dict(default_modules() if modules is None else modules)
        # Spawned children inherit the environment, and one may import numpy (re-importing the
        # parent's __main__) before the initializer runs; multi-threaded BLAS in N workers on N cores
        # busy-waits and starves the other workers. This process's own pools are already sized.
        for var in _THREAD_ENV:
            os.environ[var] = "1"
        self._lock = threading.Lock()
        self._executor = self._new_executor()

    def _new_executor(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(tuple(sorted(set(self.modules.values()))),),
        )

    def warmup(self, timeout: float = 120.0) -> list[int]:
        """Block until every worker process has started and imported the handlers; returns their pids."""
        deadline = time.monotonic() + timeout
        pids: set[int] = set()
        while len(pids) < self.workers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"only {len(pids)} of {self.workers} workers started within {timeout}s")
            futures = [self._executor.submit(_worker_pid, 0.05) for _ in range(self.workers)]
            pids.update(f.result(timeout=remaining) for f in futures)
        return sorted(pids)

    def _run(self, module: str, body: bytes, headers: dict[str, str]) -> cf.Future[Response]:
        with self._lock:
            event = faas.Event(body=body, headers=headers)
            try:
                return self._executor.submit(faas.invoke, module, event)
            except cf.BrokenExecutor:
                # A worker died (OOM, segfault): start a fresh pool rather than failing every later call.
                log.warning("process pool broken; starting a new one")
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
                return self._executor.submit(faas.invoke, module, event)

    def close(self) -> None:
        """Stop the workers, cancelling calls not yet started."""
        with self._lock:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PoolInvoker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpInvoker:
    """Real HTTP (e.g. an OpenFaaS gateway) through ``requests``, on a small thread pool for fan-out."""

    def __init__(self, session: requests.Session | None = None, workers: int = 16) -> None:
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

    def close(self) -> None:
        """Close both invokers."""
        for inv in (self.local, self.http):
            close = getattr(inv, "close", None)
            if close is not None:
                close()
