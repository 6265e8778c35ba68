"""The warm pool with polling on (FTG_POOL_SPIN_US): answers stay right, in order and in parallel, and a
worker that dies while the reader polls is still replaced."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal

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
