"""The collector's thresholds: set from the settings in the driver and in every warm worker."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ftg_common import gc_policy
from ftg_common.settings import Settings


@pytest.fixture()
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_thresholds_are_set_or_left_alone(restored: None) -> None:
    gc_policy.apply([1234, 5, 6])
    assert gc.get_threshold() == (1234, 5, 6)
    gc_policy.apply([])  # keep whatever is set
    assert gc.get_threshold() == (1234, 5, 6)


@pytest.mark.parametrize("bad", [[1, 2], [1, 2, 3, 4], [700, -1, 10]])
def test_thresholds_that_are_not_three_counts_are_refused(bad: list[int], restored: None) -> None:
    with pytest.raises(ValueError, match="three numbers"):
        gc_policy.apply(bad)


def test_the_default_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().gc_thresholds == [20_000, 20, 20]
    monkeypatch.setenv("FTG_GC_THRESHOLDS", "[700,10,10]")
    assert Settings().gc_thresholds == [700, 10, 10]
    monkeypatch.setenv("FTG_GC_THRESHOLDS", "[]")
    assert Settings().gc_thresholds == []
