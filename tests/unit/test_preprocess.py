"""The raw observation -> network input step an exported model carries, checked by hand."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from gymnasium import spaces

from ftg_common.envs.encoding import observation_encoding
from ftg_common.normalize import NormalizeSettings, NormStats, RunningStats
from ftg_common.policy.preprocess import ObsPreprocess

STATS = NormStats(
    RunningStats(np.array([1.0, -2.0]), np.array([4.0, 0.25]), 12.5), RunningStats(0.5, 9.0, 3.0)
)


def test_one_hot_columns_are_one_gather_and_one_comparison() -> None:
    _, enc = observation_encoding(spaces.MultiDiscrete([3, 2], start=[1, 0]))
    component, value = enc.columns()
    np.testing.assert_array_equal(component, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(value, [1, 2, 3, 0, 1])
    raw = np.array(list(itertools.product([1, 2, 3], [0, 1])), dtype=np.float32)
    np.testing.assert_array_equal((raw[:, component] == value).astype(np.float32), enc.encode(raw))
    assert enc.to_dict() == {"kind": "onehot", "raw_dim": 2, "dim": 5, "sizes": [3, 2], "starts": [1, 0]}


def test_normalisation_is_the_evaluators_formula_with_its_clip() -> None:
    pre = ObsPreprocess.build(2, None, STATS, NormalizeSettings(clip_obs=5.0, epsilon=0.0))
    assert pre.normalizes and pre.raw_dim == pre.dim == 2
    # (x - [1, -2]) / [2, 0.5]: [3, -1] -> [1, 2]; [41, -2] -> [20 -> 5, 0]; [-1, -5] -> [-1, -6 -> -5].
    out = pre.apply(np.array([[3.0, -1.0], [41.0, -2.0], [-1.0, -5.0]]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.0, 2.0], [5.0, 0.0], [-1.0, -5.0]])
    np.testing.assert_array_equal(pre.std(), [2.0, 0.5])


def test_statistics_are_recorded_exactly_even_where_they_are_not_applied() -> None:
    pre = ObsPreprocess.build(2, None, STATS, NormalizeSettings(norm_obs=False))
    assert not pre.normalizes and pre.identity
    np.testing.assert_array_equal(pre.apply(np.array([[3.0, -1.0]])), [[3.0, -1.0]])
    meta = json.loads(json.dumps(pre.metadata()))  # what a JSON reader gets back
    norm = meta["normalization"]
    assert norm["applied"] is False and norm["mean"] == [1.0, -2.0] and norm["var"] == [4.0, 0.25]
    assert norm["count"] == 12.5 and norm["clip_obs"] == 10.0 and norm["epsilon"] == 1e-8
    assert norm["ret_rms"] == {"mean": 0.5, "var": 9.0, "count": 3.0}
    assert norm["settings"]["norm_obs"] is False and meta["encoding"] is None


def test_a_discrete_observation_is_one_hot_and_its_example_is_valid() -> None:
    _, enc = observation_encoding(spaces.Discrete(4, start=-1))
    pre = ObsPreprocess.build(4, enc)
    assert (pre.raw_dim, pre.dim, pre.identity) == (1, 4, False)
    np.testing.assert_array_equal(pre.apply(np.array([[2.0], [-1.0]])), [[0, 0, 0, 1], [1, 0, 0, 0]])
    np.testing.assert_array_equal(pre.example(2), [[-1.0], [-1.0]])
    with pytest.raises(ValueError, match=r"outside \[-1, 3\)"):
        pre.apply(np.array([[3.0]]))


def test_widths_that_do_not_fit_the_network_are_refused() -> None:
    _, enc = observation_encoding(spaces.Discrete(4))
    with pytest.raises(ValueError, match="the encoding is 4 wide, the network takes 5"):
        ObsPreprocess.build(5, enc)
    with pytest.raises(ValueError, match=r"statistics of shape \(2,\) do not fit \[3\]"):
        ObsPreprocess.build(3, None, STATS, NormalizeSettings())
    with pytest.raises(ValueError, match=r"raw observations must be \[B, 2\]"):
        ObsPreprocess.build(2).apply(np.zeros((1, 3)))
