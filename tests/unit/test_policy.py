"""Policy spec, numpy inference and torch training network: agreement, I/O and sampling."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ftg_common.policy.numpy_policy import NumpyPolicy
from ftg_common.policy.spec import (
    PolicySpec,
    load_policy_bytes,
    save_policy_bytes,
    tensor_names,
)
from ftg_common.policy.torch_policy import ActorCritic

ROOT = Path(__file__).resolve().parents[2]

ARCHS = [([64, 64], "tanh"), ([32], "relu")]


def discrete_spec(net_arch: list[int], activation: str) -> PolicySpec:
    return PolicySpec(
        obs_dim=4, action_kind="discrete", n_actions=2, net_arch=net_arch, activation=activation
    )


def box_spec(net_arch: list[int], activation: str) -> PolicySpec:
    return PolicySpec(
        obs_dim=3,
        action_kind="box",
        action_dim=1,
        action_low=[-2.0],
        action_high=[2.0],
        net_arch=net_arch,
        activation=activation,
        log_std_init=-0.5,
    )


def make_pair(spec: PolicySpec, seed: int = 0) -> tuple[ActorCritic, NumpyPolicy]:
    net = ActorCritic(spec)
    net.init_weights(seed)
    # Orthogonal init leaves the policy head near zero; perturb every tensor so the check is
    # sensitive to each weight, bias and log_std.
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return net, NumpyPolicy(spec, net.flat_tensors())


def random_obs(spec: PolicySpec, b: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(b, spec.obs_dim)).astype(np.float32)


def random_actions(spec: PolicySpec, b: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if spec.action_kind == "discrete":
        return rng.integers(0, spec.n_actions, size=b).astype(np.int64)
    return rng.normal(scale=1.5, size=(b, spec.action_dim)).astype(np.float32)


ALL_SPECS = [f(a, act) for f in (discrete_spec, box_spec) for a, act in ARCHS]
SPEC_IDS = [f"{s.action_kind}-{'x'.join(map(str, s.net_arch))}-{s.activation}" for s in ALL_SPECS]


# --- numpy vs torch -------------------------------------------------------------------------------
F32_EPS = float(np.finfo(np.float32).eps)
# Measured worst case over 10 seeds x 4 specs: 8 eps; 64 leaves room for other BLAS kernels/threads.
F32_ULPS = 64


def assert_f32_close(actual: np.ndarray, reference: np.ndarray) -> None:
    """A float32 computation against a float64 reference: error within F32_ULPS eps of (|ref| + 1).

    A tolerance tied to float32's precision and the values' magnitude, not a fixed rtol: the float32
    result legitimately depends on summation order (BLAS kernel, thread count).
    """
    tol = F32_ULPS * F32_EPS * (np.abs(reference) + 1.0)
    err = np.abs(np.asarray(actual, dtype=np.float64) - reference)
    assert np.all(err <= tol), f"max error {err.max():.3g} at tolerance {tol[np.argmax(err - tol)]:.3g}"


@pytest.mark.parametrize("spec", ALL_SPECS, ids=SPEC_IDS)
def test_numpy_matches_torch(spec: PolicySpec) -> None:
    net, pol = make_pair(spec)
    obs = random_obs(spec, 256, seed=1)
    actions = random_actions(spec, 256, seed=2)
    ref = net.double()  # float64 reference: independent of float32 rounding order
    with torch.no_grad():
        obs64 = torch.from_numpy(obs).double()
        act_t = torch.from_numpy(actions)
        t_logp, _, t_val = ref.evaluate_actions(
            obs64, act_t if spec.action_kind == "discrete" else act_t.double()
        )
        t_head = ref.forward_actor(obs64).numpy()
    assert_f32_close(pol.log_prob(obs, actions), t_logp.numpy())
    assert_f32_close(pol.value(obs), t_val.numpy())
    det = pol.act_deterministic(obs)
    if spec.action_kind == "discrete":
        assert det.dtype == np.int64 and det.shape == (256,)
        # Rows whose top two logits are closer than float32 can resolve may legitimately differ.
        top2 = np.sort(t_head, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > F32_ULPS * F32_EPS * (np.abs(top2[:, 1]) + 1.0)
        assert clear.mean() > 0.9
        np.testing.assert_array_equal(det[clear], t_head.argmax(axis=1)[clear])
    else:
        assert det.dtype == np.float32 and det.shape == (256, 1)
        assert_f32_close(det, t_head)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=SPEC_IDS)
def test_act_is_consistent_and_reproducible(spec: PolicySpec) -> None:
    _, pol = make_pair(spec)
    obs = random_obs(spec, 64, seed=3)
    a1, v1, lp1 = pol.act(obs, np.random.default_rng(42))
    a2, v2, lp2 = pol.act(obs, np.random.default_rng(42))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(lp1, lp2)
    assert v1.dtype == np.float32 and lp1.dtype == np.float32
    assert v1.shape == (64,) and lp1.shape == (64,)
    if spec.action_kind == "discrete":
        assert a1.dtype == np.int64 and a1.shape == (64,)
    else:
        assert a1.dtype == np.float32 and a1.shape == (64, 1)
    np.testing.assert_array_equal(v1, pol.value(obs))
    np.testing.assert_allclose(lp1, pol.log_prob(obs, a1), rtol=1e-6, atol=1e-6)


def test_torch_matches_torch_distributions() -> None:
    # Independent reference for the hand-written log-prob / entropy formulas.
    for spec in (discrete_spec([16], "tanh"), box_spec([16], "tanh")):
        net, _ = make_pair(spec)
        obs = torch.from_numpy(random_obs(spec, 32, seed=4))
        actions = torch.from_numpy(random_actions(spec, 32, seed=5))
        with torch.no_grad():
            logp, ent, _ = net.evaluate_actions(obs, actions)
            head = net.forward_actor(obs)
            if spec.action_kind == "discrete":
                dist = torch.distributions.Categorical(logits=head)
                ref_logp, ref_ent = dist.log_prob(actions), dist.entropy()
            else:
                dist = torch.distributions.Normal(head, net.log_std.exp())
                ref_logp, ref_ent = dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)
        torch.testing.assert_close(logp, ref_logp)
        torch.testing.assert_close(ent, ref_ent)


def test_evaluate_actions_gradients_reach_every_parameter() -> None:
    for spec in (discrete_spec([8], "relu"), box_spec([8, 8], "tanh")):
        net, _ = make_pair(spec)
        obs = torch.from_numpy(random_obs(spec, 16, seed=6))
        actions = torch.from_numpy(random_actions(spec, 16, seed=7))
        logp, ent, val = net.evaluate_actions(obs, actions)
        (logp.mean() + ent.mean() + val.pow(2).mean()).backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


# --- tensors, names and serialisation -------------------------------------------------------------
def test_tensor_names_and_layout() -> None:
    spec = box_spec([64, 32], "tanh")
    flat = ActorCritic(spec).flat_tensors()
    assert (
        set(flat)
        == set(tensor_names(spec))
        == {
            "pi.0.weight",
            "pi.0.bias",
            "pi.1.weight",
            "pi.1.bias",
            "pi.out.weight",
            "pi.out.bias",
            "vf.0.weight",
            "vf.0.bias",
            "vf.1.weight",
            "vf.1.bias",
            "vf.out.weight",
            "vf.out.bias",
            "log_std",
        }
    )
    assert flat["pi.0.weight"].shape == (64, 3)  # torch Linear layout [out, in]
    assert flat["pi.1.weight"].shape == (32, 64)
    assert flat["pi.out.weight"].shape == (1, 32)
    assert flat["vf.out.weight"].shape == (1, 32)
    assert all(v.dtype == np.float32 for v in flat.values())
    np.testing.assert_array_equal(flat["log_std"], [-0.5])
    assert "log_std" not in tensor_names(discrete_spec([64], "tanh"))


@pytest.mark.parametrize("spec", ALL_SPECS, ids=SPEC_IDS)
def test_safetensors_round_trip(spec: PolicySpec) -> None:
    net, pol = make_pair(spec)
    data = st_save(net.flat_tensors(), metadata={"policy_spec": spec.to_json()})
    pol2 = NumpyPolicy(PolicySpec.from_json(spec.to_json()), st_load(data))
    obs = random_obs(spec, 32, seed=8)
    np.testing.assert_array_equal(pol2.value(obs), pol.value(obs))
    np.testing.assert_array_equal(pol2.act_deterministic(obs), pol.act_deterministic(obs))
    # And back into a fresh torch module.
    net2 = ActorCritic(spec)
    net2.load_flat_tensors(st_load(data))
    for k, v in net.state_dict().items():
        torch.testing.assert_close(net2.state_dict()[k], v, rtol=0, atol=0)


def test_policy_bytes_helpers_round_trip_and_are_deterministic() -> None:
    spec = box_spec([16], "tanh")
    net, _ = make_pair(spec)
    data = save_policy_bytes(spec, net.flat_tensors(), {"version": "3", "run_id": "abc"})
    assert data == save_policy_bytes(spec, net.flat_tensors(), {"run_id": "abc", "version": "3"})
    spec2, tensors, meta = load_policy_bytes(data)
    assert spec2 == spec
    assert meta == {"version": "3", "run_id": "abc"}
    for k, v in net.flat_tensors().items():
        np.testing.assert_array_equal(tensors[k], v)
    # Files written by the reference safetensors writer load too.
    ref = st_save(net.flat_tensors(), metadata={"policy_spec": spec.to_json()})
    assert load_policy_bytes(ref)[0] == spec
    with pytest.raises(ValueError, match="no 'policy_spec'"):
        load_policy_bytes(st_save({"x": np.zeros(1, np.float32)}))


def test_wrong_tensors_are_rejected() -> None:
    spec = discrete_spec([8], "tanh")
    flat = ActorCritic(spec).flat_tensors()
    missing = {k: v for k, v in flat.items() if k != "vf.out.bias"}
    with pytest.raises(ValueError, match="missing"):
        NumpyPolicy(spec, missing)
    with pytest.raises(ValueError, match="unexpected"):
        ActorCritic(spec).load_flat_tensors({**flat, "log_std": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="shape"):
        NumpyPolicy(spec, {**flat, "pi.0.weight": flat["pi.0.weight"].T})


def test_init_weights_deterministic_per_seed_and_leaves_global_rng() -> None:
    spec = discrete_spec([64, 64], "tanh")
    a, b, c = ActorCritic(spec), ActorCritic(spec), ActorCritic(spec)
    state = torch.get_rng_state()  # construction itself draws from the global RNG (nn.Linear)
    a.init_weights(7)
    b.init_weights(7)
    c.init_weights(8)
    assert torch.equal(torch.get_rng_state(), state)
    fa, fb, fc = a.flat_tensors(), b.flat_tensors(), c.flat_tensors()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])
    assert not np.array_equal(fa["pi.0.weight"], fc["pi.0.weight"])
    assert not np.array_equal(fa["vf.out.weight"], fc["vf.out.weight"])
    # biases zero; orthogonal rows scaled by the gain (hidden sqrt(2), policy head 0.01, value head 1)
    assert all(not fa[k].any() for k in fa if k.endswith("bias"))
    w = fa["pi.1.weight"]
    np.testing.assert_allclose(w @ w.T, 2.0 * np.eye(64), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fa["pi.out.weight"], axis=1), 0.01, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fa["vf.out.weight"]), 1.0, rtol=1e-5)


# --- sampling -------------------------------------------------------------------------------------
def test_categorical_sampling_frequencies_match_softmax() -> None:
    spec = PolicySpec(obs_dim=4, action_kind="discrete", n_actions=3, net_arch=[8])
    flat = ActorCritic(spec).flat_tensors()
    logits = np.array([0.0, 1.0, -1.0], dtype=np.float32)
    flat["pi.out.weight"][:] = 0.0  # state-independent policy: probs = softmax(bias)
    flat["pi.out.bias"][:] = logits
    pol = NumpyPolicy(spec, flat)
    n = 40_000
    actions, _, logp = pol.act(np.zeros((n, 4), np.float32), np.random.default_rng(0))
    probs = np.exp(logits) / np.exp(logits).sum()
    freq = np.bincount(actions, minlength=3) / n
    # 5 standard errors: sqrt(p(1-p)/n) <= 0.0025
    np.testing.assert_allclose(freq, probs, atol=5 * 0.0025)
    np.testing.assert_allclose(logp, np.log(probs)[actions], atol=1e-6)


def test_gaussian_sampling_moments_and_unclipped() -> None:
    spec = PolicySpec(
        obs_dim=3, action_kind="box", action_dim=2, action_low=[-1, -1], action_high=[1, 1], net_arch=[8]
    )
    flat = ActorCritic(spec).flat_tensors()
    flat["pi.out.weight"][:] = 0.0
    flat["pi.out.bias"][:] = [0.5, -3.0]  # mean outside the bounds on purpose
    flat["log_std"][:] = [math.log(0.5), math.log(2.0)]
    pol = NumpyPolicy(spec, flat)
    n = 40_000
    actions, _, logp = pol.act(np.zeros((n, 3), np.float32), np.random.default_rng(1))
    np.testing.assert_allclose(actions.mean(axis=0), [0.5, -3.0], atol=0.05)
    np.testing.assert_allclose(actions.std(axis=0), [0.5, 2.0], rtol=0.03)
    assert actions.min() < -1.0 and actions.max() > 1.0  # not clipped to the action bounds
    z = (actions - [0.5, -3.0]) / [0.5, 2.0]
    ref = (-0.5 * z**2 - np.log([0.5, 2.0]) - 0.5 * math.log(2 * math.pi)).sum(axis=1)
    np.testing.assert_allclose(logp, ref, atol=1e-5)


def test_observations_are_flattened_and_checked() -> None:
    spec = PolicySpec(obs_dim=6, action_kind="discrete", n_actions=2, net_arch=[])  # linear policy
    _, pol = make_pair(spec)
    obs = random_obs(spec, 5, seed=9)
    np.testing.assert_array_equal(pol.value(obs.reshape(5, 2, 3)), pol.value(obs))
    with pytest.raises(ValueError, match="observations"):
        pol.value(np.zeros((5, 4), np.float32))


# --- import hygiene -------------------------------------------------------------------------------
def test_numpy_policy_does_not_import_torch() -> None:
    code = (
        "import sys, ftg_common.policy, ftg_common.policy.numpy_policy, ftg_common.algos.gae, "
        "ftg_common.algos.stats; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# --- spec -----------------------------------------------------------------------------------------
def test_from_spaces_cartpole_and_pendulum() -> None:
    env = gym.make("CartPole-v1")
    spec = PolicySpec.from_spaces(env.observation_space, env.action_space, [64, 64], "tanh")
    assert (spec.obs_dim, spec.action_kind, spec.n_actions, spec.action_dim) == (4, "discrete", 2, None)
    env = gym.make("Pendulum-v1")
    spec = PolicySpec.from_spaces(env.observation_space, env.action_space, [32], "relu", log_std_init=-1.0)
    assert (spec.obs_dim, spec.action_kind, spec.action_dim, spec.n_actions) == (3, "box", 1, None)
    assert spec.action_low == [-2.0] and spec.action_high == [2.0]
    assert spec.net_arch == [32] and spec.activation == "relu" and spec.log_std_init == -1.0
    # multi-dimensional observations are flattened
    spec = PolicySpec.from_spaces(spaces.Box(0, 1, (2, 3)), spaces.Discrete(4))
    assert spec.obs_dim == 6 and spec.net_arch == [64, 64]


@pytest.mark.parametrize(
    ("obs_space", "act_space", "match"),
    [
        (spaces.Box(-1, 1, (4,)), spaces.MultiDiscrete([2, 3]), "unsupported action space"),
        (spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), spaces.Discrete(2), "unsupported observation space"),
        (spaces.Tuple((spaces.Discrete(5), spaces.Box(-1, 1))), spaces.Discrete(2), "unsupported obs"),
        (spaces.Box(-1, 1, (4,)), spaces.Box(-1, 1, (2, 2)), "1-D Box"),
        (spaces.Box(-1, 1, (4,)), spaces.Discrete(3, start=1), "start at 0"),
    ],
)
def test_from_spaces_rejects_unsupported(obs_space, act_space, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PolicySpec.from_spaces(obs_space, act_space)


def test_spec_json_round_trip_and_validation() -> None:
    spec = PolicySpec(
        obs_dim=5,
        action_kind="box",
        action_dim=2,
        action_low=[-math.inf, -1.0],
        action_high=[math.inf, 1.0],
        net_arch=[8, 8],
        activation="relu",
        log_std_init=-0.3,
    )
    back = PolicySpec.from_json(spec.to_json())
    assert back == spec and back.action_low[0] == -math.inf
    with pytest.raises(ValueError):
        PolicySpec(obs_dim=4, action_kind="discrete")  # no n_actions
    with pytest.raises(ValueError):
        PolicySpec(obs_dim=4, action_kind="box", action_dim=2, action_low=[0.0])  # wrong bound length
    with pytest.raises(ValueError):
        PolicySpec(obs_dim=4, action_kind="discrete", n_actions=2, net_arch=[0])
    with pytest.raises(ValueError):
        PolicySpec(obs_dim=4, action_kind="discrete", n_actions=2, activation="gelu")
    with pytest.raises(ValueError):
        spec.obs_dim = 3  # frozen
