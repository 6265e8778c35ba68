"""The RL Zoo features wired through the run: config fields, env checks, policy files, gSDE, replay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from ftg_common.algos.minibatch import LossCoefs, Minibatch
from ftg_common.checkpoints import CheckpointState, PolicyVersion
from ftg_common.config import NormalizeOptions, PPOConfig, RunConfig, SweepError, load_sweep
from ftg_common.envs.factory import check_ppo_env, validate_env
from ftg_common.envs.vector import REPLAY_CODEC, ShardEnvs
from ftg_common.errors import UnknownEnvError
from ftg_common.normalize import NormStats, RunningStats, normalize_obs
from ftg_common.policy.init import initial_weights
from ftg_common.policy.numpy_mlp import FlatParams
from ftg_common.policy.numpy_policy import NumpyPolicy
from ftg_common.policy.spec import PolicySpec, load_policy_bytes, save_policy_bytes, tensor_shapes
from ftg_common.update.numpy_backend import NumpyPPOBackend

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "tests" / "data" / "zoo" / "ppo.yml"


# --- config -----------------------------------------------------------------------------------------


def test_new_fields_leave_the_dump_and_digest_of_existing_configs_unchanged() -> None:
    plain = PPOConfig()
    assert not {"normalize", "use_sde", "sde_sample_freq", "sde_full_std", "sde_use_expln"} & set(
        plain.model_dump()
    )
    on = PPOConfig(normalize=True, use_sde=False)
    assert on.model_dump(mode="json")["normalize"]["clip_obs"] == 10.0
    run = RunConfig(run_id="r", seed=0, ppo=on)
    assert RunConfig.from_stored(json.loads(json.dumps(run.to_stored()))) == run
    assert run.digest() != RunConfig(run_id="r", seed=0, ppo=plain).digest()


def test_normalize_accepts_the_zoo_booleans_and_checks_its_options() -> None:
    assert PPOConfig(normalize=True).normalize == NormalizeOptions()
    assert PPOConfig(normalize=False).normalize is None
    with pytest.raises(ValueError, match="clip_obs"):
        PPOConfig(normalize={"clip_obs": 0})
    with pytest.raises(ValueError, match="sde_sample_freq"):
        PPOConfig(sde_sample_freq=-2)


def test_options_the_env_cannot_honour_are_refused_by_field() -> None:
    frozen = validate_env("FrozenLake-v1")
    with pytest.raises(UnknownEnvError) as info:
        check_ppo_env(frozen, PPOConfig(env_id="FrozenLake-v1", normalize=True))
    assert info.value.field == "normalize.norm_obs"
    check_ppo_env(frozen, PPOConfig(env_id="FrozenLake-v1", normalize={"norm_obs": False}))
    with pytest.raises(UnknownEnvError) as info:
        check_ppo_env(validate_env("CartPole-v1"), PPOConfig(use_sde=True))
    assert info.value.field == "use_sde"


def test_env_kwargs_that_fail_the_first_step_are_named_up_front() -> None:
    with pytest.raises(UnknownEnvError, match="fails its first step") as info:
        validate_env("Pendulum-v1", {"g": "abc"})
    assert info.value.field == "env_kwargs"
    with pytest.raises(UnknownEnvError) as info:
        validate_env("Pendulum-v1", {"no_such_argument": 1})
    assert info.value.field == "env_kwargs"


def test_an_env_kwargs_error_inside_a_function_is_a_400_naming_the_field() -> None:
    from ftg_common.faas import _failure

    envs = ShardEnvs("Pendulum-v1", {"g": "abc"}, 1, run_seed=0, global_offset=0)
    envs.start(None)
    with pytest.raises(UnknownEnvError) as info:
        envs.step(np.zeros((1, 1), dtype=np.float32))
    body = _failure(info.value)
    assert body["statusCode"] == 400 and body["body"]["field"] == "env_kwargs"


def test_cli_names_env_kwargs_not_env_id(tmp_path: Path) -> None:
    sweep = {"name": "kw", "configs": {"a": {"env_id": "Pendulum-v1", "env_kwargs": {"g": "abc"}}}}
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(sweep))
    out = subprocess.run(
        [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py"), "submit", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "configs.a.env_kwargs" in out.stderr, out.stderr


# --- sweeps from Zoo entries -------------------------------------------------------------------------


def test_a_sweep_key_zoo_is_the_base_of_every_config() -> None:
    text = json.dumps(
        {
            "name": "zoo-mc",
            "zoo": {"file": str(ZOO), "env": "MountainCar-v0"},
            "defaults": {"total_steps": 4096},
            "configs": {"zoo": {}, "small": {"n_envs": 8}},
        }
    )
    trials = load_sweep(text).trial_configs()
    zoo, small = trials["zoo"], trials["small"]
    assert isinstance(zoo, PPOConfig) and isinstance(small, PPOConfig)
    assert zoo.env_id == "MountainCar-v0" and zoo.normalize == NormalizeOptions()
    assert zoo.n_envs == 16 and zoo.total_steps == 4096 and small.n_envs == 8
    # Loading the dumped sweep again (as the CLI does after its overrides) changes nothing.
    again = load_sweep(load_sweep(text).model_dump_json()).trial_configs()
    assert again == trials


def test_a_relative_zoo_file_is_found_beside_the_sweep_file() -> None:
    text = json.dumps({"name": "z", "zoo": {"file": "ppo.yml", "env": "CartPole-v1"}, "configs": {"a": {}}})
    sweep = load_sweep(text, base_dir=str(ZOO.parent))
    assert sweep.zoo is not None and Path(sweep.zoo.file) == ZOO
    with pytest.raises(SweepError, match="zoo.file"):
        load_sweep(text, base_dir=str(ROOT))
    with pytest.raises(SweepError, match="zoo.env"):
        load_sweep(text.replace("CartPole-v1", "Nope-v0"), base_dir=str(ZOO.parent))


def test_unhonoured_items_stop_the_cli_unless_accepted(tmp_path: Path) -> None:
    zoo = tmp_path / "ppo.yml"
    zoo.write_text("CartPole-v1:\n  n_timesteps: 512\n  n_envs: 2\n  n_steps: 64\n  frame_stack: 4\n")
    cli = [sys.executable, str(ROOT / "workflows" / "ppo_sweep.py"), "submit", "--zoo", str(zoo)]
    cli += ["--env", "CartPole-v1", "--seeds", "0", "--no-tracking"]
    env = {
        "PATH": "/usr/bin:/bin",
        "FTG_STORE_URL": f"file://{tmp_path}/store",
        "FTG_META_URL": f"sqlite:///{tmp_path}/meta.db",
        "FTG_LOCAL_WORKERS": "0",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }
    out = subprocess.run(cli, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "frame_stack = 4" in out.stderr and "--accept-unhonoured" in out.stderr
    out = subprocess.run(
        [*cli, "--accept-unhonoured"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not honoured: frame_stack" in out.stderr


# --- policy files and Discrete observations ---------------------------------------------------------


def _box_spec(**kw) -> PolicySpec:
    return PolicySpec.from_spaces(
        gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,)), [8, 6], "tanh", -1.0, **kw
    )


def test_plain_specs_serialise_as_before_and_new_fields_only_when_used() -> None:
    plain = json.loads(_box_spec().to_json())
    assert not {"obs_encoding", "use_sde", "sde_full_std", "sde_use_expln"} & set(plain)
    sde = _box_spec(use_sde=True, sde_full_std=False)
    assert json.loads(sde.to_json())["use_sde"] is True
    assert tensor_shapes(sde)["log_std"] == (6, 1)
    assert tensor_shapes(_box_spec(use_sde=True))["log_std"] == (6, 2)
    assert PolicySpec.from_json(sde.to_json()) == sde


def test_policy_files_carry_float64_statistics_beside_the_weights() -> None:
    spec = _box_spec()
    weights = initial_weights(spec, 0)
    stats = NormStats(
        RunningStats(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]), 7.5), RunningStats.prior()
    )
    from ftg_common.normalize import NormalizeSettings, stats_to_tensors

    data = save_policy_bytes(
        spec, weights, {"v": "1"}, stats_to_tensors(stats), NormalizeSettings().to_json()
    )
    got_spec, got, meta = load_policy_bytes(data)
    assert got_spec == spec and set(got) == set(weights) and meta["v"] == "1"
    assert NormalizeSettings.from_json(meta["normalize"]) == NormalizeSettings()
    assert save_policy_bytes(spec, weights) == save_policy_bytes(spec, weights, None, None)


def test_discrete_observations_are_one_hot_at_the_policy_input() -> None:
    spec = PolicySpec.from_spaces(gym.spaces.Discrete(5), gym.spaces.Discrete(3), [8])
    assert spec.obs_dim == 5 and spec.raw_obs_dim == 1
    policy = NumpyPolicy(spec, initial_weights(spec, 1))
    raw = np.array([[0.0], [4.0], [2.0]], dtype=np.float32)
    onehot = np.eye(5, dtype=np.float32)[[0, 4, 2]]
    plain = PolicySpec.from_spaces(gym.spaces.Box(0, 1, (5,)), gym.spaces.Discrete(3), [8])
    reference = NumpyPolicy(plain, initial_weights(spec, 1))
    np.testing.assert_array_equal(policy.value(raw), reference.value(onehot))
    with pytest.raises(ValueError, match="outside"):
        policy.value(np.array([[5.0]], dtype=np.float32))


# --- gSDE -------------------------------------------------------------------------------------------


def test_gsde_actions_are_mean_plus_latent_noise_and_their_log_prob_is_recomputable() -> None:
    spec = _box_spec(use_sde=True)
    policy = NumpyPolicy(spec, initial_weights(spec, 3))
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    m1 = policy.sample_sde_matrices(4, np.random.default_rng(9))
    m2 = policy.sample_sde_matrices(4, np.random.default_rng(9))
    np.testing.assert_array_equal(m1, m2)
    assert m1.shape == (4, 6, 2)  # one [latent, actions] matrix per env
    actions, values, log_prob = policy.act_sde(obs, m1)
    assert actions.dtype == np.float32 and log_prob.shape == (4,)
    np.testing.assert_allclose(policy.log_prob(obs, actions), log_prob, rtol=1e-6, atol=1e-6)
    # Same matrices, same actions: the noise is a function of the state.
    np.testing.assert_array_equal(policy.act_sde(obs, m1)[0], actions)
    np.testing.assert_array_equal(policy.act_deterministic(obs), policy.act_sde(obs, np.zeros_like(m1))[0])


@pytest.mark.parametrize("full_std", [True, False])
def test_gsde_update_gradient_matches_finite_differences(full_std: bool) -> None:
    spec = _box_spec(use_sde=True, sde_full_std=full_std)
    weights = initial_weights(spec, 4, ortho=False)
    rng = np.random.default_rng(5)
    obs = rng.normal(size=(16, 3)).astype(np.float32)
    policy = NumpyPolicy(spec, weights)
    actions, values, log_prob = policy.act_sde(obs, policy.sample_sde_matrices(16, rng))
    mb = Minibatch(
        obs=obs,
        actions=actions,
        old_log_prob=(log_prob - 0.05).astype(np.float32),
        advantages=rng.normal(size=16).astype(np.float32),
        old_values=values,
        returns=rng.normal(size=16).astype(np.float32),
    )
    coefs = LossCoefs(clip_range=10.0, clip_range_vf=None, ent_coef=0.01, vf_coef=0.5)
    state = CheckpointState(version=0, iteration=-1, total_steps=0, n_updates=0, spec=spec)
    backend = NumpyPPOBackend(PolicyVersion(state, weights), adam_eps=1e-5, max_grad_norm=1e9)
    backend.evaluate(mb, coefs)
    assert backend._pending is not None
    grad = backend._pending.astype(np.float64)

    params = FlatParams(spec).load(weights)
    # Only log_std's gradient is gSDE-specific: check it coordinate by coordinate.
    start, stop = params.offsets["log_std"]

    def loss(flat: np.ndarray) -> float:
        b = NumpyPPOBackend(
            PolicyVersion(state, FlatParams(spec, flat.astype(np.float32)).tensors()),
            adam_eps=1e-5,
            max_grad_norm=1e9,
        )
        stats = b.evaluate(mb, coefs)
        return stats["pg_loss"] + 0.01 * stats["entropy_loss"] + 0.5 * stats["value_loss"]

    base = params.flat.astype(np.float64)
    for k in range(start, min(stop, start + 6)):
        step = np.zeros_like(base)
        step[k] = 1e-3
        numeric = (loss(base + step) - loss(base - step)) / 2e-3
        assert numeric == pytest.approx(grad[k], rel=2e-2, abs=2e-4)


@pytest.mark.parametrize(("full_std", "expln"), [(True, False), (False, True)])
def test_gsde_numpy_gradients_match_the_torch_reference(full_std: bool, expln: bool) -> None:
    from ftg_common.update.torch_backend import TorchPPOBackend

    spec = _box_spec(use_sde=True, sde_full_std=full_std, sde_use_expln=expln)
    weights = initial_weights(spec, 6, ortho=False)
    weights["log_std"] = (
        np.random.default_rng(1).uniform(-1, 0.5, weights["log_std"].shape).astype(np.float32)
    )
    rng = np.random.default_rng(7)
    obs = rng.normal(size=(32, 3)).astype(np.float32)
    policy = NumpyPolicy(spec, weights)
    actions, values, log_prob = policy.act_sde(obs, policy.sample_sde_matrices(32, rng))
    mb = Minibatch(
        obs=obs,
        actions=actions,
        old_log_prob=(log_prob + rng.normal(scale=0.1, size=32)).astype(np.float32),
        advantages=rng.normal(size=32).astype(np.float32),
        old_values=values,
        returns=rng.normal(size=32).astype(np.float32),
    )
    coefs = LossCoefs(clip_range=0.2, clip_range_vf=None, ent_coef=0.01, vf_coef=0.5)
    state = CheckpointState(version=0, iteration=-1, total_steps=0, n_updates=0, spec=spec)
    version = PolicyVersion(state, weights)
    numpy_backend = NumpyPPOBackend(version, adam_eps=1e-5, max_grad_norm=1e9)
    torch_backend = TorchPPOBackend(version, learning_rate=1e-3, adam_eps=1e-5, max_grad_norm=1e9)
    a, b = numpy_backend.evaluate(mb, coefs), torch_backend.evaluate(mb, coefs)
    for key in ("pg_loss", "value_loss", "entropy_loss", "approx_kl"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    assert torch_backend._loss is not None
    torch_backend._loss.backward()
    params = FlatParams(spec)
    assert numpy_backend._pending is not None
    for name, p in torch_backend.model.named_parameters():
        assert p.grad is not None
        np.testing.assert_allclose(
            params.view(name, numpy_backend._pending), p.grad.numpy(), rtol=2e-3, atol=2e-5, err_msg=name
        )


# --- frozen evaluation, replay of clipped actions ----------------------------------------------------


def test_evaluation_normalises_with_the_frozen_statistics() -> None:
    from ftg_common.evaluation import run_episodes
    from ftg_common.normalize import NormalizeSettings

    spec = PolicySpec.from_spaces(gym.spaces.Box(-np.inf, np.inf, (4,)), gym.spaces.Discrete(2), [8])
    weights = initial_weights(spec, 2, ortho=False)
    stats = NormStats(RunningStats(np.full(4, 0.3), np.full(4, 0.02), 50.0), RunningStats.prior())
    normed = NumpyPolicy(spec, weights, norm=stats, norm_settings=NormalizeSettings(clip_obs=5.0))

    class Recorder(NumpyPolicy):
        seen: list[np.ndarray] = []

        def act_deterministic(self, obs: np.ndarray) -> np.ndarray:
            Recorder.seen.append(obs.copy())
            return super().act_deterministic(obs)

    rec = Recorder(spec, weights, norm=stats, norm_settings=NormalizeSettings(clip_obs=5.0))
    returns, _ = run_episodes("CartPole-v1", {}, rec, [11])
    env = gym.make("CartPole-v1")
    first, _ = env.reset(seed=11)
    expected = normalize_obs(first[None], stats.obs_rms, 5.0, 1e-8)
    np.testing.assert_array_equal(Recorder.seen[0], expected)
    assert np.abs(np.concatenate(Recorder.seen)).max() <= 5.0
    assert run_episodes("CartPole-v1", {}, normed, [11])[0][0] == returns[0]


class _Unclipped(gym.Env):
    """A point that moves by the action it is given, which it never clips itself."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), dtype=np.float32)
    action_space = gym.spaces.Box(-5.0, 5.0, (1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], dtype=np.float32), {}

    def step(self, action):
        self.x += float(np.asarray(action).reshape(-1)[0])
        return np.array([self.x], dtype=np.float32), 0.0, False, False, {}


def test_a_replayed_env_repeats_the_clipped_actions_it_stepped() -> None:
    if "FtgUnclipped-v0" not in gym.envs.registry:
        gym.register("FtgUnclipped-v0", entry_point=_Unclipped, max_episode_steps=100)
    live = ShardEnvs("FtgUnclipped-v0", {}, 1, run_seed=0, global_offset=0)
    assert live.codec == REPLAY_CODEC
    live.start(None)
    obs = live.step(np.array([[15.0]], dtype=np.float32))[0]
    assert obs[0, 0] == 5.0
    restored = ShardEnvs("FtgUnclipped-v0", {}, 1, run_seed=0, global_offset=0)
    restored.start(live.carry())
    assert restored.envs[0].unwrapped.x == 5.0
    np.testing.assert_array_equal(
        restored.step(np.array([[1.0]], dtype=np.float32))[0],
        live.step(np.array([[1.0]], dtype=np.float32))[0],
    )


def test_the_zoo_sweep_file_reads_its_entry_beside_it() -> None:
    path = ROOT / "sweeps" / "zoo_acrobot_normalize.yaml"
    trials = load_sweep(path.read_text(), base_dir=str(path.parent)).trial_configs()
    norm, plain = trials["normalized"], trials["plain"]
    assert isinstance(norm, PPOConfig) and isinstance(plain, PPOConfig)
    assert norm.env_id == plain.env_id == "Acrobot-v1" and norm.n_envs == 16
    assert norm.normalize == NormalizeOptions() and plain.normalize is None


# --- inside the functions ----------------------------------------------------------------------------


def test_options_the_env_cannot_honour_are_a_400_naming_the_field_at_init(ftg_env: Path) -> None:
    from tests.funcs import freeze_config, post

    cfg = freeze_config("frozen-norm", env_id="FrozenLake-v1", normalize=True, threshold=None)
    runtime_ref = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest(), "mode": "init"}
    r = post("policy-updater", runtime_ref)
    assert r.status == 400 and r.json()["field"] == "normalize.norm_obs", r.body


def test_a_normalising_iteration_through_the_functions_is_idempotent(ftg_env: Path) -> None:
    from ftg_common import layout, runtime
    from tests.funcs import NORMALISED_PENDULUM, iterate, new_run, post

    cfg = new_run("norm-fn", **NORMALISED_PENDULUM, use_sde=True)
    out = iterate(cfg, 0, evaluate=True)
    store = runtime.store()
    batch = store.get_bytes(layout.batch_key("norm-fn", 0))
    ref = {"run_id": cfg.run_id, "iteration": 0, "config_digest": cfg.digest()}
    # A retried collector and aggregator rewrite the same bytes (statistics and carry included).
    carry = store.get_bytes(layout.carry_key("norm-fn", 0, 1))
    assert post("rollout-collector", {**ref, "shard": 1}).status == 200
    assert store.get_bytes(layout.carry_key("norm-fn", 0, 1)) == carry
    assert post("reward-aggregator", {**ref, "shards": out["shards"][::-1]}).status == 200
    assert store.get_bytes(layout.batch_key("norm-fn", 0)) == batch
    assert out["evaluate"]["episodes"] == cfg.ppo_config.eval_episodes


def test_evaluation_episodes_of_an_env_without_time_limit_are_cut() -> None:
    from ftg_common.evaluation import UNLIMITED_EVAL_STEPS, run_episodes

    class Up:  # action 0 (up) forever: CliffWalking's goal is never reached
        def act_deterministic(self, obs: np.ndarray) -> np.ndarray:
            return np.zeros(obs.shape[0], dtype=np.int64)

    returns, lengths = run_episodes("CliffWalking-v1", {}, Up(), [0, 1])  # type: ignore[arg-type]
    assert lengths.tolist() == [UNLIMITED_EVAL_STEPS] * 2 and returns.tolist() == [-UNLIMITED_EVAL_STEPS] * 2
