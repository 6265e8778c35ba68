"""Exported policies (ONNX, TorchScript, safetensors + JSON) act exactly like the training-time policy."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from ftg_common import runtime
from ftg_common.checkpoints import (
    PolicyVersion,
    load_numpy_policy,
    load_q_policy,
    read_version,
    write_version,
)
from ftg_common.config import DQNConfig, RunConfig
from tests.funcs import freeze_config, new_run, post
from workflows.export import FORMATS, export_final_policy, export_policy, final_version, spec_path

BATCH = 64


def _observations(env_id: str, seed: int = 0) -> np.ndarray:
    space = gym.make(env_id).observation_space
    space.seed(seed)
    return np.stack([space.sample() for _ in range(BATCH)]).astype(np.float32)


def _onnx_actions(path: Path, obs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["obs"]
    (actions,) = session.run(["action"], {"obs": obs})
    return np.asarray(actions)


def _torchscript_actions(path: Path, obs: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    extra = {"ftg_spec.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load warns it is deprecated
        module = torch.jit.load(str(path), _extra_files=extra)
    with torch.no_grad():
        actions = module(torch.from_numpy(obs)).numpy()
    return actions, json.loads(extra["ftg_spec.json"])


def _safetensors_actions(path: Path, obs: np.ndarray) -> np.ndarray:
    """The policy rebuilt from the safetensors file and its JSON spec alone: what a consumer would write."""
    from safetensors.numpy import load_file

    spec = json.loads(spec_path(path).read_text())
    tensors = load_file(str(path))
    x = obs.astype(np.float32)
    for i in range(spec["layers"]):
        x = x @ tensors[f"layers.{i}.weight"].T + tensors[f"layers.{i}.bias"]
        if i < spec["layers"] - 1:
            x = np.tanh(x) if spec["activation"] == "tanh" else np.maximum(x, 0.0)
    action = spec["action"]
    if action["rule"] == "argmax":
        return x.argmax(axis=1)
    if action["rule"] == "clip":
        low = [-np.inf if v is None else v for v in action["low"]]
        high = [np.inf if v is None else v for v in action["high"]]
        return np.clip(x, np.float32(low), np.float32(high))
    return x


def _exported_actions(fmt: str, path: Path, obs: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        return _onnx_actions(path, obs)
    if fmt == "torchscript":
        return _torchscript_actions(path, obs)[0]
    return _safetensors_actions(path, obs)


def _ppo_reference(run_id: str, version: int, obs: np.ndarray) -> np.ndarray:
    """The training-time numpy policy's deterministic action, as the evaluator takes it (Box: clipped)."""
    policy = load_numpy_policy(runtime.store(), run_id, version)
    actions = policy.act_deterministic(obs)
    spec = policy.spec
    if spec.action_kind == "box":
        actions = np.clip(actions, np.float32(spec.action_low), np.float32(spec.action_high))
    return actions


def _commit_scaled_version(run_id: str, scale: float) -> int:
    """Version 1: version 0 with the actor's output layer scaled, written and committed like an update."""
    v0 = read_version(runtime.store(), run_id, 0)
    weights = dict(v0.weights)
    for name in ("pi.out.weight", "pi.out.bias"):
        weights[name] = (weights[name] * scale).astype(np.float32)
    state = v0.state.model_copy(update={"version": 1, "iteration": 0, "total_steps": 256, "n_updates": 1})
    keys = write_version(runtime.store(), run_id, PolicyVersion(state=state, weights=weights))
    assert runtime.meta().commit_version(run_id, 0, 0, keys.digests)
    return 1


def _check(actions: np.ndarray, reference: np.ndarray) -> None:
    assert actions.shape == reference.shape
    if reference.dtype.kind == "i":  # an argmax: the same action, exactly
        assert actions.dtype == np.int64
        np.testing.assert_array_equal(actions, reference)
    else:  # a Gaussian mean: float32 rounding of the same arithmetic
        assert actions.dtype == np.float32
        np.testing.assert_allclose(actions, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_discrete_cartpole_policy_exports_with_parity(ftg_env: Path, fmt: str) -> None:
    new_run("cartpole-run")
    obs = _observations("CartPole-v1")
    out = export_policy(runtime.store(), "cartpole-run", 0, fmt, ftg_env / "out" / f"policy.{fmt}")
    assert out.exists()
    reference = _ppo_reference("cartpole-run", 0, obs)
    _check(_exported_actions(fmt, out, obs), reference)
    # a version that really moved: logits far from a tie, both actions taken
    version = _commit_scaled_version("cartpole-run", 50.0)
    out, exported = export_final_policy(
        runtime.store(), runtime.meta(), "cartpole-run", fmt, ftg_env / f"v1.{fmt}"
    )
    assert exported == version == 1
    reference = _ppo_reference("cartpole-run", 1, obs)
    assert set(reference.tolist()) == {0, 1}
    _check(_exported_actions(fmt, out, obs), reference)


@pytest.mark.parametrize("fmt", FORMATS)
def test_box_pendulum_policy_exports_the_clipped_mean(ftg_env: Path, fmt: str) -> None:
    new_run("pendulum-run", env_id="Pendulum-v1", threshold=None)
    obs = _observations("Pendulum-v1")
    out = export_policy(runtime.store(), "pendulum-run", 0, fmt, ftg_env / f"v0.{fmt}")
    _check(_exported_actions(fmt, out, obs), _ppo_reference("pendulum-run", 0, obs))
    # Scaled up, the mean leaves [-2, 2]: the exported policy clips it as evaluation does.
    _commit_scaled_version("pendulum-run", 2000.0)
    out, _ = export_final_policy(runtime.store(), runtime.meta(), "pendulum-run", fmt, ftg_env / f"v1.{fmt}")
    reference = _ppo_reference("pendulum-run", 1, obs)
    raw = load_numpy_policy(runtime.store(), "pendulum-run", 1).act_deterministic(obs)
    assert np.any(raw > 2.0) and np.any(raw < -2.0)  # the clip is really exercised
    assert np.any(np.abs(reference) < 2.0)  # and so is the unclipped range
    _check(_exported_actions(fmt, out, obs), reference)


DQN_SMALL = dict(
    n_envs=2,
    shards=2,
    train_freq=16,
    gradient_steps=4,
    batch_size=8,
    learning_starts=16,
    buffer_size=64,
    net_arch=[16, 16],
    total_steps=192,
    eval_episodes=2,
)


@pytest.mark.parametrize("fmt", FORMATS)
def test_dqn_policy_exports_the_greedy_action(ftg_env: Path, fmt: str) -> None:
    cfg = RunConfig(run_id="dqn-run", seed=3, dqn=DQNConfig(**DQN_SMALL))
    runtime.store().put_json(f"runs/{cfg.run_id}/config.json", cfg.to_stored())
    runtime.meta().create_run(cfg.run_id)
    r = post(
        "policy-updater",
        {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest(), "mode": "init"},
    )
    assert r.status == 200, r.body
    obs = _observations("CartPole-v1") * 3.0  # spread the Q-values so both actions are greedy somewhere
    out = export_policy(runtime.store(), "dqn-run", 0, fmt, ftg_env / f"q.{fmt}")
    reference = load_q_policy(runtime.store(), "dqn-run", 0).act_deterministic(obs)
    assert set(reference.tolist()) == {0, 1}
    _check(_exported_actions(fmt, out, obs), reference)


def test_the_spec_travels_with_every_format(ftg_env: Path) -> None:
    new_run("pendulum-run", env_id="Pendulum-v1", threshold=None)
    store = runtime.store()
    obs = _observations("Pendulum-v1")[:2]
    ts, spec = _torchscript_actions(
        export_policy(store, "pendulum-run", 0, "torchscript", ftg_env / "p.pt"), obs
    )
    assert spec == {
        "format": "ftg-deterministic-policy/1",
        "run_id": "pendulum-run",
        "version": 0,
        "source": "actor",
        "obs_dim": 3,
        "activation": "tanh",
        "layers": 3,
        "hidden": [64, 64],
        "observation": {"dtype": "float32", "shape": ["batch", 3]},
        "action": {"kind": "box", "rule": "clip", "dim": 1, "dtype": "float32", "low": [-2.0], "high": [2.0]},
    }
    import onnx

    model = onnx.load(str(export_policy(store, "pendulum-run", 0, "onnx", ftg_env / "p.onnx")))
    assert json.loads({p.key: p.value for p in model.metadata_props}["ftg_spec"]) == spec
    st = export_policy(store, "pendulum-run", 0, "safetensors", ftg_env / "p.safetensors")
    assert spec_path(st) == ftg_env / "p.json" and json.loads(spec_path(st).read_text()) == spec
    assert sorted(p.name for p in ftg_env.glob("p.*")) == ["p.json", "p.onnx", "p.pt", "p.safetensors"]


def test_exports_run_without_faastraingym(ftg_env: Path) -> None:
    new_run("cartpole-run")
    store = runtime.store()
    obs = _observations("CartPole-v1")
    np.save(ftg_env / "obs.npy", obs)
    for fmt, name in (("onnx", "p.onnx"), ("torchscript", "p.pt")):
        export_policy(store, "cartpole-run", 0, fmt, ftg_env / name)
    # A fresh interpreter in which the project's packages cannot be imported at all.
    code = (
        "import sys, warnings\n"
        "for name in ('ftg_common', 'workflows', 'functions', 'tests'): sys.modules[name] = None\n"
        "import numpy as np, onnxruntime as ort, torch\n"
        "warnings.simplefilter('ignore')\n"
        "obs = np.load('obs.npy')\n"
        "a = ort.InferenceSession('p.onnx', providers=['CPUExecutionProvider']).run(None, {'obs': obs})[0]\n"
        "b = torch.jit.load('p.pt')(torch.from_numpy(obs)).numpy()\n"
        "print(' '.join(map(str, a.tolist())))\n"
        "print(' '.join(map(str, b.tolist())))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ftg_env, capture_output=True, text=True, check=True, timeout=300
    )
    onnx_line, ts_line = out.stdout.split("\n")[:2]
    reference = " ".join(map(str, _ppo_reference("cartpole-run", 0, obs).tolist()))
    assert onnx_line == ts_line == reference


def test_a_run_that_never_finished_a_version_is_refused_by_name(ftg_env: Path) -> None:
    new_run("fresh-run")  # version 0 only: the untrained initial policy
    with pytest.raises(ValueError, match=r"run 'fresh-run' never finished a policy version"):
        export_final_policy(runtime.store(), runtime.meta(), "fresh-run", "onnx", ftg_env / "x.onnx")
    freeze_config("never-started")
    runtime.meta().create_run("never-started")  # created, no version 0 written either
    with pytest.raises(
        ValueError, match=r"run 'never-started' never finished a policy version \(status 'created'"
    ):
        final_version(runtime.meta(), "never-started")
    with pytest.raises(ValueError, match=r"no run named 'ghost-run'"):
        final_version(runtime.meta(), "ghost-run")
    assert not (ftg_env / "x.onnx").exists()


def test_bad_format_and_missing_version_are_refused(ftg_env: Path) -> None:
    new_run("cartpole-run")
    with pytest.raises(
        ValueError, match=r"unknown export format 'pickle' \(choose one of onnx, torchscript, safetensors\)"
    ):
        export_policy(runtime.store(), "cartpole-run", 0, "pickle", ftg_env / "x")
    with pytest.raises(ValueError, match=r"run 'cartpole-run' has no policy version 7"):
        export_policy(runtime.store(), "cartpole-run", 7, "onnx", ftg_env / "x.onnx")
