"""Deciding an A/B from a sweep's trials: verdicts, sample efficiency, cross-sweep merges, the CI gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflows.ab import (
    ComparisonError,
    TrialEvidence,
    best_config,
    champion_verdict,
    config_statistics,
    curves_by_config,
    decide_trials,
    efficiency_lines,
    finals_by_config,
    merge_sweeps,
    require_winner,
    write_plots,
)


def _trial(
    config: str,
    seed: int,
    final: float | None,
    env: str = "CartPole-v1",
    status: str = "finished",
    budget: int = 1000,
    sweep: str = "s",
) -> TrialEvidence:
    # A straight learning curve ending at the final return, evaluated every 250 steps.
    evals = () if final is None else tuple((s, final * s / budget) for s in (250, 500, 750, 1000))
    return TrialEvidence(
        f"{sweep}-{config}-s{seed}", config, seed, status, env, budget, final, evals, "d" * 16, sweep
    )


def test_finals_group_finished_trials_by_config_and_environment() -> None:
    trials = [
        _trial("a", 0, 10.0),
        _trial("a", 1, 20.0, env="Acrobot-v1"),
        _trial("a", 2, 30.0, status="failed"),
        _trial("b", 0, None, status="running"),
    ]
    assert finals_by_config(trials) == {"a": {"CartPole-v1": [10.0], "Acrobot-v1": [20.0]}}
    # An unfinished trial's curve still counts where it evaluated; one with no evaluation does not.
    assert [len(c) for c in curves_by_config(trials)["a"]] == [4, 4, 4] and "b" not in curves_by_config(
        trials
    )


def test_fully_separated_configs_get_a_verdict_with_p_one() -> None:
    trials = [_trial("good", s, 400.0 + s) for s in range(3)] + [_trial("bad", s, 20.0 + s) for s in range(3)]
    report = decide_trials(trials, reps=500)
    (pair,) = report.pairs
    assert (pair.a, pair.b) == ("good", "bad")
    # Every resample of two separated sets is separated: P = 1 and its interval is [1, 1].
    assert tuple(pair.estimate) == (1.0, 1.0, 1.0)
    assert pair.verdict.winner == "good"
    assert report.lines() == ["good beats bad: P = 1.00 [1.00, 1.00]"]
    # Listed the other way round, the same verdict names the same winner.
    flipped = decide_trials(trials[3:] + trials[:3], reps=500)
    assert flipped.pairs[0].verdict.winner == "good" and tuple(flipped.pairs[0].estimate) == (0.0, 0.0, 0.0)


def test_identical_configs_are_not_decided() -> None:
    trials = [_trial("a", s, 100.0 * s) for s in range(3)] + [_trial("b", s, 100.0 * s) for s in range(3)]
    (pair,) = decide_trials(trials, reps=500).pairs
    assert pair.estimate.value == 0.5 and pair.verdict.winner is None
    assert "no decision at this number of seeds" in pair.verdict.line


def test_pairs_on_different_environments_and_configs_without_results_are_noted() -> None:
    trials = [
        _trial("cp", 0, 100.0),
        _trial("acro", 0, -100.0, env="Acrobot-v1"),
        _trial("broken", 0, None, status="failed"),
    ]
    report = decide_trials(trials, reps=200)
    assert report.pairs == []
    assert report.notes == [
        "broken: no finished trial, left out of the verdicts",
        "cp vs acro: not compared, different environments (CartPole-v1 / Acrobot-v1)",
    ]


def test_sample_efficiency_points_and_json_shape() -> None:
    trials = [_trial("a", s, 100.0) for s in range(3)] + [_trial("b", s, 200.0) for s in range(3)]
    report = decide_trials(trials, fractions=(0.25, 1.0), reps=200)
    a = report.efficiency["a"]
    assert [(p.fraction, p.steps, p.seeds, p.iqm) for p in a] == [(0.25, 250, 3, 25.0), (1.0, 1000, 3, 100.0)]
    assert (
        efficiency_lines(report)[0]
        == "a: 25% (250 steps) 25.0 [25.0, 25.0] · 100% (1,000 steps) 100.0 [100.0, 100.0]"
    )
    data = json.loads(json.dumps(report.as_dict()))
    (poi,) = data["probability_of_improvement"]
    assert set(poi) == {"a", "b", "p", "ci_low", "ci_high", "winner", "verdict"}
    assert poi["winner"] == "b" and poi["p"] == 0.0
    assert data["sample_efficiency"]["b"][1] == {
        "fraction": 1.0,
        "steps": 1000,
        "seeds": 3,
        "iqm": 200.0,
        "low": 200.0,
        "high": 200.0,
    }


def test_require_winner_passes_only_when_the_candidate_beats_every_other() -> None:
    trials = (
        [_trial("cand", s, 300.0 + s) for s in range(3)]
        + [_trial("base", s, 10.0 + s) for s in range(3)]
        + [_trial("peer", s, 300.0 + s) for s in range(3)]
    )
    report = decide_trials(trials, reps=300)
    passed, lines = require_winner(report, "cand")
    assert not passed and len(lines) == 2  # beats base, but not peer (identical scores)
    assert require_winner(decide_trials(trials[:6], reps=300), "cand") == (
        True,
        ["cand beats base: P = 1.00 [1.00, 1.00]"],
    )
    assert require_winner(decide_trials(trials[:6], reps=300), "base")[0] is False
    with pytest.raises(ComparisonError, match="'nope' has no decided comparison"):
        require_winner(report, "nope")


def test_merging_sweeps_renames_colliding_configs_and_refuses_mismatches() -> None:
    one = [_trial("zoo", 0, 1.0, sweep="x"), _trial("cleanrl", 0, 2.0, sweep="x")]
    two = [_trial("zoo", 0, 3.0, sweep="y"), _trial("fast", 0, 4.0, sweep="y")]
    merged, names = merge_sweeps({"x": one, "y": two})
    assert [t.config for t in merged] == ["x:zoo", "cleanrl", "y:zoo", "fast"]
    assert names[("y", "zoo")] == "y:zoo" and names[("x", "cleanrl")] == "cleanrl"
    with pytest.raises(ComparisonError, match="different environments"):
        merge_sweeps({"x": one, "y": [_trial("zoo", 0, 1.0, env="Acrobot-v1", sweep="y")]})
    with pytest.raises(ComparisonError, match="different step budgets"):
        merge_sweeps({"x": one, "y": [_trial("zoo", 0, 1.0, budget=2000, sweep="y")]})
    with pytest.raises(ComparisonError, match="no trial"):
        merge_sweeps({"x": one, "y": []})


def test_champion_needs_the_lower_end_above_the_bar() -> None:
    strong = {"CartPole-v1": [400.0, 410.0, 420.0]}
    weak = {"CartPole-v1": [10.0, 20.0, 30.0]}
    assert champion_verdict(strong, weak, "new", "old", min_p=0.5, reps=300).winner == "new"
    assert champion_verdict(weak, strong, "new", "old", min_p=0.5, reps=300).winner == "old"
    mixed = {"CartPole-v1": [15.0, 25.0, 35.0]}  # P = 0.67 [.., ..]: not above a 0.9 bar
    assert champion_verdict(mixed, weak, "new", "old", min_p=0.9, reps=300).winner is None
    with pytest.raises(ValueError):
        champion_verdict(strong, {"Acrobot-v1": [1.0]}, "new", "old", min_p=0.5, reps=300)


def test_best_config_and_the_statistics_a_model_version_carries() -> None:
    trials = [_trial("a", s, 100.0 + s) for s in range(3)] + [_trial("b", s, 10.0) for s in range(3)]
    report = decide_trials(trials, reps=300)
    assert best_config(trials) == "a" and best_config([]) is None
    stats = config_statistics(trials, report, "b")
    assert stats["ftg.stats.final_iqm"] == "10.0000" and stats["ftg.stats.seeds"] == "3"
    # b is the second of the pair: its probability is the mirrored one.
    assert stats["ftg.stats.p_improvement_vs.a"] == "0.0000 [0.0000, 0.0000]"
    assert config_statistics(trials, report, "a")["ftg.stats.p_improvement_vs.b"] == "1.0000 [1.0000, 1.0000]"


def test_write_plots_draws_the_three_pictures(tmp_path: Path) -> None:
    trials = [_trial("a", s, 100.0 + s) for s in range(3)] + [_trial("b", s, 10.0 * s) for s in range(3)]
    written = write_plots(trials, decide_trials(trials, reps=200), tmp_path, threshold=90.0, title="t")
    assert [p.name for p in written] == [
        "learning_curves.png",
        "performance_profile.png",
        "probability_of_improvement.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    # One configuration: nothing to compare, so no probability-of-improvement picture.
    alone = write_plots(trials[:3], decide_trials(trials[:3], reps=200), tmp_path / "one")
    assert [p.name for p in alone] == ["learning_curves.png", "performance_profile.png"]
