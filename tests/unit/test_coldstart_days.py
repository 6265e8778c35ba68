"""Held-out days: ``FaaSColdStart-v0``'s ``days`` keyword and the sweep that trains on the other days."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ftg_common.envs.coldstart.registration import COLDSTART_ID
from ftg_common.envs.factory import UnknownEnvError, make_env

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400.0


def test_episodes_start_only_on_the_given_days_at_step_multiples() -> None:
    env = make_env(COLDSTART_ID, {"days": [4, 6]})
    starts = [env.reset(seed=s)[1]["start_s"] for s in range(200)]
    assert {int(t // DAY) for t in starts} == {4, 6}
    assert all(t % 30.0 == 0.0 for t in starts)
    assert env.unwrapped.run_record()["days"] == [4, 6]  # type: ignore[attr-defined]


def test_without_days_episodes_start_on_any_day_of_the_week() -> None:
    env = make_env(COLDSTART_ID, {})
    assert {int(env.reset(seed=s)[1]["start_s"] // DAY) for s in range(200)} == set(range(7))
    assert env.unwrapped.run_record()["days"] is None  # type: ignore[attr-defined]


def test_the_same_seed_gives_the_same_episode_with_days() -> None:
    a, b = make_env(COLDSTART_ID, {"days": [0, 2]}), make_env(COLDSTART_ID, {"days": [0, 2]})
    assert a.reset(seed=9)[1] == b.reset(seed=9)[1]
    assert [a.step(7)[1] for _ in range(20)] == [b.step(7)[1] for _ in range(20)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"days": [7]}, "days must be distinct integers in 0..6"),
        ({"days": []}, "days must be distinct"),
        ({"days": [1, 1]}, "days must be distinct"),
        ({"days": [1], "start_s": 0.0}, "days cannot be combined with start_s"),
        ({"days": [1], "trace_path": "day01.csv"}, "days cannot be combined with start_s or trace_path"),
    ],
)
def test_bad_days_are_refused_naming_the_keyword(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(UnknownEnvError, match=match) as exc:
        make_env(COLDSTART_ID, kwargs)
    assert exc.value.field == "env_kwargs"


def test_the_coldstart_sweep_is_valid_and_trains_on_other_days_than_the_report_holds_out() -> None:
    from workflows.ppo_sweep import _read_sweep

    args = argparse.Namespace(seeds=None, max_parallel=None, total_steps=None, only=None, zoo=None)
    trials = _read_sweep(str(ROOT / "sweeps" / "coldstart.yaml"), args).trial_configs()
    assert {hp.algo for hp in trials.values()} == {"qlearning", "dqn", "ppo"}
    days = {tuple(hp.env_kwargs["days"]) for hp in trials.values()}
    assert days == {(0, 1, 2, 3, 5)}  # the report evaluates on Friday (4) and Sunday (6)
