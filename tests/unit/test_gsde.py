"""gSDE: sampling semantics, log-prob/entropy, and hand-written gradients against torch autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ftg_common.algos.gsde import (
    SDE_EPSILON,
    exploration_noise,
    init_log_std,
    resample_due,
    sample_exploration_matrices,
    sde_actions,
    sde_grads,
    sde_std,
    sde_terms,
)

B, H, A = 7, 5, 3


def _inputs(seed: int, full_std: bool, dtype=np.float64):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(B, A)).astype(dtype)
    # log_std on both sides of 0, so expln's two branches are both exercised.
    log_std = rng.uniform(-1.5, 1.5, size=(H, A if full_std else 1)).astype(dtype)
    latent = np.tanh(rng.normal(size=(B, H))).astype(dtype)
    actions = (mean + rng.normal(size=(B, A)) * 0.7).astype(dtype)
    return mean, log_std, latent, actions


def _torch_reference(mean, log_std, latent, actions, c_lp, c_ent, use_expln: bool):
    """The distribution written directly in torch, differentiated by autograd."""
    t = {
        k: torch.tensor(v, requires_grad=True)
        for k, v in dict(mean=mean, log_std=log_std, latent=latent).items()
    }
    ls = t["log_std"]
    if use_expln:
        std = torch.where(
            ls <= 0, torch.exp(torch.clamp(ls, max=0.0)), torch.log1p(ls.clamp(min=0) + SDE_EPSILON) + 1
        )
    else:
        std = torch.exp(ls)
    std = std.expand(H, A)
    variance = (t["latent"] ** 2) @ (std**2) + SDE_EPSILON
    dist = torch.distributions.Normal(t["mean"], torch.sqrt(variance))
    log_prob = dist.log_prob(torch.tensor(actions)).sum(-1)
    entropy = dist.entropy().sum(-1)
    loss = (torch.tensor(c_lp) * log_prob).sum() + (torch.tensor(c_ent) * entropy).sum()
    loss.backward()
    return log_prob.detach().numpy(), entropy.detach().numpy(), {k: v.grad.numpy() for k, v in t.items()}


@pytest.mark.parametrize("full_std", [True, False])
@pytest.mark.parametrize("use_expln", [False, True])
def test_terms_and_gradients_match_autograd(full_std: bool, use_expln: bool) -> None:
    mean, log_std, latent, actions = _inputs(0, full_std)
    rng = np.random.default_rng(1)
    c_lp, c_ent = rng.normal(size=B), rng.normal(size=B)
    ref_lp, ref_ent, ref_grads = _torch_reference(mean, log_std, latent, actions, c_lp, c_ent, use_expln)
    terms = sde_terms(mean, log_std, latent, actions, use_expln=use_expln)
    np.testing.assert_allclose(terms.log_prob, ref_lp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(terms.entropy, ref_ent, rtol=1e-12, atol=1e-12)
    grads = sde_grads(terms, log_std, c_lp, c_ent)
    np.testing.assert_allclose(grads.g_mean, ref_grads["mean"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads.g_log_std, ref_grads["log_std"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads.g_latent, ref_grads["latent"], rtol=1e-10, atol=1e-12)
    assert grads.g_log_std.shape == log_std.shape


def test_scalar_entropy_coefficient_and_float32() -> None:
    mean, log_std, latent, actions = (x.astype(np.float32) for x in _inputs(2, True))
    terms = sde_terms(mean, log_std, latent, actions)
    assert terms.log_prob.dtype == np.float32 and terms.entropy.dtype == np.float32
    g_lp = np.full(B, 0.1, dtype=np.float32)
    grads = sde_grads(terms, log_std, g_lp, np.float32(-0.01))
    assert grads.g_mean.dtype == grads.g_log_std.dtype == grads.g_latent.dtype == np.float32
    ref = sde_grads(
        sde_terms(*(x.astype(np.float64) for x in (mean, log_std, latent, actions))), log_std, g_lp, -0.01
    )
    np.testing.assert_allclose(grads.g_log_std, ref.g_log_std, rtol=1e-4, atol=1e-6)


def test_hand_computed_single_feature() -> None:
    # H = A = 1: phi = 2, std = e^0 = 1, so v = 4 + eps; a - mu = 2 -> z = 2 / sqrt(4 + eps)
    terms = sde_terms(np.zeros((1, 1)), np.zeros((1, 1)), np.full((1, 1), 2.0), np.full((1, 1), 2.0))
    sigma = math.sqrt(4.0 + SDE_EPSILON)
    z = 2.0 / sigma
    assert terms.log_prob[0] == pytest.approx(-0.5 * z * z - math.log(sigma) - 0.5 * math.log(2 * math.pi))
    assert terms.entropy[0] == pytest.approx(0.5 + 0.5 * math.log(2 * math.pi) + math.log(sigma))
    # d log_prob / d log_std = (z^2 - 1) / (2 v) * 2 phi^2 std * std = (z^2 - 1) * 4 / v
    g = sde_grads(terms, np.zeros((1, 1)), np.ones(1), 0.0)
    assert g.g_log_std[0, 0] == pytest.approx((z * z - 1.0) * 4.0 / (4.0 + SDE_EPSILON))


def test_matches_sb3_distribution() -> None:
    dists = pytest.importorskip(
        "stable_baselines3.common.distributions", reason="stable-baselines3 (bench extra)"
    )
    for full_std, use_expln in ((True, False), (False, True)):
        mean, log_std, latent, actions = _inputs(3, full_std)
        d = dists.StateDependentNoiseDistribution(A, full_std=full_std, use_expln=use_expln)
        d.proba_distribution_net(latent_dim=H, log_std_init=0.0)
        d.proba_distribution(torch.tensor(mean), torch.tensor(log_std), torch.tensor(latent))
        terms = sde_terms(mean, log_std, latent, actions, use_expln=use_expln)
        np.testing.assert_allclose(terms.log_prob, d.log_prob(torch.tensor(actions)).numpy(), rtol=1e-12)
        np.testing.assert_allclose(terms.entropy, d.entropy().numpy(), rtol=1e-12)
        np.testing.assert_allclose(
            sde_std(log_std, A, use_expln), d.get_std(torch.tensor(log_std)).numpy(), rtol=1e-12
        )


# --- sampling -----------------------------------------------------------------------------------------


def test_matrices_are_std_times_the_generators_normals() -> None:
    log_std = init_log_std(H, A, -0.5)
    assert log_std.shape == (H, A) and log_std.dtype == np.float32
    m = sample_exploration_matrices(log_std, A, 4, np.random.default_rng(7))
    eps = np.random.default_rng(7).standard_normal((4, H, A), dtype=np.float32)
    np.testing.assert_array_equal(m, eps * np.float32(math.exp(-0.5)))
    assert m.dtype == np.float32
    # Same stream state, same matrices: a resumed run redraws them exactly.
    again = sample_exploration_matrices(log_std, A, 4, np.random.default_rng(7))
    assert again.tobytes() == m.tobytes()


def test_per_feature_std_broadcasts_over_actions() -> None:
    log_std = init_log_std(H, A, 0.3, full_std=False)
    assert log_std.shape == (H, 1)
    std = sde_std(log_std, A)
    assert std.shape == (H, A) and np.allclose(std, math.exp(0.3))
    m = sample_exploration_matrices(log_std, A, 2, np.random.default_rng(0))
    assert m.shape == (2, H, A)


def test_noise_has_the_modelled_variance() -> None:
    # phi @ E with E ~ N(0, std^2) entrywise has variance phi^2 @ std^2 = sigma^2 - eps.
    rng = np.random.default_rng(5)
    log_std = rng.uniform(-1, 0.5, size=(H, A))
    latent = rng.normal(size=(1, H))
    m = sample_exploration_matrices(log_std, A, 40_000, rng)
    noise = exploration_noise(np.repeat(latent, len(m), axis=0), m)
    sigma = sde_terms(np.zeros((1, A)), log_std, latent, np.zeros((1, A))).sigma[0]
    np.testing.assert_allclose(noise.var(axis=0), sigma**2 - SDE_EPSILON, rtol=0.03)
    assert np.all(np.abs(noise.mean(axis=0)) < 0.03 * sigma)


def test_actions_use_each_rows_matrix() -> None:
    rng = np.random.default_rng(6)
    latent, mean = rng.normal(size=(2, H)), rng.normal(size=(2, A))
    m = rng.normal(size=(2, H, A))
    acts = sde_actions(mean, latent, m)
    np.testing.assert_allclose(acts[1], mean[1] + latent[1] @ m[1])
    np.testing.assert_allclose(exploration_noise(latent, m[0]), latent @ m[0])
    with pytest.raises(ValueError, match="3 exploration matrices for 2 rows"):
        exploration_noise(latent, rng.normal(size=(3, H, A)))


def test_expln_is_finite_continuous_and_linear_growth() -> None:
    log_std = np.array([[-1e-9, 0.0, 1e-9, 50.0, 1000.0]]).T  # [5, 1]
    std = sde_std(log_std, 1, use_expln=True)[:, 0]
    assert np.all(np.isfinite(std))
    assert std[0] == pytest.approx(1.0) and std[1] == 1.0 and std[2] == pytest.approx(1.0, abs=1e-5)
    assert std[4] == pytest.approx(math.log1p(1000.0) + 1.0, rel=1e-9)


def test_resample_schedule() -> None:
    assert [t for t in range(10) if resample_due(t, 4)] == [0, 4, 8]
    assert [t for t in range(10) if resample_due(t, -1)] == [0]
    assert [t for t in range(10) if resample_due(t, 0)] == [0]
    assert [t for t in range(3) if resample_due(t, 1)] == [0, 1, 2]
    with pytest.raises(ValueError):
        resample_due(-1, 4)


def test_bad_log_std_shape() -> None:
    with pytest.raises(ValueError, match=r"log_std must be \[H, 3\] or \[H, 1\]"):
        sde_std(np.zeros((H, 2)), 3)
