"""One replica: a ``python -m functions.serve`` process, its start, its HTTP connections, its end.

A replica is started with ``--port 0`` and announces the port it bound on stdout once its handler is
imported; it is **ready** when it has also answered ``GET /_/health`` (so the gateway knows its HTTP
loop runs, not only that a socket exists). Its stdin is a pipe from the gateway, and it exits when the
pipe closes, so replicas never outlive a gateway that was killed. Its output (stdout and stderr merged)
goes to the gateway's stderr, prefixed with the function and replica number; the last lines are kept to
explain a replica that fails to start.

Calls reuse keep-alive connections (a small pool per replica). A reused connection the replica had
closed is retried once on a fresh one, but only while the process is alive; any other transport failure
is a :class:`ReplicaFailure` (the gateway answers 502 and replaces the replica).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from functions.serve import HEALTH_PATH, READY_PREFIX

log = logging.getLogger("ftg.gateway")

POOL_IDLE_S = 60.0
"""Pooled connections idle longer are closed rather than reused (the replica keeps them for 300 s)."""
STOP_GRACE_S = 5.0
"""Seconds between SIGTERM and SIGKILL when a replica is stopped."""
_TAIL_LINES = 40
_DEATH_WAIT_S = 0.05  # how long a failed call waits to see whether the process has exited


class ReplicaFailure(Exception):
    """The replica broke a call: it died, reset the connection or answered something that is not HTTP."""


class ReplicaTimeout(ReplicaFailure):
    """The replica did not answer within the function's timeout."""


class BadHeader(ValueError):
    """A header http.client refuses to send (nothing was sent; the replica is fine)."""


@dataclass(frozen=True)
class Reply:
    """A replica's answer to one call.

    Attributes:
        status: the HTTP status.
        headers: its headers, in order.
        body: its body.
        seconds: from sending the request to the end of the body.
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    seconds: float


class Replica:
    """One replica process of one function.

    The fleet owns the scheduling state (``inflight``, ``idle_since``, ``state``) and changes it under its
    own lock; this class owns the process and the connections.
    """

    def __init__(
        self,
        rid: int,
        function: str,
        command: Sequence[str],
        env: Mapping[str, str],
        start_timeout: float,
    ) -> None:
        self.id = rid
        self.function = function
        self.command = list(command)
        self.env = dict(env)
        self.start_timeout = start_timeout
        # Scheduling state, guarded by the fleet's lock.
        self.state = "starting"  # starting -> ready -> draining -> gone
        self.inflight = 0
        self.idle_since: float | None = None
        self.created_at = time.monotonic()
        self.ready_at: float | None = None
        self.start_seconds: float | None = None  # process start -> health check answered
        # Process and connections.
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.returncode: int | None = None
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.stop_requested = False
        self._conns: list[tuple[http.client.HTTPConnection, float]] = []
        self._conn_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return None if self.proc is None else self.proc.pid

    # ------------------------------------------------------------------ lifecycle

    def run(
        self,
        start_slots: threading.Semaphore,
        still_wanted: Callable[[Replica], bool],
        on_ready: Callable[[Replica], None],
        on_start_failed: Callable[[Replica, str], None],
        on_exit: Callable[[Replica], None],
    ) -> None:
        """Start the process, wait until it is ready, then follow its output until it exits.

        Runs in the replica's own thread. Exactly one of ``on_ready`` (then ``on_exit`` at the end) or
        ``on_start_failed`` is called. ``still_wanted`` is asked once a start slot is free: a burst may
        have been served by the replicas that started first.
        """
        with start_slots:  # bounded concurrent starts: on 2 cores, 40 imports at once help nobody
            if self.stop_requested or not still_wanted(self):
                self.stop_requested = True
                on_start_failed(self, "not needed any more")
                return
            problem = self._start()
            if problem is not None:
                on_start_failed(self, problem)
                return
            on_ready(self)
        self._follow()
        on_exit(self)

    def _start(self) -> str | None:
        """Launch and wait for readiness; None when ready, else what went wrong."""
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                # Its own session: a Ctrl-C at the gateway's terminal is the gateway's to handle, and the
                # gateway stops its replicas itself.
                start_new_session=True,
            )
        except OSError as exc:
            return f"cannot start {self.command[0]}: {exc}"
        timer = threading.Timer(self.start_timeout, self._kill)
        timer.daemon = True
        timer.start()
        try:
            port = self._read_port()
            if port is None:
                code = self.proc.wait()
                if self.stop_requested:
                    return "stopped while starting"
                if code < 0 and time.monotonic() - started >= self.start_timeout:
                    return f"not ready within {self.start_timeout:g} s"
                return f"exited with code {code} before it was ready"
            self.port = port
            problem = self._probe(started + self.start_timeout)
            if problem is not None:
                self._kill()
                return problem
        finally:
            timer.cancel()
        self.start_seconds = time.monotonic() - started
        return None

    def _read_port(self) -> int | None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(READY_PREFIX):
                try:
                    return int(line.strip().rsplit(":", 1)[1])
                except ValueError:
                    return None
            self._echo(line)
        return None

    def _probe(self, deadline: float) -> str | None:
        """GET the health path once the port is known; None when it answered 200."""
        left = max(deadline - time.monotonic(), 0.1)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=left)
        try:
            conn.request("GET", HEALTH_PATH)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                return f"health check answered {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            return f"health check failed: {exc!r}"
        finally:
            conn.close()
        return None

    def _follow(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._echo(line)
        self.returncode = self.proc.wait()
        self.close_connections()

    def _echo(self, line: str) -> None:
        self.tail.append(line.rstrip("\n"))
        # The replica's log is the gateway's log: one stream to read, each line naming its replica.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"[{self.function}#{self.id}] {line if line.endswith(chr(10)) else line + chr(10)}"
            )

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM now, SIGKILL after ``grace`` seconds if it is still there; returns at once."""
        self.stop_requested = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            proc.terminate()
        timer = threading.Timer(grace, self._kill)
        timer.daemon = True
        timer.start()

    def _kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the process to end; whether it has."""
        proc = self.proc
        if proc is None:
            return True
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def alive(self) -> bool:
        """Whether the process is still running (a short wait lets a dying one finish dying)."""
        return not self.wait_exit(_DEATH_WAIT_S)

    # ------------------------------------------------------------------ calls

    def call(
        self, method: str, path: str, body: bytes, headers: Sequence[tuple[str, str]], timeout: float
    ) -> Reply:
        """Send one request and read the whole answer.

        Raises:
            BadHeader: a header that cannot be sent.
            ReplicaTimeout: no answer within ``timeout`` seconds.
            ReplicaFailure: the process died or the connection broke.
        """
        conn, reused = self._take(timeout)
        try:
            return self._exchange(conn, method, path, body, headers)
        except ValueError as exc:  # from putheader, before a byte is sent
            conn.close()
            raise BadHeader(str(exc)) from exc
        except TimeoutError as exc:
            conn.close()
            raise ReplicaTimeout(f"no answer within {timeout:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            # A keep-alive connection the replica closed while it sat in the pool fails like a dead replica
            # would; the process being alive tells them apart. Nothing ran, so one retry is safe.
            if not (reused and self.alive()):
                raise ReplicaFailure(f"{type(exc).__name__}: {exc}") from exc
        conn = self._connect(timeout)
        try:
            return self._exchange(conn, method, path, body, headers)
        except TimeoutError as exc:
            conn.close()
            raise ReplicaTimeout(f"no answer within {timeout:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ReplicaFailure(f"{type(exc).__name__}: {exc}") from exc

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes,
        headers: Sequence[tuple[str, str]],
    ) -> Reply:
        start = time.perf_counter()
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        seconds = time.perf_counter() - start
        if resp.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return Reply(resp.status, resp.getheaders(), data, seconds)

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.port is None:
            raise ReplicaFailure("the replica has no port (not started)")
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def _take(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        with self._conn_lock:
            while self._conns:
                conn, returned = self._conns.pop()  # the most recently used: the likeliest to be open
                if now - returned <= POOL_IDLE_S and conn.sock is not None:
                    conn.timeout = timeout
                    conn.sock.settimeout(timeout)
                    return conn, True
                conn.close()
        return self._connect(timeout), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._conn_lock:
            if self.state != "gone":
                self._conns.append((conn, time.monotonic()))
                return
        conn.close()

    def close_connections(self) -> None:
        """Close every pooled connection."""
        with self._conn_lock:
            conns, self._conns = self._conns, []
        for conn, _ in conns:
            conn.close()
