"""The replicas of every function: routing calls to them, starting and stopping them, accounting.

One lock guards the scheduling state of every function (:class:`_Pool`): replicas by state, calls in
flight and waiting, idle time. A call takes a slot on a ready replica (at most ``target`` calls per
replica, :func:`~workflows.gateway.scaler.choose_replica`), or waits for one: a replica finishing a
call, or one starting. A scaler thread applies :func:`~workflows.gateway.scaler.plan` every
:data:`TICK_S`, and at once when a call has to wait, a replica starts, fails or exits.

A call that waited for a replica started after it arrived is a **cold start**; it is marked
(``X-Cold-Start: true``, ``X-Cold-Start-Seconds``: how long it waited) and observed in
``gateway_cold_start_seconds``. A replica that dies or breaks the connection mid-call gets the call
answered 502, one that does not answer in the function's timeout 504 (both retriable, and both replicas
are stopped and replaced on demand); a call that finds no replica in time, or whose function fails to
start, is answered 503.

Billing: a call is billed its seconds at the replica times the function's memory limit; a ready replica
serving nothing accrues idle GB-s the same way, until it is stopped.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftg_common import tracing
from ftg_common.settings import Settings
from workflows.gateway import scaler
from workflows.gateway.metrics import GatewayMetrics
from workflows.gateway.replicas import BadHeader, Replica, ReplicaFailure, ReplicaTimeout
from workflows.gateway.stack import FunctionDef

log = logging.getLogger("ftg.gateway")

REPO = Path(__file__).resolve().parents[2]
TICK_S = 0.1
"""Seconds between scaling passes when nothing happens (idle timers); events wake the scaler sooner."""
START_BACKOFF_S = 1.0
"""After a replica fails to start, seconds before another one of that function is started."""
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "host",
        "expect",
        "authorization",  # the gateway's credentials are not the function's business
    }
)
_NOT_RETURNED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
)


@dataclass(frozen=True)
class Outcome:
    """The gateway's answer to one call.

    Attributes:
        status: HTTP status.
        body: the function's body, or the gateway's JSON error.
        content_type: its type.
        headers: other headers to send (the function's, and the gateway's marks).
        cold_seconds: seconds it waited for a replica to start, if it did.
    """

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    cold_seconds: float | None = None


class _Unavailable(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Pool:
    """One function's scheduling state (guarded by the fleet's lock)."""

    fdef: FunctionDef
    cond: threading.Condition
    last_active: float
    replicas: dict[int, Replica] = field(default_factory=dict)
    waiting: int = 0
    pinned: int | None = None
    failed_at: float | None = None
    failure: str = ""
    idle_seconds: float = 0.0  # accrued by replicas no longer idle; the current idle spells add to it

    def live(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state in ("starting", "ready")]

    def view(self, now: float) -> scaler.FunctionView:
        blocked = self.failed_at is not None and now - self.failed_at < START_BACKOFF_S
        return scaler.FunctionView(
            name=self.fdef.name,
            rule=self.fdef.rule,
            replicas=tuple(_view(r) for r in self.live()),
            waiting=self.waiting,
            last_active=self.last_active,
            pinned=self.pinned,
            start_blocked=blocked,
        )

    def counts(self) -> dict[str, int]:
        out = {"starting": 0, "ready": 0, "draining": 0}
        for r in self.replicas.values():
            if r.state in out:
                out[r.state] += 1
        return out


def _view(r: Replica) -> scaler.ReplicaView:
    return scaler.ReplicaView(r.id, r.state == "ready", r.inflight, r.idle_since)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Outcome:
    return Outcome(status, json.dumps({"error": message}).encode(), "application/json", headers or {})


class Fleet:
    """Replicas of the functions of a stack, scaled by their labels within a machine-wide cap."""

    def __init__(
        self,
        functions: Mapping[str, FunctionDef],
        settings: Settings,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.functions = dict(functions)
        self.metrics = metrics
        self.clock = clock
        self.cap = settings.gateway_max_replicas
        self.scale_down_after = settings.gateway_scale_down_seconds
        self.start_timeout = settings.gateway_start_timeout_seconds
        self._lock = threading.Lock()
        now = clock()
        self._pools = {n: _Pool(f, threading.Condition(self._lock), now) for n, f in self.functions.items()}
        self._next_id = 1
        self._closed = False
        self._wake = threading.Event()
        starting = settings.gateway_max_starting or os.cpu_count() or 1
        self._start_slots = threading.Semaphore(starting)
        self._env = self._replica_env()
        self._thread = threading.Thread(target=self._loop, name="ftg-gateway-scaler", daemon=True)
        metrics.idle_sampler = self.idle_gb_seconds

    def start(self) -> Fleet:
        """Start the scaler (which starts the ``min`` replicas at once)."""
        self._thread.start()
        return self

    # ------------------------------------------------------------------ calls

    def invoke(
        self, name: str, body: bytes, headers: Sequence[tuple[str, str]] = (), path: str = "/"
    ) -> Outcome:
        """Call function ``name`` on a replica, waiting for one if needed; every failure is an Outcome.

        With tracing on, the call is a span (a child of the request's ``traceparent``) and the replica
        gets that span's header, so the function's span hangs below the gateway's.

        Raises:
            KeyError: ``name`` is not a function of the stack (the caller answers 404).
        """
        if not tracing.enabled():
            return self._invoke(name, body, headers, path)
        incoming = dict(headers)
        with tracing.span(
            f"gateway {name}", headers=incoming, kind="server", attributes={"faas.name": name}
        ) as sp:
            forwarded = [(k, v) for k, v in headers if k.lower() != tracing.TRACEPARENT]
            forwarded += list(tracing.inject({}).items())
            outcome = self._invoke(name, body, forwarded, path)
            if sp is not None:
                sp.set_attribute("http.response.status_code", outcome.status)
                sp.set_attribute("faas.coldstart", outcome.cold_seconds is not None)
            return outcome

    def _invoke(self, name: str, body: bytes, headers: Sequence[tuple[str, str]], path: str) -> Outcome:
        pool = self._pools[name]
        fdef = pool.fdef
        self.metrics.call_started(name)
        arrived = self.clock()
        call_id = next((v for k, v in headers if k.lower() == "x-call-id"), None) or uuid.uuid4().hex
        marks = {"X-Call-Id": call_id}
        try:
            replica = self._acquire(pool, arrived, arrived + fdef.timeout_s)
        except _Unavailable as exc:
            self.metrics.observe(name, exc.status, self.clock() - arrived)
            return _error(exc.status, exc.message, {**marks, "Retry-After": "1"})
        cold = replica.ready_at is not None and replica.ready_at > arrived
        waited = self.clock() - arrived
        if cold:
            marks["X-Cold-Start"] = "true"
            marks["X-Cold-Start-Seconds"] = f"{waited:.6f}"
            self.metrics.cold_start(name, waited)
        forwarded = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP and k.lower() != "x-call-id"]
        forwarded.append(("X-Call-Id", call_id))
        try:
            outcome, busy = self._call(replica, path, body, forwarded, marks, fdef.timeout_s)
        finally:  # whatever happens, the slot is given back: a leaked one would hold a replica forever
            self._release(pool, replica)
        total = self.clock() - arrived
        outcome.headers["X-Duration-Seconds"] = f"{total:.6f}"
        self.metrics.observe(name, outcome.status, total, busy * fdef.memory_gb)
        if cold:
            return Outcome(outcome.status, outcome.body, outcome.content_type, outcome.headers, waited)
        return outcome

    def _call(
        self,
        replica: Replica,
        path: str,
        body: bytes,
        headers: list[tuple[str, str]],
        marks: dict[str, str],
        timeout: float,
    ) -> tuple[Outcome, float]:
        """(the outcome, seconds billed) of one call on ``replica``; a broken replica is retired."""
        name = replica.function
        started = time.perf_counter()
        try:
            reply = replica.call("POST", path, body, headers, timeout)
        except ReplicaTimeout as exc:
            self.retire(replica, f"timed out: {exc}")
            seconds = time.perf_counter() - started
            return _error(504, f"{name} replica {replica.id} did not answer in time ({exc})", marks), seconds
        except BadHeader as exc:
            return _error(400, f"a request header cannot be forwarded: {exc}", marks), 0.0
        except ReplicaFailure as exc:
            self.retire(replica, f"failed mid-call: {exc}")
            seconds = time.perf_counter() - started
            message = f"{name} replica {replica.id} failed mid-call ({exc}); it is being replaced, retry"
            return _error(502, message, {**marks, "Retry-After": "1"}), seconds
        out = dict(marks)
        ctype = "text/plain"
        for k, v in reply.headers:
            low = k.lower()
            if low == "content-type":
                ctype = v
            elif low not in _NOT_RETURNED and k not in out:
                out[k] = v
        return Outcome(reply.status, reply.body, ctype, out), reply.seconds

    def _acquire(self, pool: _Pool, arrived: float, deadline: float) -> Replica:
        """A slot on a ready replica of ``pool``, waiting for one until ``deadline``.

        Raises:
            _Unavailable: shutting down, the function failed to start, or no slot in time (503).
        """
        name = pool.fdef.name
        target = pool.fdef.rule.target
        with pool.cond:
            pool.waiting += 1
            pool.last_active = arrived
            try:
                while True:
                    if self._closed:
                        raise _Unavailable(503, "the gateway is shutting down")
                    now = self.clock()
                    ready = [r for r in pool.replicas.values() if r.state == "ready"]
                    rid = scaler.choose_replica([_view(r) for r in ready], target)
                    if rid is not None:
                        replica = pool.replicas[rid]
                        self._busy(pool, replica, now)
                        return replica
                    if pool.failed_at is not None and pool.failed_at >= arrived and not pool.live():
                        raise _Unavailable(503, f"{name} could not start a replica: {pool.failure}")
                    if now >= deadline:
                        raise _Unavailable(
                            503, f"no replica of {name} was free within {pool.fdef.timeout_s:g} s"
                        )
                    self._wake.set()
                    pool.cond.wait(deadline - now)
            finally:
                pool.waiting -= 1

    def _busy(self, pool: _Pool, replica: Replica, now: float) -> None:
        if replica.inflight == 0 and replica.idle_since is not None:
            pool.idle_seconds += now - replica.idle_since
        replica.idle_since = None
        replica.inflight += 1

    def _release(self, pool: _Pool, replica: Replica) -> None:
        with pool.cond:
            now = self.clock()
            replica.inflight -= 1
            pool.last_active = now
            if replica.inflight == 0:
                if replica.state == "ready":
                    replica.idle_since = now
                elif replica.state == "draining":
                    replica.stop()
            pool.cond.notify_all()

    # ------------------------------------------------------------------ scaling

    def scale(self, name: str, replicas: int) -> int:
        """Set ``name``'s replicas by hand (``/system/scale-function``); returns the count applied.

        The count holds (replicas idle above it are not stopped) until the function scales to zero or is
        scaled again. Fewer: idle replicas go first, then starting ones, then busy ones (after their calls).

        Raises:
            KeyError: ``name`` is not a function of the stack.
            ValueError: a negative count.
        """
        if replicas < 0:
            raise ValueError(f"replicas must not be negative, got {replicas}")
        pool = self._pools[name]
        count = min(replicas, pool.fdef.rule.max)
        with pool.cond:
            now = self.clock()
            pool.pinned = count
            pool.last_active = now
            live = pool.live()
            surplus = len(live) - count
            if surplus > 0:
                idle = scaler.idle_replicas([_view(r) for r in live], now, 0.0)
                starting = [r.id for r in live if r.state == "starting"]
                busy = [
                    r.id for r in sorted(live, key=lambda r: r.inflight) if r.state == "ready" and r.inflight
                ]
                for rid in (idle + starting + busy)[:surplus]:
                    self._stop(pool, pool.replicas[rid], now)
            self._publish(pool)
        self._wake.set()
        return count

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(TICK_S)
            self._wake.clear()
            if self._closed:
                break
            try:
                self._tick()
            except Exception:  # a bug here must not stop scaling for good
                log.exception("scaling pass failed")

    def _tick(self) -> None:
        with self._lock:
            if self._closed:
                return
            now = self.clock()
            draining = sum(p.counts()["draining"] for p in self._pools.values())
            views = [p.view(now) for p in self._pools.values()]
            decisions = scaler.plan(views, now, self.cap, self.scale_down_after, draining)
            for name, decision in decisions.items():
                pool = self._pools[name]
                if decision.unpin:
                    pool.pinned = None
                for rid in decision.stop:
                    self._stop(pool, pool.replicas[rid], now)
                for _ in range(decision.start):
                    self._spawn(pool)
                if decision.stop or decision.start:
                    self._publish(pool)

    def _spawn(self, pool: _Pool) -> None:
        """Start one replica of ``pool`` (under the lock; the process starts in its own thread)."""
        fdef = pool.fdef
        command = [sys.executable, "-m", "functions.serve", "--port", "0", "--exit-with-stdin"]
        # One thread more than the calls it is sent: the health check never waits behind a call.
        command += ["--threads", str(fdef.rule.target + 1)]
        env = {**self._env, "FTG_FUNCTION": fdef.name}
        for key, value in fdef.environment.items():
            # The stack's deployment values (cluster store URLs) must not replace this machine's.
            if not key.startswith("FTG_"):
                env.setdefault(key, value)
        replica = Replica(self._next_id, fdef.name, command, env, self.start_timeout)
        self._next_id += 1
        pool.replicas[replica.id] = replica
        args = (self._start_slots, self._still_wanted, self._on_ready, self._on_start_failed, self._on_exit)
        threading.Thread(target=replica.run, args=args, name=f"replica-{replica.id}", daemon=True).start()

    def _stop(self, pool: _Pool, replica: Replica, now: float) -> None:
        """Take ``replica`` out of rotation; its process ends now if idle, else after its calls."""
        if replica.state in ("draining", "gone"):
            return
        if replica.idle_since is not None:
            pool.idle_seconds += now - replica.idle_since
            replica.idle_since = None
        replica.state = "draining"
        if replica.inflight == 0:
            replica.stop()

    def retire(self, replica: Replica, why: str) -> None:
        """Stop a replica that broke a call at once (the call is answered by the caller)."""
        pool = self._pools[replica.function]
        with pool.cond:
            if replica.state in ("starting", "ready"):
                log.warning("%s replica %s %s; replacing it", replica.function, replica.id, why)
                self._stop(pool, replica, self.clock())
            self._publish(pool)
        replica.stop()
        self._wake.set()

    def _still_wanted(self, replica: Replica) -> bool:
        """Whether a replica about to launch is still needed: the launched ones may serve the demand now."""
        pool = self._pools[replica.function]
        with pool.cond:
            if self._closed or replica.stop_requested or replica.state != "starting":
                return False
            now = self.clock()
            launched = [
                r for r in pool.live() if r is not replica and (r.state == "ready" or r.proc is not None)
            ]
            return len(launched) < scaler.desired(pool.view(now), now)

    def _on_ready(self, replica: Replica) -> None:
        pool = self._pools[replica.function]
        with pool.cond:
            if replica.stop_requested or replica.state != "starting" or self._closed:
                replica.stop()
                return
            now = self.clock()
            replica.state = "ready"
            replica.ready_at = now
            replica.idle_since = now
            self._publish(pool)
            pool.cond.notify_all()
        if replica.start_seconds is not None:
            self.metrics.replica_started(replica.function, replica.start_seconds)

    def _on_start_failed(self, replica: Replica, reason: str) -> None:
        pool = self._pools[replica.function]
        with pool.cond:
            replica.state = "gone"
            pool.replicas.pop(replica.id, None)
            if not replica.stop_requested and not self._closed:
                tail = " | ".join(list(replica.tail)[-5:])
                pool.failed_at = self.clock()
                pool.failure = f"{reason}{': ' + tail if tail else ''}"
                log.error("%s replica %s did not start: %s", replica.function, replica.id, pool.failure)
            self._publish(pool)
            pool.cond.notify_all()
        self._wake.set()

    def _on_exit(self, replica: Replica) -> None:
        pool = self._pools[replica.function]
        with pool.cond:
            if replica.idle_since is not None:
                pool.idle_seconds += self.clock() - replica.idle_since
                replica.idle_since = None
            if not replica.stop_requested and not self._closed:
                log.warning(
                    "%s replica %s exited unexpectedly (code %s)",
                    replica.function,
                    replica.id,
                    replica.returncode,
                )
            replica.state = "gone"
            pool.replicas.pop(replica.id, None)
            self._publish(pool)
            pool.cond.notify_all()
        self._wake.set()

    def _publish(self, pool: _Pool) -> None:
        self.metrics.set_replicas(pool.fdef.name, pool.counts())

    # ------------------------------------------------------------------ reports

    def status(self, name: str) -> dict[str, Any]:
        """``replicas`` (starting or ready) and ``availableReplicas`` (ready) of ``name``."""
        pool = self._pools[name]
        with self._lock:
            counts = pool.counts()
        return {"replicas": counts["starting"] + counts["ready"], "availableReplicas": counts["ready"]}

    def replicas(self, name: str) -> list[Replica]:
        """The replicas of ``name`` (any state but gone), oldest first."""
        with self._lock:
            return sorted(self._pools[name].replicas.values(), key=lambda r: r.id)

    def total_replicas(self) -> int:
        """Replica processes on the machine (starting, ready or draining)."""
        with self._lock:
            return sum(len(p.replicas) for p in self._pools.values())

    def idle_gb_seconds(self) -> dict[str, float]:
        """Per function, GB-s its ready replicas have spent serving nothing (accrued and current)."""
        with self._lock:
            now = self.clock()
            out = {}
            for name, pool in self._pools.items():
                current = sum(now - r.idle_since for r in pool.replicas.values() if r.idle_since is not None)
                out[name] = (pool.idle_seconds + current) * pool.fdef.memory_gb
            return out

    # ------------------------------------------------------------------ shutdown

    def close(self, timeout: float = 10.0) -> None:
        """Stop scaling, answer waiting calls 503, stop every replica (SIGKILL after ``timeout`` s)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            everyone = [r for p in self._pools.values() for r in p.replicas.values()]
            for pool in self._pools.values():
                pool.cond.notify_all()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for replica in everyone:
            replica.stop(grace=timeout)
        deadline = time.monotonic() + timeout
        for replica in everyone:
            if not replica.wait_exit(max(deadline - time.monotonic(), 0.0)):
                replica.stop(grace=0.0)

    def _replica_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FTG_GATEWAY_")}  # no admin secrets
        # This checkout's functions package, even where the project is not installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")  # log lines reach the gateway as they are written
        # Functions use no pydantic plugin; without this pydantic scans every installed distribution's
        # entry points at the first model (~3% of a cold start). The images set the same.
        env.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        # BLAS thread pools sized to the core count would oversubscribe many replicas on few cores.
        env.setdefault("OMP_NUM_THREADS", "1")
        return env


@contextmanager
def running(fleet: Fleet) -> Iterator[Fleet]:
    """``fleet`` started, and closed on the way out."""
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.close()
