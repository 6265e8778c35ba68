"""The update package directly: the plan (schedules, minibatch order), the one loop (advantage
normalisation, target_kl), both backends (learning rate and gradient clipping actually applied), and the
pure ``train`` core."""

from __future__ import annotations

import numpy as np
import pytest

from ftg_common.algos.minibatch import LossCoefs, Minibatch
from ftg_common.checkpoints import CheckpointState, PolicyVersion, VersionKeys
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.policy.spec import PolicySpec
from ftg_common.update import ppo
from ftg_common.update.loop import run_epochs
from ftg_common.update.numpy_backend import NumpyPPOBackend
from ftg_common.update.plan import UpdatePlan, minibatch_order, plan_update

SPEC = PolicySpec(obs_dim=4, action_kind="discrete", n_actions=2, net_arch=[16], activation="tanh")
# 8 envs x 32 steps = 256 rows per iteration; 1e4 steps -> ~39 iterations.
PPO = PPOConfig(total_steps=10_240, n_envs=8, n_steps=32, batch_size=64, n_epochs=3)


def _version(spec: PolicySpec = SPEC, steps: int = 0, seed: int = 0) -> PolicyVersion:
    from ftg_common.policy.torch_policy import ActorCritic

    net = ActorCritic(spec)
    net.init_weights(seed)
    state = CheckpointState(version=0, iteration=-1, total_steps=steps, n_updates=0, spec=spec)
    return PolicyVersion(state=state, weights=net.flat_tensors())


def _batch(
    n: int = 256, seed: int = 0, adv_scale: float = 5.0, adv_shift: float = 3.0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.standard_normal((n, 4)).astype(np.float32),
        "actions": rng.integers(0, 2, n).astype(np.int64),
        "log_probs": np.full(n, np.log(0.5), np.float32),
        "values": rng.standard_normal(n).astype(np.float32),
        "advantages": (rng.standard_normal(n) * adv_scale + adv_shift).astype(np.float32),
        "returns": rng.standard_normal(n).astype(np.float32),
    }


# --- the plan ---------------------------------------------------------------------------------------
def test_linear_schedules_at_half_the_budget_are_half_the_initial_values() -> None:
    # After this batch exactly half of total_steps is trained on: progress remaining = 0.5.
    plan = plan_update(PPO, seed=0, steps_before=5_120 - 256, iteration=19, batch_size=256)
    assert plan.total_steps == 5_120
    assert plan.learning_rate == pytest.approx(PPO.learning_rate / 2)
    assert plan.coefs.clip_range == pytest.approx(PPO.clip_range / 2)


def test_constant_schedules_do_not_decay() -> None:
    cfg = PPO.model_copy(update={"lr_schedule": "constant", "clip_schedule": "constant"})
    plan = plan_update(cfg, seed=0, steps_before=5_120, iteration=20, batch_size=256)
    assert (plan.learning_rate, plan.coefs.clip_range) == (cfg.learning_rate, cfg.clip_range)


def test_minibatch_order_is_a_fresh_permutation_per_epoch_and_reproducible() -> None:
    epochs = minibatch_order(seed=3, iteration=5, n_rows=256, minibatch=64, n_epochs=3)
    assert len(epochs) == 3 and all(len(e) == 4 for e in epochs)
    for epoch in epochs:
        assert sorted(np.concatenate(epoch).tolist()) == list(range(256))
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))
    again = minibatch_order(seed=3, iteration=5, n_rows=256, minibatch=64, n_epochs=3)
    assert all(
        np.array_equal(a, b)
        for e1, e2 in zip(epochs, again, strict=True)
        for a, b in zip(e1, e2, strict=True)
    )
    other = minibatch_order(seed=3, iteration=6, n_rows=256, minibatch=64, n_epochs=3)
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(other[0]))


def test_last_minibatch_may_be_short() -> None:
    (epoch,) = minibatch_order(seed=0, iteration=0, n_rows=100, minibatch=64, n_epochs=1)
    assert [len(i) for i in epoch] == [64, 36]


# --- the loop ---------------------------------------------------------------------------------------
class RecordingBackend:
    """Returns fixed statistics and records what the loop hands it."""

    def __init__(self, kl: float = 0.0) -> None:
        self.kl = kl
        self.minibatches: list[Minibatch[np.ndarray]] = []
        self.learning_rates: list[float] = []

    def evaluate(self, mb: Minibatch[np.ndarray], coefs: LossCoefs) -> dict[str, float]:
        self.minibatches.append(mb)
        return {
            "pg_loss": 1.0,
            "value_loss": 2.0,
            "entropy_loss": -0.5,
            "approx_kl": self.kl,
            "clip_fraction": 0.1,
        }

    def apply(self, learning_rate: float) -> float:
        self.learning_rates.append(learning_rate)
        return 0.0


def _plan(epochs: int = 2) -> UpdatePlan:
    return plan_update(
        PPO.model_copy(update={"n_epochs": epochs}), seed=0, steps_before=0, iteration=0, batch_size=256
    )


def test_loop_normalises_each_minibatch_advantages() -> None:
    backend = RecordingBackend()
    stats = run_epochs(backend, _batch(), _plan(), normalize_advantage=True, target_kl=None)
    assert stats.n_updates == 2 * 4 and len(backend.minibatches) == 8
    for mb in backend.minibatches:
        assert abs(float(mb.advantages.mean())) < 1e-5
        assert float(mb.advantages.std(ddof=1)) == pytest.approx(1.0, abs=1e-5)
    assert stats.mean("pg_loss") == pytest.approx(1.0)


def test_loop_passes_advantages_unchanged_without_normalisation() -> None:
    batch = _batch()
    backend = RecordingBackend()
    plan = _plan(1)
    run_epochs(backend, batch, plan, normalize_advantage=False, target_kl=None)
    np.testing.assert_array_equal(backend.minibatches[0].advantages, batch["advantages"][plan.epochs[0][0]])


def test_loop_applies_the_planned_learning_rate() -> None:
    backend = RecordingBackend()
    plan = plan_update(PPO, seed=0, steps_before=5_120 - 256, iteration=19, batch_size=256)
    run_epochs(backend, _batch(), plan, normalize_advantage=True, target_kl=None)
    assert backend.learning_rates == [pytest.approx(PPO.learning_rate / 2)] * (PPO.n_epochs * 4)


def test_target_kl_stops_before_applying_the_offending_minibatch() -> None:
    backend = RecordingBackend(kl=0.1)
    stats = run_epochs(backend, _batch(), _plan(), normalize_advantage=True, target_kl=0.05)
    # 0.1 > 1.5 * 0.05: the first minibatch is evaluated, never applied.
    assert len(backend.minibatches) == 1 and backend.learning_rates == []
    assert stats.stopped_early and stats.n_updates == 0 and stats.mean("pg_loss") is None
    relaxed = RecordingBackend(kl=0.1)
    assert run_epochs(relaxed, _batch(), _plan(), normalize_advantage=True, target_kl=0.07).n_updates == 8


# --- the backends -----------------------------------------------------------------------------------
def _backends(version: PolicyVersion, max_grad_norm: float) -> dict[str, object]:
    from ftg_common.update.torch_backend import TorchPPOBackend

    return {
        "numpy": NumpyPPOBackend(version, adam_eps=1e-5, max_grad_norm=max_grad_norm),
        "torch": TorchPPOBackend(version, learning_rate=1e-3, adam_eps=1e-5, max_grad_norm=max_grad_norm),
    }


def _first_moment_norm(backend: object) -> float:
    tensors = backend.optimizer_tensors()  # type: ignore[attr-defined]
    moments = [v for k, v in tensors.items() if k.endswith("exp_avg")]
    return float(np.sqrt(sum(float(np.sum(m.astype(np.float64) ** 2)) for m in moments)))


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_backend_clips_the_gradient_to_max_grad_norm(name: str) -> None:
    version = _version()
    backend = _backends(version, max_grad_norm=0.05)[name]
    mb = Minibatch.take(_batch(adv_scale=50.0), slice(0, 64))
    backend.evaluate(mb, LossCoefs(0.2, 0.5, 0.0))  # type: ignore[attr-defined]
    raw = backend.apply(1e-3)  # type: ignore[attr-defined]
    assert raw > 0.5  # far above the limit, so clipping must act
    # After one Adam step the first moment is (1 - beta1) * the gradient actually used.
    assert _first_moment_norm(backend) / 0.1 == pytest.approx(0.05, rel=1e-3)


@pytest.mark.parametrize("name", ["numpy", "torch"])
@pytest.mark.parametrize("lr", [1e-3, 2.5e-4])
def test_backend_step_size_follows_the_learning_rate(name: str, lr: float) -> None:
    version = _version()
    backend = _backends(version, max_grad_norm=10.0)[name]
    backend.evaluate(Minibatch.take(_batch(), slice(0, 64)), LossCoefs(0.2, 0.5, 0.0))  # type: ignore[attr-defined]
    backend.apply(lr)  # type: ignore[attr-defined]
    after = backend.weights()  # type: ignore[attr-defined]
    # Adam's first step moves every parameter with a non-negligible gradient by ~lr.
    moved = max(float(np.abs(after[k] - version.weights[k]).max()) for k in after)
    assert moved == pytest.approx(lr, rel=1e-2)


def test_apply_without_evaluate_is_an_error() -> None:
    backend = NumpyPPOBackend(_version(), adam_eps=1e-5, max_grad_norm=0.5)
    with pytest.raises(RuntimeError, match="evaluate"):
        backend.apply(1e-3)


# --- the pure core ----------------------------------------------------------------------------------
def _cfg(**ppo_fields: object) -> RunConfig:
    return RunConfig(run_id="upd", seed=1, ppo=PPO.model_copy(update=ppo_fields))


def test_train_advances_counters_and_is_deterministic() -> None:
    version, batch = _version(), _batch()
    new, stats = ppo.train(version, batch, _cfg(), iteration=0)
    again, _ = ppo.train(version, batch, _cfg(), iteration=0)
    assert new.state.version == 1 and new.state.iteration == 0
    assert new.state.total_steps == 256 and new.state.n_updates == PPO.n_epochs * 4 == stats.loop.n_updates
    assert new.state.optimizer_step == PPO.n_epochs * 4
    assert all(np.array_equal(new.weights[k], again.weights[k]) for k in new.weights)
    assert any(not np.array_equal(new.weights[k], version.weights[k]) for k in new.weights)
    result = stats.result(VersionKeys(policy="p", checkpoint="c"))
    assert result.version == 1 and result.learning_rate == pytest.approx(
        PPO.learning_rate * (1 - 256 / 10_240)
    )


def test_train_refuses_a_version_that_does_not_match_the_iteration() -> None:
    with pytest.raises(ValueError, match="cannot train"):
        ppo.train(_version(), _batch(), _cfg(), iteration=3)


def test_ortho_init_switch_changes_the_initial_weights() -> None:
    from ftg_common.update.initial import initial_version

    ortho = initial_version(RunConfig(run_id="a", seed=0, ppo=PPOConfig()))
    plain = initial_version(RunConfig(run_id="a", seed=0, ppo=PPOConfig(ortho_init=False)))
    # Orthogonal init zeroes biases and scales the policy head by 0.01; torch's default does neither.
    assert not np.any(ortho.weights["pi.0.bias"]) and np.any(plain.weights["pi.0.bias"])
    assert np.abs(ortho.weights["pi.out.weight"]).max() < 0.05 < np.abs(plain.weights["pi.out.weight"]).max()
    w = ortho.weights["pi.0.weight"].astype(np.float64)  # [64, 4]: orthonormal columns times sqrt(2)
    np.testing.assert_allclose(w.T @ w, 2.0 * np.eye(4), atol=1e-5)
    again = initial_version(RunConfig(run_id="b", seed=0, ppo=PPOConfig(ortho_init=False)))
    assert all(np.array_equal(plain.weights[k], again.weights[k]) for k in plain.weights)
