"""Sweep and trial run ids: unique per submit, valid run ids, at most 63 characters."""

from __future__ import annotations

import re

import pytest

from ftg_common.ids import RUN_ID_PATTERN, InvalidIdError
from workflows.sweep import make_sweep_id, trial_run_id

NOW = 1_764_000_000.0  # 2025-11-24 16:00:00 UTC
STAMP = "20251124-160000"


def _valid(rid: str) -> bool:
    return re.fullmatch(RUN_ID_PATTERN, rid) is not None and len(rid) <= 63


def test_ids_made_in_the_same_second_are_distinct() -> None:
    ids = [make_sweep_id("cartpole-ab", NOW) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(_valid(i) for i in ids)
    assert all(re.fullmatch(rf"cartpole-ab-{STAMP}-[a-z0-9]{{8}}", i) for i in ids)


def test_trials_of_two_submits_in_the_same_second_are_distinct() -> None:
    first, second = make_sweep_id("cartpole-ab", NOW), make_sweep_id("cartpole-ab", NOW)
    assert trial_run_id(first, "zoo", 0) != trial_run_id(second, "zoo", 0)
    assert trial_run_id(first, "zoo", 0) == f"{first}-zoo-s0"


@pytest.mark.parametrize("name", ["a" * 63, "x-" * 31 + "x", "a" * 19 + "-" + "b" * 43])
def test_long_names_still_make_valid_ids(name: str) -> None:
    sweep_id = make_sweep_id(name, NOW)
    assert _valid(sweep_id) and len(sweep_id) <= 45
    assert sweep_id.startswith(name[:20].rstrip("-") + f"-{STAMP}-")
    assert "--" not in sweep_id


def test_the_stamp_is_utc_and_now_zero_is_the_epoch() -> None:
    assert make_sweep_id("s", 0.0).startswith("s-19700101-000000-")


def test_an_invalid_name_is_refused() -> None:
    with pytest.raises(InvalidIdError, match="sweep_id"):
        make_sweep_id("Not_Valid", NOW)


@pytest.mark.parametrize("name", ["a" * 63, "cartpole-ab", "x"])
@pytest.mark.parametrize("config", ["zoo", "c" * 31, "cleanrl-with-a-long-name-too"])
@pytest.mark.parametrize("seed", [0, 7, 12345, 10**6 + 1])
def test_trial_ids_are_valid_deterministic_and_keep_the_sweep_id(name: str, config: str, seed: int) -> None:
    sweep_id = make_sweep_id(name, NOW)
    rid = trial_run_id(sweep_id, config, seed)
    assert _valid(rid)
    assert rid == trial_run_id(sweep_id, config, seed)
    assert rid.startswith(f"{sweep_id}-") and rid.endswith(f"-s{seed}")


def test_long_trial_ids_stay_distinct() -> None:
    sweep_id = make_sweep_id("a" * 63, NOW)
    configs = [f"config-number-{i:02d}-with-a-long-name"[:31] for i in range(40)]
    ids = {trial_run_id(sweep_id, c, s) for c in configs for s in range(5)}
    assert len(ids) == 200
    assert all(_valid(i) for i in ids)


def test_an_explicit_long_sweep_id_is_cut_but_trials_stay_distinct() -> None:
    sweep_id = "s" * 63
    a, b = trial_run_id(sweep_id, "zoo", 0), trial_run_id(sweep_id, "cleanrl", 0)
    assert _valid(a) and _valid(b) and a != b
