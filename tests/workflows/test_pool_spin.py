"""The warm pool with polling on (FTG_POOL_SPIN_US): answers stay right, in order and in parallel, and a
worker that dies while the reader polls is still replaced."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import time
from typing import Any

import pytest

from workflows.engines.invokers import InvocationError, PoolInvoker

GATEWAY = "local://gateway"
MODULES = {"echo": "tests.fakefuncs.echo", "sleepy": "tests.fakefuncs.sleepy"}


def _echo(pool: PoolInvoker, i: int) -> cf.Future:
    return pool.submit(f"{GATEWAY}/function/echo", "POST", {}, f'{{"i": {i}}}'.encode(), 30)


def test_a_polling_pool_answers_a_chain_of_calls_each_with_its_own_body() -> None:
    with PoolInvoker(2, modules=MODULES, spin_us=500) as pool:
        pool.warmup()
        # One after another, as the DAG's levels call: the reader plans a poll from the second call on.
        for i in range(50):
            answer = _echo(pool, i).result(30)
            assert answer.status == 200 and answer.json()["echo"] == {"i": i}


def test_a_polling_pool_answers_calls_in_parallel_and_queued() -> None:
    with PoolInvoker(2, modules=MODULES, spin_us=500) as pool:
        pool.warmup()
        futures = [_echo(pool, i) for i in range(20)]  # more calls than workers: most wait in the queue
        assert [f.result(30).json()["echo"]["i"] for f in futures] == list(range(20))


def test_a_worker_killed_while_the_reader_polls_fails_its_call_and_is_replaced() -> None:
    with PoolInvoker(1, modules=MODULES, spin_us=100_000) as pool:
        (pid,) = pool.warmup()
        for _ in range(3):  # history for "sleepy", so the reader polls around its expected end
            pool.submit(f"{GATEWAY}/function/sleepy", "POST", {}, b'{"sleep": 0.05}', 30).result(30)
        doomed = pool.submit(f"{GATEWAY}/function/sleepy", "POST", {}, b'{"sleep": 60}', 90)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(InvocationError, match="died during the call"):
            doomed.result(30)
        (fresh,) = pool.warmup()
        assert fresh != pid
        assert _echo(pool, 7).result(30).json()["echo"] == {"i": 7}


def test_a_negative_spin_is_refused() -> None:
    with pytest.raises(ValueError, match="spin_us"):
        PoolInvoker(1, modules=MODULES, spin_us=-1)


class _CountingConn:
    """The reader's wake-up pipe, counting what is sent on it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.sent = 0

    def send(self, obj: Any) -> None:
        self.sent += 1
        self.conn.send(obj)


def _sleepy(pool: PoolInvoker, seconds: float) -> cf.Future:
    return pool.submit(f"{GATEWAY}/function/sleepy", "POST", {}, f'{{"sleep": {seconds}}}'.encode(), 30)


def _reader_asleep(pool: PoolInvoker) -> bool:
    deadline = time.monotonic() + 10
    while not pool._reader_blocked:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_a_sleeping_reader_is_woken_after_the_calls_are_sent_and_only_if_it_would_poll() -> None:
    with PoolInvoker(2, modules=MODULES, spin_us=500) as pool:
        pool.warmup()
        pool._cpus = 2  # what the decision depends on, whatever this machine has
        wakes = _CountingConn(pool._wake_w)
        pool._wake_w = wakes  # type: ignore[assignment]
        for _ in range(2):  # history for "sleepy": the reader can plan a poll for its end
            _sleepy(pool, 0.01).result(30)

        assert _reader_asleep(pool)
        one = _sleepy(pool, 0.05)
        assert wakes.sent == 0  # not between the calls of a batch
        pool.flush()
        assert wakes.sent == 1  # one call on two CPUs: the reader polls for its end
        assert one.result(30).status == 200

        assert _reader_asleep(pool)
        # Long enough that both are still running at the flush, however late this thread gets there.
        both = [_sleepy(pool, 1.0), _sleepy(pool, 1.0)]
        pool.flush()
        assert wakes.sent == 1  # every CPU busy: it would not poll, so it sleeps on
        assert [f.result(30).status for f in both] == [200, 200]
        pool.flush()
        assert wakes.sent == 1  # nothing sent since


class _RecordingConn:
    """A worker's pipe, recording the frames sent on it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.frames: list[bytes] = []

    def send_bytes(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.conn.send_bytes(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_a_nudge_wakes_the_idle_workers_but_the_one_the_next_call_goes_to() -> None:
    with PoolInvoker(3, modules=MODULES, spin_us=300) as pool:
        pool.warmup()
        for w in pool._pool:
            w.conn = _RecordingConn(w.conn)  # type: ignore[assignment]
        assert _echo(pool, 1).result(30).status == 200  # one worker answered last: the next call's
        time.sleep(0.01)  # every worker's poll after its answer is over
        last = max(pool._pool, key=lambda w: w.answered_at)
        pool.nudge()
        nudged = [w for w in pool._pool if b"N" in w.conn.frames]  # type: ignore[attr-defined]
        assert len(nudged) == 2 and last not in nudged
        assert _echo(pool, 2).result(30).json()["echo"] == {"i": 2}
        assert last.conn.frames[-1].startswith(b"Q")  # type: ignore[attr-defined]  # the call went to it
