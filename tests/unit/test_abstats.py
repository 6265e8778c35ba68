"""A/B statistics: IQM, stratified bootstrap, probability of improvement, verdicts, profiles, curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu, trim_mean

from ftg_common.algos.stats import iqm as table_iqm
from workflows.abstats import (
    Estimate,
    decide,
    interpolate_curves,
    iqm,
    iqm_band,
    iqm_with_ci,
    pairwise_improvements,
    performance_profile,
    probability_of_improvement,
    sample_efficiency,
    step_grid,
    stratified_bootstrap,
    task_scores,
    tau_grid,
    value_at_budget,
    verdict,
)

# --------------------------------------------------------------------------- inputs and IQM


def test_task_scores_accepts_the_three_layouts_and_refuses_bad_ones() -> None:
    assert list(task_scores([1.0, 2.0])) == ["0"]
    two = task_scores(np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]))  # [runs, tasks]
    assert list(two) == ["0", "1"] and two["1"].tolist() == [10.0, 20.0, 30.0]
    ragged = task_scores({"CartPole-v1": [1, 2, 3], "Acrobot-v1": [4]})
    assert {k: v.tolist() for k, v in ragged.items()} == {"CartPole-v1": [1, 2, 3], "Acrobot-v1": [4]}
    with pytest.raises(ValueError, match="no task"):
        task_scores({})
    with pytest.raises(ValueError, match="'b' has no run"):
        task_scores({"a": [1.0], "b": []})
    with pytest.raises(ValueError, match="non-finite"):
        task_scores([1.0, float("nan")])
    with pytest.raises(ValueError, match="shape"):
        task_scores(np.zeros((2, 2, 2)))


def test_iqm_of_known_sets() -> None:
    # n=8: drop 2 from each end of 1..8 -> mean(3, 4, 5, 6) = 4.5
    assert iqm(np.arange(1, 9)) == 4.5
    # n=5: drop floor(5/4) = 1 from each end of [0, 1, 2, 3, 100] -> mean(1, 2, 3) = 2
    assert iqm([100.0, 2.0, 0.0, 3.0, 1.0]) == 2.0
    # n < 4 trims nothing
    assert iqm([1.0, 2.0, 6.0]) == 3.0
    # pooled over tasks: {1..4} and {5..8} -> 4.5, whatever the layout
    assert iqm({"a": [1, 2, 3, 4], "b": [5, 6, 7, 8]}) == 4.5
    assert iqm(np.array([[1, 5], [2, 6], [3, 7], [4, 8]])) == 4.5


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 10, 33])
def test_iqm_agrees_with_trim_mean_and_the_ab_table(n: int) -> None:
    x = np.random.default_rng(n).normal(size=n) * 50
    assert iqm(x) == pytest.approx(trim_mean(x, 0.25), abs=1e-12)
    assert iqm(x) == pytest.approx(table_iqm(x), abs=1e-12)


def test_iqm_ci_contains_the_iqm_collapses_on_one_seed_and_is_deterministic() -> None:
    x = np.random.default_rng(0).normal(loc=100, scale=20, size=10)
    est = iqm_with_ci(x, reps=1000, seed=3)
    assert est.low < est.value < est.high and est.value == iqm(x)
    assert iqm_with_ci(x, reps=1000, seed=3) == est
    assert iqm_with_ci(x, reps=1000, seed=4) != est
    assert iqm_with_ci([42.0], reps=50) == Estimate(42.0, 42.0, 42.0)
    with pytest.raises(ValueError, match="confidence"):
        iqm_with_ci(x, confidence=1.0)
    with pytest.raises(ValueError, match="reps"):
        iqm_with_ci(x, reps=0)


def test_bootstrap_is_stratified_within_each_task() -> None:
    # Task "rare" has one run scoring 0; an unstratified bootstrap of the 11 pooled runs would miss it in
    # about a third of the resamples, a stratified one keeps exactly one run of each task every time.
    scores = {"rare": [0.0], "common": list(range(100, 110))}
    shapes = []

    def zeros_per_resample(per_task: list[np.ndarray]) -> np.ndarray:
        shapes.extend(a.shape for a in per_task)
        pooled = np.concatenate(per_task, axis=1)
        return (pooled == 0.0).sum(axis=1)

    counts = stratified_bootstrap(scores, zeros_per_resample, reps=500, seed=0)
    assert shapes == [(500, 1), (500, 10)]
    assert counts.shape == (500,) and np.all(counts == 1)


# --------------------------------------------------------------------------- probability of improvement


def test_probability_of_improvement_hand_values_with_ties() -> None:
    # x=3 vs y=(1, 3, 4): 1 + 0.5 + 0; x=5: 1 + 1 + 1 -> 4.5 / 6 = 0.75
    assert probability_of_improvement([3.0, 5.0], [1.0, 3.0, 4.0], reps=10).value == 0.75
    # x=(1, 2, 3) vs y=(0, 2, 4): 1 + 1.5 + 2 = 4.5 / 9 = 0.5
    assert probability_of_improvement([1, 2, 3], [0, 2, 4], reps=10).value == 0.5
    # all ties: one half
    assert probability_of_improvement([7, 7], [7, 7, 7], reps=10) == Estimate(0.5, 0.5, 0.5)
    # the mirror: P(Y > X) = 1 - P(X > Y)
    assert probability_of_improvement([1.0, 3.0, 4.0], [3.0, 5.0], reps=10).value == 0.25


def test_probability_of_improvement_averages_tasks_not_runs() -> None:
    # Task a: 0.75 (above); task b: x loses every comparison -> 0. Mean over tasks 0.375, although
    # task b has more runs.
    x = {"a": [3.0, 5.0], "b": [0.0, 0.0, 0.0, 0.0]}
    y = {"b": [1.0, 2.0, 3.0, 4.0, 5.0], "a": [1.0, 3.0, 4.0]}
    assert probability_of_improvement(x, y, reps=10).value == pytest.approx(0.375)
    with pytest.raises(ValueError, match="different tasks"):
        probability_of_improvement(x, {"a": [1.0]})


@pytest.mark.parametrize("seed", range(5))
def test_probability_of_improvement_is_the_mann_whitney_u_over_nm(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=7).astype(float)  # small integers: plenty of ties
    y = rng.integers(0, 6, size=5).astype(float)
    u = mannwhitneyu(x, y, alternative="two-sided").statistic
    assert probability_of_improvement(x, y, reps=10).value == pytest.approx(u / 35)


def test_a_clearly_better_config_gives_p_one_with_a_ci_excluding_one_half() -> None:
    est = probability_of_improvement([500.0, 480.0, 499.0], [20.0, 35.0, 9.0], seed=1)
    assert est == Estimate(1.0, 1.0, 1.0)
    assert decide("zoo", "cleanrl", est).winner == "zoo"
    worse = probability_of_improvement({"a": [0, 1], "b": [0, 1]}, {"a": [5, 6], "b": [7, 8]})
    assert worse == Estimate(0.0, 0.0, 0.0)
    assert verdict("x", "y", worse) == "y beats x: P = 1.00 [1.00, 1.00]"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=12), st.integers(0, 2**32 - 1))
def test_identical_score_sets_give_one_half_and_a_ci_containing_it(xs: list[float], seed: int) -> None:
    est = probability_of_improvement(xs, list(xs), reps=300, seed=seed)
    assert est.value == 0.5
    assert est.low <= 0.5 <= est.high


def test_identical_distributions_give_p_near_one_half_and_cis_that_mostly_cover_it() -> None:
    rng = np.random.default_rng(123)
    estimates = [
        probability_of_improvement(rng.normal(size=10), rng.normal(size=10), reps=500, seed=k)
        for k in range(60)
    ]
    ps = np.array([e.value for e in estimates])
    assert abs(ps.mean() - 0.5) < 0.05
    covered = np.mean([e.low <= 0.5 <= e.high for e in estimates])
    assert covered >= 0.85  # a 95% interval, checked loosely: 60 draws
    assert all(
        verdict("a", "b", e).startswith("a vs b: no decision") for e in estimates if e.low <= 0.5 <= e.high
    )


def test_probability_of_improvement_is_deterministic_given_the_seed() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(1.0, size=6), rng.normal(size=6)
    a = probability_of_improvement(x, y, seed=11)
    assert probability_of_improvement(x, y, seed=11) == a
    assert probability_of_improvement(x, y, seed=12) != a
    assert a.low <= a.value <= a.high
    # Task order does not matter either.
    tx, ty = {"p": x, "q": y[::-1]}, {"p": y, "q": x}
    assert probability_of_improvement(tx, ty, seed=5) == probability_of_improvement(
        dict(reversed(tx.items())), dict(reversed(ty.items())), seed=5
    )


def test_pairwise_improvements_cover_every_pair_in_listing_order() -> None:
    scores = {"zoo": [5.0, 6.0], "cleanrl": [1.0, 2.0], "sb3": [3.0, 7.0]}
    pairs = pairwise_improvements(scores, reps=50)
    assert list(pairs) == [("zoo", "cleanrl"), ("zoo", "sb3"), ("cleanrl", "sb3")]
    assert pairs["zoo", "cleanrl"].value == 1.0
    assert pairs["zoo", "sb3"].value == 0.5  # 5>3, 5<7, 6>3, 6<7
    assert pairs["cleanrl", "sb3"].value == 0.0


# --------------------------------------------------------------------------- verdicts


def test_verdict_lines() -> None:
    assert verdict("zoo", "cleanrl", (0.83, 0.61, 0.97)) == "zoo beats cleanrl: P = 0.83 [0.61, 0.97]"
    assert verdict("zoo", "cleanrl", (0.17, 0.03, 0.39)) == "cleanrl beats zoo: P = 0.83 [0.61, 0.97]"
    v = decide("zoo", "cleanrl", Estimate(0.66, 0.4, 0.9))
    assert not v.decided and v.winner is None
    assert v.line == "zoo vs cleanrl: no decision at this number of seeds: P = 0.66 [0.40, 0.90]"
    # a stricter threshold: a lower end of 0.61 is not enough for 0.7
    assert "no decision" in verdict("zoo", "cleanrl", (0.83, 0.61, 0.97), threshold=0.7)
    assert decide("zoo", "cleanrl", (0.83, 0.71, 0.97), threshold=0.7).winner == "zoo"
    # the lower end must be strictly above the threshold
    assert not decide("a", "b", (0.7, 0.5, 0.9)).decided
    with pytest.raises(ValueError, match="threshold"):
        decide("a", "b", (0.5, 0.4, 0.6), threshold=0.4)


# --------------------------------------------------------------------------- performance profiles


def test_performance_profile_hand_values() -> None:
    prof = performance_profile([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.5, 4.0], reps=200)
    assert prof.fraction.tolist() == [1.0, 0.75, 0.5, 0.0]  # strictly above tau
    assert np.all(prof.low <= prof.fraction) and np.all(prof.fraction <= prof.high)
    assert prof.low[0] == prof.high[0] == 1.0 and prof.low[-1] == prof.high[-1] == 0.0
    # averaged over tasks: task a has no run above 2.5, task b all of them -> 0.5 (pooled would be 4/6)
    multi = performance_profile({"a": [1.0, 2.0], "b": [3.0, 4.0, 5.0, 6.0]}, [2.5], reps=200)
    assert multi.fraction.tolist() == [0.5] and multi.low[0] == multi.high[0] == 0.5


def test_performance_profile_is_deterministic_and_tau_grid_spans_all_scores() -> None:
    scores = {"zoo": np.array([400.0, 500.0, 480.0]), "cleanrl": np.array([100.0, 450.0, 300.0])}
    taus = tau_grid(scores, points=11)
    assert taus[0] == 100.0 and taus[-1] == 500.0 and taus.size == 11
    a = performance_profile(scores["cleanrl"], taus, reps=300, seed=2)
    b = performance_profile(scores["cleanrl"], taus, reps=300, seed=2)
    assert np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high)
    assert np.all(np.diff(a.fraction) <= 0)  # non-increasing in tau
    with pytest.raises(ValueError, match="at least one configuration"):
        tau_grid({})


# --------------------------------------------------------------------------- sample efficiency

CURVES = [
    [(100, 1.0), (200, 2.0), (300, 3.0), (400, 4.0)],
    [(100, 10.0), (250, 20.0), (400, 30.0)],
    [(150, 5.0), (400, 6.0)],
]


def test_value_at_budget_takes_the_last_evaluation_at_or_before_it() -> None:
    assert value_at_budget(CURVES[1], 99) is None
    assert value_at_budget(CURVES[1], 100) == 10.0
    assert value_at_budget(CURVES[1], 249) == 10.0
    assert value_at_budget(CURVES[1], 250) == 20.0
    assert value_at_budget(CURVES[1], 10**9) == 30.0
    assert value_at_budget([], 100) is None
    with pytest.raises(ValueError, match="must not decrease"):
        value_at_budget([(200, 1.0), (100, 2.0)], 300)


def test_sample_efficiency_hand_values() -> None:
    points = sample_efficiency(CURVES, budget=400, reps=200)
    assert [(p.fraction, p.steps, p.seeds) for p in points] == [
        (0.1, 40, 0),
        (0.25, 100, 2),
        (0.5, 200, 3),
        (1.0, 400, 3),
    ]
    assert points[0].iqm is None and points[0].low is None
    assert points[1].iqm == 5.5  # (1 + 10) / 2
    assert points[2].iqm == pytest.approx(17 / 3)  # (2 + 10 + 5) / 3
    assert points[3].iqm == pytest.approx(40 / 3)  # (4 + 30 + 6) / 3
    for p in points[1:]:
        assert p.low is not None and p.high is not None and p.iqm is not None
        assert p.low <= p.iqm <= p.high
    with pytest.raises(ValueError, match="fractions"):
        sample_efficiency(CURVES, budget=400, fractions=(0.0, 1.0))
    with pytest.raises(ValueError, match="budget"):
        sample_efficiency(CURVES, budget=0)


# --------------------------------------------------------------------------- learning curves


def test_interpolation_on_a_common_grid_leaves_uncovered_steps_empty() -> None:
    grid = [0.0, 50.0, 100.0, 150.0]
    got = interpolate_curves([[(0, 0.0), (100, 10.0)], [(50, 4.0), (150, 6.0)], []], grid)
    assert got[0, :3].tolist() == [0.0, 5.0, 10.0] and math.isnan(got[0, 3])
    assert math.isnan(got[1, 0]) and got[1, 1:].tolist() == [4.0, 5.0, 6.0]
    assert np.all(np.isnan(got[2]))
    assert step_grid({"a": CURVES, "b": [[(50, 0.0)]]}, points=8)[[0, -1]].tolist() == [50.0, 400.0]
    with pytest.raises(ValueError, match="no configuration has an evaluation"):
        step_grid({"a": [[]]})


def test_iqm_band_is_the_iqm_over_seeds_with_a_band_around_it() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(1, 11) * 1000.0
    curves = [np.column_stack([steps, steps / 100 + rng.normal(scale=5, size=10)]) for _ in range(7)]
    band = iqm_band(curves, steps, reps=400, seed=1)
    for g in range(steps.size):
        at = [c[g, 1] for c in curves]
        assert band.iqm[g] == pytest.approx(iqm(at), abs=1e-9)
        assert band.low[g] <= band.iqm[g] <= band.high[g]
    assert band.seeds.tolist() == [7] * 10
    again = iqm_band(curves, steps, reps=400, seed=1)
    assert np.array_equal(band.low, again.low) and np.array_equal(band.high, again.high)
    # identical seeds: no spread at all
    same = iqm_band([curves[0]] * 4, steps, reps=100)
    assert np.allclose(same.low, same.iqm) and np.allclose(same.high, same.iqm)


def test_iqm_band_uses_only_the_seeds_that_cover_a_step() -> None:
    # The second seed stopped at step 200: beyond it the band is the first seed's curve alone.
    band = iqm_band([[(100, 1.0), (300, 3.0)], [(100, 5.0), (200, 5.0)]], [100.0, 200.0, 300.0], reps=200)
    assert band.seeds.tolist() == [2, 2, 1]
    assert band.iqm.tolist() == [3.0, 3.5, 3.0]
    assert band.low[2] == band.high[2] == 3.0
    with pytest.raises(ValueError, match="at least one curve"):
        iqm_band([], [1.0])
