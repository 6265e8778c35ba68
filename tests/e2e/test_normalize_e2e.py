"""Runs that normalise observations and rewards, and runs on Discrete observations, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ftg_common import checkpoints, layout, runtime
from ftg_common.config import NormalizeOptions, PPOConfig, RunConfig
from ftg_common.normalize import NormStats, merge_increments, stats_from_tensors
from ftg_common.policy.spec import NORM_PREFIX
from ftg_common.tensorio import decode
from tests.funcs import SMALL_PPO, straight_and_interrupted
from tests.funcs import driver as _driver

ZOO = Path(__file__).resolve().parents[1] / "data" / "zoo" / "ppo.yml"
SMALL = {**SMALL_PPO, "env_id": "Acrobot-v1", "total_steps": 128 * 8, "threshold": None}


def _tensors(store, key: str) -> dict[str, np.ndarray]:
    return decode(store.get_bytes(key))[0]


GSDE = dict(env_id="Pendulum-v1", use_sde=True, sde_sample_freq=4, log_std_init=-2.0)


@pytest.mark.parametrize("extra", [{}, GSDE], ids=["acrobot", "pendulum-gsde"])
def test_normalising_run_resumes_bit_for_bit(services, extra) -> None:
    ppo = PPOConfig(**{**SMALL, **extra}, normalize=NormalizeOptions(gamma=0.98))
    _, broken = straight_and_interrupted(services, ppo, seed=7, n=3, prefix="norm-")
    _driver(broken, services).drive()
    assert services.meta.get_run("norm-broken")["status"] == "finished"

    store = runtime.store()
    last = ppo.n_iterations
    for key in (layout.policy_key, layout.ckpt_weights_key, layout.ckpt_optim_key):
        a, b = _tensors(store, key("norm-straight", last)), _tensors(store, key("norm-broken", last))
        assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)
    # The statistics travel with the version: in the policy file and in the checkpoint, float64.
    policy = checkpoints.read_policy_file(store, "norm-straight", last)
    assert policy.norm is not None and policy.norm_settings is not None
    assert policy.norm_settings.gamma == 0.98
    assert policy.norm.obs_rms.mean.dtype == np.float64
    assert policy.norm.obs_rms.shape == ((3,) if ppo.use_sde else (6,))
    if ppo.use_sde:  # gSDE's log_std is [latent, actions], and it trained
        assert policy.weights["log_std"].shape == (64, 1)
        assert not np.all(policy.weights["log_std"] == -2.0)
    version = checkpoints.read_version(store, "norm-straight", last)
    assert version.norm is not None
    assert version.norm.obs_rms.mean.tobytes() == policy.norm.obs_rms.mean.tobytes()
    assert not any(k.startswith(NORM_PREFIX) for k in version.weights)


def test_statistics_grow_by_every_step_the_shards_saw(services) -> None:
    ppo = PPOConfig(**{**SMALL, "total_steps": 128 * 3}, normalize=NormalizeOptions())
    cfg = RunConfig(run_id="norm-count", seed=1, ppo=ppo)
    _driver(cfg, services).drive()
    store = runtime.store()
    v0 = checkpoints.read_policy_file(store, "norm-count", 0).norm
    assert v0 is not None and v0.obs_rms.count == pytest.approx(1e-4)
    for i in range(ppo.n_iterations):
        before = checkpoints.read_policy_file(store, "norm-count", i).norm
        after = checkpoints.read_policy_file(store, "norm-count", i + 1).norm
        assert before is not None and after is not None
        # Iteration 0 adds the reset observations too (SB3's VecNormalize.reset).
        seen = ppo.rollout_size + (ppo.n_envs if i == 0 else 0)
        assert after.obs_rms.count == pytest.approx(before.obs_rms.count + seen)
        assert after.ret_rms.count == pytest.approx(before.ret_rms.count + ppo.rollout_size)
        # The merged statistics are the base merged with the shards' increments, in either order.
        shards = [_tensors(store, layout.traj_key("norm-count", i, k)) for k in range(ppo.shards)]
        incs = [stats_from_tensors(t, NORM_PREFIX) for t in shards]
        for order in (incs, incs[::-1]):
            merged: NormStats = merge_increments(before, order)
            assert merged.obs_rms.mean.tobytes() == after.obs_rms.mean.tobytes()
            assert merged.ret_rms.var.tobytes() == after.ret_rms.var.tobytes()
        # The trajectory stores normalised observations and rewards (clipped to the defaults).
        assert all(np.abs(t["obs"]).max() <= 10.0 and np.abs(t["rewards"]).max() <= 10.0 for t in shards)


def test_discrete_observations_run_one_hot(services) -> None:
    ppo = PPOConfig(
        env_id="FrozenLake-v1",
        n_envs=4,
        n_steps=64,
        shards=2,
        batch_size=64,
        n_epochs=2,
        total_steps=256 * 3,
        eval_every_steps=256,
        eval_episodes=2,
        threshold=None,
        normalize=NormalizeOptions(norm_obs=False),
    )
    cfg = RunConfig(run_id="frozen", seed=2, ppo=ppo)
    summary = _driver(cfg, services).drive()
    assert summary.steps == ppo.total_steps
    store = runtime.store()
    spec, _ = checkpoints.read_policy(store, "frozen", ppo.n_iterations)
    assert spec.obs_dim == 16 and spec.raw_obs_dim == 1
    traj = _tensors(store, layout.traj_key("frozen", 0, 0))
    # Trajectories keep the raw index (one float per step), the network sees its one-hot.
    assert traj["obs"].shape == (64, 2, 1) and set(np.unique(traj["obs"])) <= set(range(16))


@pytest.mark.slow
def test_acrobot_learns_as_well_with_the_zoo_entry_normalised(services) -> None:
    """The Zoo's Acrobot-v1 entry (normalize: true), cut to 48k steps, against the same run unnormalised."""
    from ftg_common.config import load_sweep

    text = f"""
name: acrobot-norm
zoo: {{file: {ZOO}, env: Acrobot-v1}}
defaults: {{total_steps: 49152, eval_every_steps: 16384, eval_episodes: 10}}
configs: {{norm: {{}}, plain: {{normalize: false}}}}
"""
    trials = load_sweep(text).trial_configs()
    assert trials["norm"].normalize is not None and trials["plain"].normalize is None
    finals = {}
    for name, ppo in trials.items():
        assert isinstance(ppo, PPOConfig)
        summary = _driver(RunConfig(run_id=f"acro-{name}", seed=0, ppo=ppo), services).drive()
        finals[name] = summary.final_iqm
    # Random play scores -500; the Zoo's PPO reaches about -80 at 1e6 steps.
    assert finals["norm"] > -150 and finals["plain"] > -150, finals
    assert abs(finals["norm"] - finals["plain"]) < 60, finals
