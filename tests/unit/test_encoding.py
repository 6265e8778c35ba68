"""Observation encodings: one-hot for Discrete, concatenated one-hots for Tuple/MultiDiscrete."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from ftg_common.envs.encoding import ObservationEncoding, observation_encoding, raw_observation


def _env_or_skip(env_id: str) -> gym.Env:
    if env_id not in gym.envs.registry:
        pytest.skip(f"{env_id} is not registered in this gymnasium")
    return gym.make(env_id)


@pytest.mark.parametrize(
    ("name", "space", "dim"),
    [
        ("FrozenLake-v1", spaces.Discrete(16), 16),
        ("Taxi-v3", spaces.Discrete(500), 500),  # the RL Zoo's ids; gymnasium 1.4 registers Taxi-v4 ...
        ("CliffWalking-v0", spaces.Discrete(48), 48),  # ... and CliffWalking-v1 with the same spaces
        ("Blackjack-v1", spaces.Tuple((spaces.Discrete(32), spaces.Discrete(11), spaces.Discrete(2))), 45),
    ],
)
def test_toy_text_spaces(name: str, space: spaces.Space, dim: int) -> None:
    width, enc = observation_encoding(space)
    assert width == enc.dim == dim
    samples = [space.sample() for _ in range(20)]
    raw = np.stack([raw_observation(s) for s in samples])
    out = enc(raw)
    assert out.shape == (20, dim) and out.dtype == np.float32
    # One hot per component, and it decodes back to the sample.
    assert np.all(out.sum(axis=1) == enc.raw_dim)
    if enc.raw_dim == 1:
        np.testing.assert_array_equal(out.argmax(axis=1), [int(s) for s in samples])


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "Taxi-v4", "CliffWalking-v1", "Blackjack-v1"])
def test_real_env_observations(env_id: str) -> None:
    env = _env_or_skip(env_id)
    dim, enc = observation_encoding(env.observation_space)
    obs, _ = env.reset(seed=0)
    rows = [raw_observation(obs)]
    for _ in range(5):
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        rows.append(raw_observation(obs))
        if term or trunc:
            obs, _ = env.reset()
    out = enc(np.stack(rows))
    assert out.shape == (6, dim)
    assert np.all(out.sum(axis=1) == enc.raw_dim)


def test_blackjack_layout_hand_computed() -> None:
    _, enc = observation_encoding(
        spaces.Tuple((spaces.Discrete(32), spaces.Discrete(11), spaces.Discrete(2)))
    )
    out = enc(np.array([[11.0, 10.0, 0.0], [31.0, 0.0, 1.0]]))
    # player sum 11 -> column 11; dealer card 10 -> 32 + 10 = 42; usable ace 0 -> 43 + 0 = 43
    assert list(np.flatnonzero(out[0])) == [11, 42, 43]
    assert list(np.flatnonzero(out[1])) == [31, 32, 44]


def test_starts_are_honoured() -> None:
    _, enc = observation_encoding(spaces.Discrete(3, start=-1))
    np.testing.assert_array_equal(enc(np.array([-1, 1])), [[1, 0, 0], [0, 0, 1]])
    _, md = observation_encoding(spaces.MultiDiscrete([3, 4], start=[1, -1]))
    assert md.dim == 7
    np.testing.assert_array_equal(np.flatnonzero(md(np.array([[1, -1]]))[0]), [0, 3])
    np.testing.assert_array_equal(np.flatnonzero(md(np.array([[3, 2]]))[0]), [2, 6])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (np.array([[3.0, 0.0]]), r"component 0 = 3.0 is outside \[0, 3\)"),
        (np.array([[0.0, -1.0]]), r"component 1 = -1.0 is outside \[0, 2\)"),
        (np.array([[0.5, 0.0]]), "whole numbers"),
        (np.array([[0.0, 0.0, 0.0]]), r"must be \[B, 2\]"),
    ],
)
def test_bad_values_are_errors(raw: np.ndarray, message: str) -> None:
    _, enc = observation_encoding(spaces.MultiDiscrete([3, 2]))
    with pytest.raises(ValueError, match=message):
        enc(raw)


def test_box_and_multibinary_are_identity() -> None:
    dim, box = observation_encoding(spaces.Box(-1, 1, (2, 3)))
    assert (dim, box.kind, box.identity) == (6, "box", True)
    x = np.arange(12, dtype=np.float64).reshape(2, 6)
    np.testing.assert_array_equal(box(x), x.astype(np.float32))
    dim, bits = observation_encoding(spaces.MultiBinary(4))
    assert (dim, bits.kind) == (4, "binary")
    np.testing.assert_array_equal(bits(np.array([[1, 0, 1, 1]], dtype=np.int8)), [[1.0, 0.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    "space",
    [
        spaces.Dict({"a": spaces.Discrete(2)}),
        spaces.Tuple((spaces.Discrete(2), spaces.Box(0, 1, (1,)))),
        spaces.Tuple(()),
        spaces.Text(5),
        spaces.MultiDiscrete([[2, 2], [2, 2]]),
    ],
)
def test_unsupported_spaces(space: spaces.Space) -> None:
    with pytest.raises(ValueError, match="unsupported observation space"):
        observation_encoding(space)


def test_json_round_trip_and_validation() -> None:
    _, enc = observation_encoding(spaces.MultiDiscrete([3, 4], start=[1, -1]))
    assert ObservationEncoding.from_json(enc.to_json()) == enc
    with pytest.raises(ValueError, match="inconsistent"):
        ObservationEncoding("onehot", 2, 5, (3, 3), (0, 0))
    with pytest.raises(ValueError, match="keeps the width"):
        ObservationEncoding("box", 2, 3)


def test_matches_sb3_preprocessing() -> None:
    preprocessing = pytest.importorskip(
        "stable_baselines3.common.preprocessing",
        reason="stable-baselines3 is not installed (the bench extra)",
    )
    torch = pytest.importorskip("torch")
    for space in (spaces.Discrete(16), spaces.MultiDiscrete([3, 5, 2])):
        samples = np.stack([np.atleast_1d(space.sample()) for _ in range(10)])
        _, enc = observation_encoding(space)
        theirs = preprocessing.preprocess_obs(
            torch.as_tensor(samples.squeeze(-1) if samples.shape[1] == 1 else samples), space
        )
        np.testing.assert_array_equal(enc(samples.astype(np.float32)), theirs.numpy())


def test_modules_stay_light() -> None:
    # The numpy-only modules must import neither torch nor gymnasium (the collector's cold start).
    code = (
        "import sys\n"
        "import ftg_common.envs.encoding, ftg_common.normalize, ftg_common.algos.gsde\n"
        "heavy = sorted(m for m in ('torch', 'gymnasium', 'yaml') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
