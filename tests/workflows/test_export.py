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
    read_policy_file,
    read_qnet,
    read_version,
    write_version,
)
from ftg_common.config import DQNConfig, RunConfig
from ftg_common.envs.encoding import raw_observation
from ftg_common.envs.factory import make_env
from ftg_common.evaluation import run_episodes
from ftg_common.normalize import normalize_obs
from tests.dqn_runs import SMALL_DQN, train_dqn_run
from tests.funcs import NORMALISED_PENDULUM, freeze_config, iterate, new_run, post
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


def _consumer_preprocess(spec: dict[str, Any], obs: np.ndarray) -> np.ndarray:
    """The spec's ``preprocess`` applied as its documentation says: normalise, then one-hot."""
    x = obs.astype(np.float32)
    pre = spec.get("preprocess")
    if pre is None:
        return x
    norm = pre["normalization"]
    if norm is not None and norm["applied"]:
        std = np.sqrt(np.asarray(norm["var"]) + norm["epsilon"])
        z = (x.astype(np.float64) - np.asarray(norm["mean"])) / std
        x = np.clip(z, -norm["clip_obs"], norm["clip_obs"]).astype(np.float32)
    enc = pre["encoding"]
    if enc is not None:
        x = np.concatenate(
            [
                (x[:, [k]] == np.arange(n) + start).astype(np.float32)
                for k, (n, start) in enumerate(zip(enc["sizes"], enc["starts"], strict=True))
            ],
            axis=1,
        )
    return x


def _safetensors_actions(path: Path, obs: np.ndarray) -> np.ndarray:
    """The policy rebuilt from the safetensors file and its JSON spec alone: what a consumer would write."""
    from safetensors.numpy import load_file

    spec = json.loads(spec_path(path).read_text())
    tensors = load_file(str(path))
    x = _consumer_preprocess(spec, obs)
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
    """The training-time numpy policy's deterministic action on raw observations, as the evaluator takes
    it (ftg_common.evaluation.run_episodes): normalised with the version's frozen statistics when the run
    normalises observations, Box actions clipped."""
    policy = load_numpy_policy(runtime.store(), run_id, version)
    norm, settings = policy.norm, policy.norm_settings
    if norm is not None and settings is not None and settings.norm_obs:
        obs = normalize_obs(obs, norm.obs_rms, settings.clip_obs, settings.epsilon)
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
    version = PolicyVersion(state=state, weights=weights, norm=v0.norm, norm_settings=v0.norm_settings)
    keys = write_version(runtime.store(), run_id, version)
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


DQN_SMALL = {**SMALL_DQN, "net_arch": [16, 16]}


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


# --- raw observations in: normalisation and one-hot encoding travel with the exported policy ---------

FROZEN_LAKE: dict[str, Any] = dict(
    env_id="FrozenLake-v1",
    env_kwargs={"is_slippery": False},
    n_envs=4,
    n_steps=16,
    shards=2,
    batch_size=32,
    total_steps=256,
    threshold=None,
    normalize={"norm_obs": False},  # Discrete observations: rewards only, the statistics still recorded
)


def _trained(run_id: str, iterations: int = 2, **ppo: Any) -> int:
    """A real run through the four functions; its final version (statistics merged from real shards)."""
    cfg = new_run(run_id, **ppo)
    for i in range(iterations):
        iterate(cfg, i)
    return final_version(runtime.meta(), run_id)


def _episode_returns(
    fmt: str, path: Path, env_id: str, env_kwargs: dict[str, Any], seeds: list[int]
) -> np.ndarray:
    """Episodes acted by the exported policy alone, fed each observation exactly as the env emits it."""
    out = []
    for seed in seeds:
        env = make_env(env_id, env_kwargs)
        box = isinstance(env.action_space, gym.spaces.Box)
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action = _exported_actions(fmt, path, raw_observation(obs)[None, :])[0]
            obs, reward, terminated, truncated, _ = env.step(action if box else int(action))
            total, done = total + float(reward), terminated or truncated
        out.append(total)
    return np.asarray(out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_normalised_policy_exports_acting_on_raw_observations(ftg_env: Path, fmt: str) -> None:
    version = _trained("pend-norm", **NORMALISED_PENDULUM)
    policy = load_numpy_policy(runtime.store(), "pend-norm", version)
    assert policy.norm is not None and policy.norm.obs_rms.count > 100  # real, merged statistics
    raw = _observations("Pendulum-v1")
    raw[::8] *= 50.0  # far outside the statistics: the clip at clip_obs is exercised too
    out = export_policy(runtime.store(), "pend-norm", version, fmt, ftg_env / f"pn.{fmt}")
    reference = _ppo_reference("pend-norm", version, raw)
    # The network on unnormalised observations acts differently: the exported step is not a no-op.
    assert not np.allclose(np.clip(policy.act_deterministic(raw), -2, 2), reference, atol=1e-3)
    _check(_exported_actions(fmt, out, raw), reference)
    # Whole evaluation episodes: the exported policy earns what the policy-evaluator measured.
    seeds = [11, 12]
    evaluated, _ = run_episodes("Pendulum-v1", {}, policy, seeds)
    exported = _episode_returns(fmt, out, "Pendulum-v1", {}, seeds)
    np.testing.assert_allclose(exported, evaluated, rtol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_discrete_observation_policy_exports_one_hot(ftg_env: Path, fmt: str) -> None:
    new_run("frozen-ppo", **FROZEN_LAKE)
    _commit_scaled_version("frozen-ppo", 50.0)  # far from ties, several actions greedy somewhere
    states = np.arange(16, dtype=np.float32)[:, None]  # every raw observation FrozenLake emits
    reference = _ppo_reference("frozen-ppo", 1, states)
    assert len(set(reference.tolist())) > 1
    out = export_policy(runtime.store(), "frozen-ppo", 1, fmt, ftg_env / f"fl.{fmt}")
    _check(_exported_actions(fmt, out, states), reference)
    policy = load_numpy_policy(runtime.store(), "frozen-ppo", 1)
    evaluated, _ = run_episodes("FrozenLake-v1", FROZEN_LAKE["env_kwargs"], policy, [0, 1])
    exported = _episode_returns(fmt, out, "FrozenLake-v1", FROZEN_LAKE["env_kwargs"], [0, 1])
    np.testing.assert_array_equal(exported, evaluated)


def test_the_spec_records_the_frozen_statistics_and_the_encoding(ftg_env: Path) -> None:
    version = _trained("pend-norm", **NORMALISED_PENDULUM)
    policy = load_numpy_policy(runtime.store(), "pend-norm", version)
    assert policy.norm is not None
    st = export_policy(runtime.store(), "pend-norm", version, "safetensors", ftg_env / "pn.safetensors")
    spec = json.loads(spec_path(st).read_text())
    assert spec["observation"] == {"dtype": "float32", "shape": ["batch", 3]}
    pre = spec["preprocess"]
    assert pre["raw_dim"] == pre["dim"] == 3 and pre["encoding"] is None
    norm = pre["normalization"]
    # float64 statistics written exactly: they read back to the very same bits.
    assert np.asarray(norm["mean"]).tobytes() == policy.norm.obs_rms.mean.tobytes()
    assert np.asarray(norm["var"]).tobytes() == policy.norm.obs_rms.var.tobytes()
    assert norm["count"] == policy.norm.obs_rms.count
    assert (norm["applied"], norm["clip_obs"], norm["epsilon"]) == (True, 10.0, 1e-8)
    assert norm["settings"]["norm_reward"] is True and norm["ret_rms"]["count"] > 1

    _trained("frozen-ppo", iterations=1, **FROZEN_LAKE)
    st = export_policy(runtime.store(), "frozen-ppo", 1, "safetensors", ftg_env / "fl.safetensors")
    spec = json.loads(spec_path(st).read_text())
    assert spec["obs_dim"] == 16 and spec["observation"]["shape"] == ["batch", 1]
    pre = spec["preprocess"]
    assert pre["encoding"] == {"kind": "onehot", "raw_dim": 1, "dim": 16, "sizes": [16], "starts": [0]}
    assert pre["normalization"]["applied"] is False  # rewards only: observations stay raw


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_dqn_policy_on_discrete_observations_exports_one_hot(ftg_env: Path, fmt: str) -> None:
    cfg = train_dqn_run("dqn-fl")
    version = cfg.hparams.n_iterations
    states = np.arange(16, dtype=np.float32)[:, None]  # every raw observation FrozenLake emits
    policy = load_q_policy(runtime.store(), "dqn-fl", version)
    reference = policy.act_deterministic(states)
    assert len(set(reference.tolist())) > 1
    out = export_policy(runtime.store(), "dqn-fl", version, fmt, ftg_env / f"q.{fmt}")
    _check(_exported_actions(fmt, out, states), reference)
    env_kwargs = cfg.hparams.env_kwargs
    evaluated, _ = run_episodes("FrozenLake-v1", env_kwargs, policy, [0])
    exported = _episode_returns(fmt, out, "FrozenLake-v1", env_kwargs, [0])
    np.testing.assert_array_equal(exported, evaluated)
    assert exported[0] == 1.0  # the trained greedy policy reaches the goal


# --- the MLflow model: logged to a real local store, loaded with mlflow.pyfunc ------------------------


def _mlflow_run(tmp_path: Path) -> str:
    """A run in a fresh SQLite tracking store whose artifacts are files under ``tmp_path``."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/tracking.db")
    client = MlflowClient()
    exp = client.create_experiment("export", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id: str = client.create_run(exp).info.run_id
    return run_id


@pytest.mark.parametrize("case", ["pendulum-normalised", "frozen-lake-ppo", "frozen-lake-dqn"])
def test_the_registered_model_takes_raw_observations(ftg_env: Path, case: str) -> None:
    import mlflow

    from ftg_common.policy.preprocess import ObsPreprocess
    from workflows.models import log_policy_model

    states = np.arange(16, dtype=np.float32)[:, None]
    if case == "pendulum-normalised":
        run_id, version = "pend-norm", _trained("pend-norm", **NORMALISED_PENDULUM)
        raw = _observations("Pendulum-v1")
        raw[::8] *= 50.0
        reference = _ppo_reference(run_id, version, raw)
    elif case == "frozen-lake-ppo":
        run_id, raw = "frozen-ppo", states
        new_run(run_id, **FROZEN_LAKE)
        version = _commit_scaled_version(run_id, 50.0)
        reference = _ppo_reference(run_id, version, raw)
    else:
        run_id, raw = "dqn-fl", states
        version = train_dqn_run(run_id).hparams.n_iterations
        reference = load_q_policy(runtime.store(), run_id, version).act_deterministic(raw)
    info = log_policy_model(_mlflow_run(ftg_env), runtime.store(), run_id, version, f"ftg-{case}")
    assert info.registered_model_version is not None
    uri = f"models:/ftg-{case}/{info.registered_model_version}"
    assert list((ftg_env / "artifacts").rglob("MLmodel"))  # the model's files are under tmp_path
    predicted = np.asarray(mlflow.pyfunc.load_model(uri).predict(raw))
    if reference.dtype.kind == "i":  # logits or Q-values: the greedy action is their argmax
        np.testing.assert_array_equal(predicted.argmax(axis=1), reference)
    else:  # Gaussian means: the evaluator clips them to the action bounds
        np.testing.assert_allclose(np.clip(predicted, -2.0, 2.0), reference, rtol=1e-5, atol=1e-6)
    # The statistics and the encoding are in the model's metadata, exactly as the version holds them.
    metadata = mlflow.models.get_model_info(uri).metadata
    assert metadata is not None
    recorded = metadata["ftg_preprocess"]
    if case == "frozen-lake-dqn":
        spec, _ = read_qnet(runtime.store(), run_id, version)
        expected = ObsPreprocess.build(spec.obs_dim, spec.encoding).metadata()
    else:
        f = read_policy_file(runtime.store(), run_id, version)
        expected = ObsPreprocess.build(f.spec.obs_dim, f.spec.encoding, f.norm, f.norm_settings).metadata()
    assert recorded == expected
    assert (recorded["encoding"] is None) == (case == "pendulum-normalised")
    assert (recorded["normalization"] is not None) == (case != "frozen-lake-dqn")
