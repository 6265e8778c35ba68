"""DQN math against hand-computed values, and the two backends against each other."""

from __future__ import annotations

import numpy as np
import pytest

from ftg_common.algos.adam import clip_grad_norm
from ftg_common.algos.dqn import (
    behaviour_epsilon,
    epsilon_greedy,
    epsilon_greedy_probs,
    huber_loss,
    linear_epsilon,
    polyak_update,
    should_train,
    target_syncs,
    td_targets,
)
from ftg_common.algos.qnet import QNetSpec
from ftg_common.config import DQNConfig
from ftg_common.replay.transitions import Transitions
from ftg_common.update.dqn import initial_dqn_version, make_dqn_backend, train_dqn
from ftg_common.update.dqn_loop import run_gradient_steps
from ftg_common.update.dqn_plan import plan_dqn_update

# --------------------------------------------------------------------------- exploration


def test_epsilon_schedule_at_start_fraction_and_end() -> None:
    # initial 1.0, final 0.04, fraction 0.16 (RL Zoo CartPole).
    assert linear_epsilon(1.0, 1.0, 0.04, 0.16) == 1.0  # progress 0
    assert linear_epsilon(1.0 - 0.08, 1.0, 0.04, 0.16) == pytest.approx(0.52)  # half way: 1 - 0.96/2
    assert linear_epsilon(1.0 - 0.16, 1.0, 0.04, 0.16) == pytest.approx(0.04)  # at the fraction
    assert linear_epsilon(0.5, 1.0, 0.04, 0.16) == 0.04
    assert linear_epsilon(0.0, 1.0, 0.04, 0.16) == 0.04  # end of training


def test_behaviour_epsilon_is_uniform_before_learning_starts() -> None:
    args = (50_000, 1000, 1.0, 0.04, 0.16)
    assert behaviour_epsilon(0, *args) == 1.0 and behaviour_epsilon(999, *args) == 1.0
    # At 4000 of 50000 steps progress is 0.08: half way down the schedule.
    assert behaviour_epsilon(4000, *args) == pytest.approx(0.52)
    assert behaviour_epsilon(8000, *args) == pytest.approx(0.04)


def test_epsilon_greedy_probabilities_by_hand() -> None:
    q = np.array([[1.0, 3.0, 2.0], [0.5, 0.5, -1.0]])
    p = epsilon_greedy_probs(q, 0.3)
    # 0.3 / 3 = 0.1 everywhere, + 0.7 on the greedy action (ties: the lowest index).
    np.testing.assert_allclose(p, [[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]])
    np.testing.assert_allclose(p.sum(1), 1.0)


def test_epsilon_greedy_logs_the_probability_of_the_taken_action_and_is_seeded() -> None:
    q = np.tile(np.array([[0.0, 1.0, 0.0, 0.0]]), (20_000, 1))
    a1, mu1 = epsilon_greedy(q, 0.2, np.random.default_rng(7))
    a2, mu2 = epsilon_greedy(q, 0.2, np.random.default_rng(7))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(mu1, mu2)
    np.testing.assert_allclose(mu1, np.where(a1 == 1, 0.85, 0.05), rtol=1e-6)
    freq = np.bincount(a1, minlength=4) / len(a1)
    np.testing.assert_allclose(freq, [0.05, 0.85, 0.05, 0.05], atol=0.01)
    # The generator advances by the same amount whatever epsilon is.
    r1, r2 = np.random.default_rng(1), np.random.default_rng(1)
    epsilon_greedy(q[:5], 0.0, r1)
    epsilon_greedy(q[:5], 1.0, r2)
    assert r1.random() == r2.random()


# --------------------------------------------------------------------------- learning


def test_td_target_on_a_two_transition_batch() -> None:
    rewards = np.array([1.0, 0.5], np.float32)
    next_q = np.array([[2.0, 3.0], [4.0, -1.0]], np.float32)
    # Row 0 is a time-limit truncation (not terminated): it bootstraps. Row 1 terminated: it does not.
    terminated = np.array([False, True])
    y = td_targets(rewards, next_q, terminated, gamma=0.9)
    np.testing.assert_allclose(y, [1.0 + 0.9 * 3.0, 0.5], rtol=1e-7)
    assert y.dtype == np.float32


def test_huber_loss_and_gradient_by_hand() -> None:
    pred = np.array([0.5, 3.0, -2.0, 1.0])
    target = np.array([0.0, 1.0, 0.0, 1.0])
    # x = 0.5, 2, -2, 0 -> 0.125, 1.5, 1.5, 0; mean 3.125 / 4.
    loss, grad = huber_loss(pred, target)
    assert loss == pytest.approx(3.125 / 4)
    np.testing.assert_allclose(grad, np.array([0.5, 1.0, -1.0, 0.0]) / 4)


def test_huber_matches_torch_smooth_l1() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    pred, target = rng.normal(0, 2, 64), rng.normal(0, 2, 64)
    p = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.functional.smooth_l1_loss(p, torch.tensor(target))
    ref.backward()
    loss, grad = huber_loss(pred, target)
    assert loss == pytest.approx(float(ref.detach()), rel=1e-12)
    np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-12)


def test_polyak_update_by_hand() -> None:
    target = {"w": np.array([0.0, 10.0], np.float32)}
    online = {"w": np.array([1.0, 0.0], np.float32)}
    once = polyak_update(target, online, tau=0.1)
    np.testing.assert_allclose(once["w"], [0.1, 9.0], rtol=1e-6)
    twice = polyak_update(target, online, tau=0.1, times=2)
    np.testing.assert_allclose(twice["w"], [0.19, 8.1], rtol=1e-6)
    np.testing.assert_array_equal(polyak_update(target, online, tau=1.0, times=3)["w"], online["w"])
    np.testing.assert_array_equal(polyak_update(target, online, tau=0.5, times=0)["w"], target["w"])
    assert target["w"][1] == 10.0  # inputs untouched


def test_target_syncs_count_environment_steps_like_sb3() -> None:
    # One env, interval 10: a sync at every 10th step. 256 steps from 0: 25 syncs; 256 -> 512: 26.
    assert target_syncs(0, 256, 10, 1) == 25
    assert target_syncs(256, 512, 10, 1) == 26
    # 4 envs, interval 10: every max(10 // 4, 1) = 2 vectorised steps, i.e. every 8 env steps.
    assert target_syncs(0, 32, 10, 4) == 4
    # More envs than the interval: every vectorised step.
    assert target_syncs(0, 64, 10, 16) == 4
    assert target_syncs(100, 100, 10, 1) == 0


def test_should_train_after_more_than_learning_starts_steps() -> None:
    assert not should_train(1000, 1000) and should_train(1001, 1000) and not should_train(0, 0)


def test_gradient_clip_by_hand() -> None:
    grad = np.array([3.0, 4.0], np.float32)  # norm 5
    assert clip_grad_norm(grad, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(grad, [0.6, 0.8], rtol=1e-5)  # scaled by 1 / (5 + 1e-6)
    small = np.array([0.3, 0.4], np.float32)
    clip_grad_norm(small, 1.0)
    np.testing.assert_array_equal(small, np.array([0.3, 0.4], np.float32))


# --------------------------------------------------------------------------- plan, loop, backends


def test_plan_trains_after_learning_starts_and_counts_target_syncs() -> None:
    cfg = DQNConfig()
    warm = plan_dqn_update(cfg, steps_before=512, iteration=2)
    assert (warm.total_steps, warm.gradient_steps, warm.target_syncs) == (768, 0, 25)
    first = plan_dqn_update(cfg, steps_before=768, iteration=3)
    assert (first.total_steps, first.upto, first.gradient_steps) == (1024, 1024, 128)
    assert first.learning_rate == 2.3e-3 and first.capacity == 100_000
    linear = plan_dqn_update(DQNConfig(lr_schedule="linear", total_steps=1024), 768, 3)
    assert linear.learning_rate == 0.0


def _batch(rng: np.random.Generator, n: int, obs_dim: int = 4, n_actions: int = 2) -> Transitions:
    return Transitions(
        obs=rng.normal(size=(n, obs_dim)).astype(np.float32),
        actions=rng.integers(0, n_actions, n).astype(np.int64),
        rewards=rng.normal(size=n).astype(np.float32),
        next_obs=rng.normal(size=(n, obs_dim)).astype(np.float32),
        terminated=rng.random(n) < 0.2,
        truncated=rng.random(n) < 0.1,
        behaviour_probs=np.full(n, 0.5, np.float32),
    )


SPEC = QNetSpec(obs_dim=4, n_actions=2, net_arch=[32, 32])


def test_numpy_gradient_equals_torch_autograd() -> None:
    pytest.importorskip("torch")
    version = initial_dqn_version(SPEC, seed=3)
    batch = _batch(np.random.default_rng(0), 64)
    # A huge clip norm, so the comparison sees the raw gradient through one SGD-like Adam step.
    cfg_np = DQNConfig(max_grad_norm=1e9)
    cfg_t = DQNConfig(max_grad_norm=1e9, update_backend="torch")
    plan = plan_dqn_update(DQNConfig(), 768, 3)
    np_b, t_b = make_dqn_backend(cfg_np, version, plan), make_dqn_backend(cfg_t, version, plan)
    s_np = np_b.train_step(batch, 0.99, 1e-3)
    s_t = t_b.train_step(batch, 0.99, 1e-3)
    for key in ("loss", "q_mean", "target_mean", "grad_norm"):
        assert s_np[key] == pytest.approx(s_t[key], rel=1e-4), key
    for name, w in np_b.weights().items():
        np.testing.assert_allclose(w, t_b.weights()[name], atol=2e-6, err_msg=name)


def test_backends_agree_over_an_update_with_target_syncs() -> None:
    pytest.importorskip("torch")
    cfg = DQNConfig(
        net_arch=[32, 32], tau=0.5, learning_starts=0, gradient_steps=6, train_freq=16, total_steps=64
    )
    version = initial_dqn_version(SPEC, seed=1)
    rng = np.random.default_rng(2)
    batches = [_batch(rng, 8) for _ in range(6)]
    plan = plan_dqn_update(cfg, 0, 0)
    assert plan.gradient_steps == 6 and plan.target_syncs == 1
    v_np, stats_np = train_dqn(version, plan, batches, cfg)
    v_t, stats_t = train_dqn(version, plan, batches, cfg.model_copy(update={"update_backend": "torch"}))
    assert stats_np.loop.n_updates == stats_t.loop.n_updates == 6
    assert stats_np.loop.mean("loss") == pytest.approx(stats_t.loop.mean("loss"), rel=1e-4)
    for name, w in v_np.weights.items():
        np.testing.assert_allclose(w, v_t.weights[name], atol=1e-5, err_msg=name)
    assert v_np.state.version == 1 and v_np.state.total_steps == 16 and v_np.state.n_updates == 6
    assert v_np.state.optimizer_step == 6 and v_np.state.target_syncs == 1


def test_target_is_synced_before_the_gradient_steps_and_fixed_during_them() -> None:
    cfg = DQNConfig(net_arch=[8], tau=1.0, learning_starts=0, gradient_steps=3, train_freq=16, total_steps=64)
    spec = QNetSpec(obs_dim=4, n_actions=2, net_arch=[8])
    version = initial_dqn_version(spec, seed=0)
    # Make online and target differ, as after an earlier update.
    moved = {k: (v + 1.0 if k.startswith("q.") else v) for k, v in version.weights.items()}
    version = type(version)(state=version.state, weights=moved)
    plan = plan_dqn_update(cfg, 0, 0)
    backend = make_dqn_backend(cfg, version, plan)
    rng = np.random.default_rng(0)
    run_gradient_steps(backend, [_batch(rng, 4) for _ in range(3)], plan)
    w = backend.weights()
    # The target equals the online weights as they were before the steps (tau 1), not after.
    for name in ("0.weight", "out.bias"):
        np.testing.assert_array_equal(w[f"q_target.{name}"], moved[f"q.{name}"])
        assert not np.array_equal(w[f"q.{name}"], moved[f"q.{name}"])


def test_train_refuses_a_mismatched_version_or_batch_count() -> None:
    cfg = DQNConfig(learning_starts=0, gradient_steps=2, train_freq=16, total_steps=64, net_arch=[8])
    version = initial_dqn_version(QNetSpec(obs_dim=4, n_actions=2, net_arch=[8]), seed=0)
    with pytest.raises(ValueError, match="cannot train"):
        train_dqn(version, plan_dqn_update(cfg, 16, 1), [], cfg)
    with pytest.raises(ValueError, match="2 gradient steps"):
        train_dqn(version, plan_dqn_update(cfg, 0, 0), [], cfg)


def test_initial_version_is_seeded_and_target_is_a_copy() -> None:
    a, b = initial_dqn_version(SPEC, 5), initial_dqn_version(SPEC, 5)
    for name, w in a.weights.items():
        np.testing.assert_array_equal(w, b.weights[name])
    np.testing.assert_array_equal(a.weights["q.0.weight"], a.weights["q_target.0.weight"])
    assert a.weights["q.0.weight"].shape == (32, 4) and np.abs(a.weights["q.0.weight"]).max() <= 0.5
    assert not np.array_equal(a.weights["q.0.weight"], initial_dqn_version(SPEC, 6).weights["q.0.weight"])


def test_qnet_spec_refuses_a_box_action_space_by_name() -> None:
    import gymnasium as gym

    from ftg_common.errors import UnknownEnvError

    obs = gym.spaces.Box(-1, 1, (3,))
    with pytest.raises(UnknownEnvError, match="Discrete action space.*Box"):
        QNetSpec.from_spaces(obs, gym.spaces.Box(-1, 1, (1,)), [64])
    assert QNetSpec.from_spaces(obs, gym.spaces.Discrete(2), [64]).n_actions == 2
