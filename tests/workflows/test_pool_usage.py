"""The warm pool's accounting for idle GB-s: ready and busy seconds per worker, kept across replacements,
and the memory a worker reserves (the largest limit of the functions it serves)."""

from __future__ import annotations

import os
import signal

import pytest

from ftg_common import catalog
from workflows.engines.invokers import InvocationError, PoolInvoker

GATEWAY = "local://gateway"
# Catalog names, so the memory limits are the catalog's; fake handlers, so nothing heavy is imported.
MODULES = {"rollout-collector": "tests.fakefuncs.echo", "policy-updater": "tests.fakefuncs.sleepy"}


def test_busy_and_ready_seconds_and_the_reserved_memory() -> None:
    with PoolInvoker(1, modules=MODULES) as pool:
        # policy-updater's 1Gi (1.074 GB), not the collector's 256Mi.
        assert pool.memory_gb == catalog.function("policy-updater").memory_gb == 1.073741824
        pool.warmup()
        before = pool.usage()
        assert before.busy_s == 0.0 and before.alive_s >= 0.0
        answer = pool.submit(f"{GATEWAY}/function/policy-updater", "POST", {}, b'{"sleep": 0.2}', 30).result(
            30
        )
        assert answer.status == 200
        after = pool.usage()
        # The call slept 0.2 s in the worker, so at least that much of its ready time was busy.
        assert after.busy_s >= 0.2 and after.alive_s >= after.busy_s and after.alive_s > before.alive_s
        assert after.idle_gb_s == pytest.approx((after.alive_s - after.busy_s) * 1.073741824)


def test_a_replaced_worker_keeps_its_seconds_in_the_totals() -> None:
    with PoolInvoker(1, modules=MODULES) as pool:
        (pid,) = pool.warmup()
        pool.submit(f"{GATEWAY}/function/policy-updater", "POST", {}, b'{"sleep": 0.2}', 30).result(30)
        served = pool.usage()
        doomed = pool.submit(f"{GATEWAY}/function/policy-updater", "POST", {}, b'{"sleep": 60}', 90)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(InvocationError):
            doomed.result(30)
        (fresh,) = pool.warmup()
        assert fresh != pid
        later = pool.usage()
        assert later.busy_s >= served.busy_s and later.alive_s >= served.alive_s


def test_a_warm_worker_runs_with_the_collector_thresholds_of_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ftg_common.settings import get_settings

    monkeypatch.setenv("FTG_GC_THRESHOLDS", "[4321,7,8]")
    get_settings.cache_clear()  # the workers read the environment they inherit, not this cache
    try:
        with PoolInvoker(1, modules={"gc": "tests.fakefuncs.gc_thresholds"}) as pool:
            pool.warmup()
            answer = pool.submit("local://gateway/function/gc", "POST", {}, b"{}", 30).result(30)
    finally:
        get_settings.cache_clear()
    assert answer.json()["thresholds"] == [4321, 7, 8]
