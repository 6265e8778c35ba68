"""WarmPool: objects reused between calls, never shared by two calls at once."""

from __future__ import annotations

import threading

import pytest

from ftg_common.warm import WarmPool


class Thing:
    def __init__(self, *key: object) -> None:
        self.key = key


def test_a_returned_object_is_lent_again_for_its_key() -> None:
    pool: WarmPool[Thing] = WarmPool(Thing)
    with pool.lend("a", 1) as first:
        assert first.key == ("a", 1)
    with pool.lend("a", 1) as again, pool.lend("b", 1) as other:
        assert again is first and other is not first and other.key == ("b", 1)


def test_concurrent_callers_get_their_own_objects() -> None:
    pool: WarmPool[Thing] = WarmPool(Thing)
    inside = threading.Barrier(2)
    seen: list[Thing] = []

    def use() -> None:
        with pool.lend("k") as obj:
            seen.append(obj)
            inside.wait(timeout=5)  # both callers hold an object at the same time

    threads = [threading.Thread(target=use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert pool.idle() == 2


def test_an_object_whose_block_raised_is_dropped() -> None:
    pool: WarmPool[Thing] = WarmPool(Thing)
    with pytest.raises(RuntimeError), pool.lend("k") as broken:
        raise RuntimeError("mid-rollout")
    with pool.lend("k") as fresh:
        assert fresh is not broken


def test_idle_objects_are_bounded_oldest_key_first() -> None:
    pool: WarmPool[Thing] = WarmPool(Thing, max_idle=2)
    kept = {}
    for key in ("a", "b", "c"):
        with pool.lend(key) as obj:
            kept[key] = obj
    assert pool.idle() == 2
    with pool.lend("a") as a, pool.lend("c") as c:
        assert a is not kept["a"] and c is kept["c"]
    pool.clear()
    assert pool.idle() == 0
