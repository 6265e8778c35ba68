"""Tabular Q-learning math against hand-computed values: the discretiser and the TD update."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from ftg_common.algos.qlearning import bin_indices, combine_passes, mixed_radix_index, q_learning_pass
from ftg_common.errors import UnknownEnvError
from ftg_common.policy.qtable import QTableSpec
from ftg_common.replay.transitions import Transitions
from ftg_common.update.qlearning import QTableVersion, initial_qtable_version, train_qlearning
from ftg_common.update.qlearning_plan import plan_qlearning_update


# --- discretisation --------------------------------------------------------------------------------
def test_mixed_radix_puts_the_first_component_first() -> None:
    # sizes (3, 4, 2), the second component starting at 1: place values (8, 2, 1).
    sizes, starts = np.array([3, 4, 2]), np.array([0, 1, 0])
    digits = np.array([[0, 1, 0], [2, 3, 1], [2, 4, 1], [1, 1, 0]], dtype=np.float32)
    assert mixed_radix_index(digits, sizes, starts).tolist() == [0, 21, 23, 8]


def test_mixed_radix_refuses_values_outside_their_component() -> None:
    with pytest.raises(ValueError, match=r"component 1 = 0.0 is outside \[1, 5\)"):
        mixed_radix_index(np.array([[0.0, 0.0, 0.0]]), np.array([3, 4, 2]), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="whole numbers"):
        mixed_radix_index(np.array([[0.5]]), np.array([3]))


def test_bins_have_uniform_width_with_high_in_the_last_and_outliers_clipped() -> None:
    # [0, 2] in 4 bins of width 0.5.
    x = np.array([-1.0, 0.0, 0.49, 0.5, 1.0, 1.99, 2.0, 5.0, np.inf, -np.inf])[:, None]
    got = bin_indices(x, np.array([4]), np.array([0.0]), np.array([2.0]))[:, 0]
    assert got.tolist() == [0, 0, 0, 1, 2, 3, 3, 3, 3, 0]


def test_a_box_state_is_its_bins_in_mixed_radix() -> None:
    spec = QTableSpec(kind="bins", n_actions=2, sizes=[2, 1, 3, 1], low=[-1.0] * 4, high=[1.0] * 4)
    obs = np.array([[0.5, 0.0, -0.9, 0.0], [0.5, 9.0, 0.9, -9.0], [-0.5, 0.0, 0.0, 0.0]], dtype=np.float32)
    # Bins (1, 0, 0, 0), (1, 0, 2, 0), (0, 0, 1, 0); place values (3, 3, 1, 1).
    assert spec.states(obs).tolist() == [3, 5, 1]
    assert spec.n_states == 6 and spec.shape == (6, 2)


def test_discrete_spaces_are_their_own_index() -> None:
    lake = QTableSpec.from_spaces(spaces.Discrete(16), spaces.Discrete(4))
    assert (lake.kind, lake.shape) == ("index", (16, 4))
    assert lake.states(np.array([[0.0], [15.0]])).tolist() == [0, 15]
    shifted = QTableSpec.from_spaces(spaces.Discrete(5, start=2), spaces.Discrete(2))
    assert shifted.states(np.array([2.0, 6.0])).tolist() == [0, 4]
    # Blackjack's (player sum, dealer card, usable ace): 32 x 11 x 2 states.
    jack = QTableSpec.from_spaces(
        spaces.Tuple((spaces.Discrete(32), spaces.Discrete(11), spaces.Discrete(2))), spaces.Discrete(2)
    )
    assert jack.n_states == 704 and jack.states(np.array([[14.0, 10.0, 1.0]])).tolist() == [14 * 22 + 21]
    multi = QTableSpec.from_spaces(spaces.MultiDiscrete([3, 4]), spaces.Discrete(2))
    assert multi.n_states == 12 and multi.states(np.array([[2.0, 3.0]])).tolist() == [11]


CARTPOLE_BOX = spaces.Box(
    np.array([-4.8, -np.inf, -0.42, -np.inf], np.float32), np.array([4.8, np.inf, 0.42, np.inf], np.float32)
)


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({}, "bins", "need bins"),
        ({"bins": [3, 3]}, "bins", "2 counts; the observations have 4"),
        ({"bins": 3}, "low", r"infinite in dimension\(s\) \[1, 3\]"),
        ({"bins": 3, "low": [-1.0] * 4}, "high", r"infinite in dimension\(s\) \[1, 3\]"),
        ({"bins": 3, "low": [-1.0] * 3, "high": [1.0] * 4}, "low", "3 values"),
        ({"bins": 3, "low": [0.0] * 4, "high": [1.0, 1.0, -1.0, 1.0]}, "high", r"dimension\(s\) \[2\]"),
        ({"bins": 1 << 12, "low": [-1.0] * 4, "high": [1.0] * 4}, "bins", "exceeds"),
    ],
)
def test_a_box_table_needs_bins_and_finite_edges_named_by_field(kwargs: dict, field: str, match: str) -> None:
    with pytest.raises(UnknownEnvError, match=match) as err:
        QTableSpec.from_spaces(CARTPOLE_BOX, spaces.Discrete(2), **kwargs)
    assert err.value.field == field


def test_given_edges_replace_the_space_bounds() -> None:
    spec = QTableSpec.from_spaces(
        CARTPOLE_BOX,
        spaces.Discrete(2),
        bins=[6, 4, 6, 4],
        low=[-2.4, -3.0, -0.2, -3.5],
        high=[2.4, 3.0, 0.2, 3.5],
    )
    assert spec.n_states == 576 and spec.low[1] == -3.0 and spec.high[3] == 3.5


def test_discrete_observations_refuse_bins_and_actions_must_be_discrete() -> None:
    with pytest.raises(UnknownEnvError, match="their own table index") as err:
        QTableSpec.from_spaces(spaces.Discrete(16), spaces.Discrete(4), bins=4)
    assert err.value.field == "bins"
    with pytest.raises(UnknownEnvError, match="Discrete action space") as err:
        QTableSpec.from_spaces(spaces.Discrete(16), spaces.Box(-1, 1, (1,)))
    assert err.value.field == "env_id"


# --- the TD update ---------------------------------------------------------------------------------
def _table() -> np.ndarray:
    q = np.zeros((3, 2))
    q[1] = [0.5, 2.0]
    return q


# (s, a, r, s', terminated, truncated): a bootstrapping step, a terminal step, and a step cut by a time
# limit, which is not terminated and so bootstraps from the row the first step just wrote.
STEPS = np.array([[0, 1, 1.0, 1, 0, 0], [2, 0, 1.0, 1, 1, 0], [2, 1, 0.0, 0, 0, 1]])
AFTER = np.array([[0.0, 1.4], [0.5, 2.0], [0.5, 0.63]])


def _pass(q: np.ndarray, steps: np.ndarray) -> object:
    s, a, r, s2, done, _ = steps.T
    return q_learning_pass(q, s.astype(int), a.astype(int), r, s2.astype(int), done.astype(bool), 0.5, 0.9)


def test_td_updates_match_hand_computed_values_in_order() -> None:
    q = _table()
    stats = _pass(q, STEPS)
    # 1: target 1 + 0.9 * max(0.5, 2.0) = 2.8, Q(0,1) = 0 + 0.5 * 2.8 = 1.4
    # 2: terminated, target 1 (no bootstrap),  Q(2,0) = 0 + 0.5 * 1 = 0.5
    # 3: truncated, target 0 + 0.9 * max Q(0, .) = 0.9 * 1.4 = 1.26, Q(2,1) = 0.63
    assert q == pytest.approx(AFTER)
    assert stats.n_updates == 3
    assert stats.td_loss == pytest.approx((2.8**2 + 1.0**2 + 1.26**2) / 3)
    assert stats.q_mean == 0.0


def test_the_order_of_the_transitions_matters() -> None:
    q = _table()
    _pass(q, STEPS[::-1])
    # The truncated step now runs first, while Q(0, .) is still zero.
    assert q[2, 1] == 0.0 and q[0, 1] == pytest.approx(1.4)


def test_combined_statistics_weight_each_pass_by_its_count() -> None:
    q = _table()
    one, two = _pass(q, STEPS[:1]), _pass(q, STEPS[1:])
    both = combine_passes([one, two, combine_passes([])])
    assert both.n_updates == 3
    assert both.td_loss == pytest.approx((2.8**2 + 1.0**2 + 1.26**2) / 3)


def _transitions(steps: np.ndarray) -> Transitions:
    s, a, r, s2, done, cut = steps.T
    n = len(steps)
    return Transitions(
        obs=s[:, None].astype(np.float32),
        actions=a.astype(np.int64),
        rewards=r.astype(np.float32),
        next_obs=s2[:, None].astype(np.float32),
        terminated=done.astype(bool),
        truncated=cut.astype(bool),
        behaviour_probs=np.ones(n, np.float32),
    )


def test_an_update_trains_a_copy_in_collected_order_and_counts() -> None:
    from ftg_common.config import QLearningConfig

    hp = QLearningConfig(env_id="FrozenLake-v1", learning_rate=0.5, gamma=0.9, train_freq=3, total_steps=30)
    spec = QTableSpec(kind="index", n_actions=2, sizes=[3], starts=[0])
    v0 = initial_qtable_version(spec, 0.0)
    v0 = QTableVersion(v0.state, {"q_table": _table()})
    plan = plan_qlearning_update(hp, 0, 0)
    # Two shards: the first holds step 1, the second steps 2 and 3; applied shard by shard.
    v1, stats = train_qlearning(v0, plan, [_transitions(STEPS[:1]), _transitions(STEPS[1:])])
    assert v1.table == pytest.approx(AFTER)
    assert v0.table[0, 1] == 0.0  # the version trained on is left as it was
    assert (v1.state.version, v1.state.iteration, v1.state.total_steps, v1.state.n_updates) == (1, 0, 3, 3)
    assert stats.online.n_updates == 3 and stats.replayed.n_updates == 0
    with pytest.raises(ValueError, match=r"version 0 \(0 steps\) cannot train after collection 1"):
        train_qlearning(v0, plan_qlearning_update(hp, 0, 1), [])


def test_nothing_is_applied_before_learning_starts() -> None:
    from ftg_common.config import QLearningConfig

    hp = QLearningConfig(train_freq=3, total_steps=30, learning_starts=3)
    plan = plan_qlearning_update(hp, 0, 0)
    assert not plan.train and plan.replay_batches == 0
    v0 = initial_qtable_version(QTableSpec(kind="index", n_actions=2, sizes=[3], starts=[0]), 0.25)
    v1, stats = train_qlearning(v0, plan, [_transitions(STEPS)])
    assert v1.table.tolist() == [[0.25, 0.25]] * 3 and v1.state.n_updates == 0 and v1.state.total_steps == 3
    assert plan_qlearning_update(hp, 3, 1).train


def test_a_linear_step_size_decays_with_the_steps_taken() -> None:
    from ftg_common.config import QLearningConfig

    hp = QLearningConfig(train_freq=10, total_steps=40, learning_rate=0.8, lr_schedule="linear")
    # Read after each collection: progress remaining 0.75, 0.5, ...
    assert [plan_qlearning_update(hp, 10 * i, i).learning_rate for i in range(4)] == pytest.approx(
        [0.6, 0.4, 0.2, 0.0]
    )
