"""The numpy update path against torch autograd: same loss, same gradients, same optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ftg_common.algos.adam import adam_step, clip_grad_norm
from ftg_common.algos.minibatch import LossCoefs, Minibatch
from ftg_common.algos.ppo import normalize as torch_normalize
from ftg_common.algos.ppo import ppo_loss
from ftg_common.algos.ppo_numpy import categorical_terms, gaussian_terms, normalize, ppo_loss_grads
from ftg_common.policy.numpy_mlp import FlatParams, backward, forward
from ftg_common.policy.spec import PolicySpec
from ftg_common.policy.torch_policy import ActorCritic

SPECS = {
    "discrete-tanh": PolicySpec(
        obs_dim=4, action_kind="discrete", n_actions=3, net_arch=[64, 64], activation="tanh"
    ),
    "box-relu": PolicySpec(
        obs_dim=3,
        action_kind="box",
        action_dim=2,
        action_low=[-2, -2],
        action_high=[2, 2],
        net_arch=[32],
        activation="relu",
        log_std_init=-0.3,
    ),
}


def _batch(spec: PolicySpec, model: ActorCritic, b: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((b, spec.obs_dim)).astype(np.float32)
    if spec.action_kind == "discrete":
        actions = rng.integers(0, spec.n_actions, b)
    else:
        actions = rng.standard_normal((b, spec.action_dim)).astype(np.float32)
    with torch.no_grad():
        logp, _, values = model.evaluate_actions(torch.from_numpy(obs), torch.from_numpy(actions))
    # Behaviour log-probs off by up to +-0.5 so that some ratios fall outside the clip range.
    old_logp = logp.numpy() + rng.uniform(-0.5, 0.5, b).astype(np.float32)
    return {
        "obs": obs,
        "actions": actions,
        "log_probs": old_logp,
        "values": values.numpy() + rng.normal(0, 0.3, b).astype(np.float32),
        "advantages": rng.standard_normal(b).astype(np.float32) * 2 + 0.3,
        "returns": rng.standard_normal(b).astype(np.float32),
    }


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("clip_range_vf", [None, 0.2])
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_loss_and_gradients_match_torch_autograd(
    name: str, clip_range_vf: float | None, ent_coef: float
) -> None:
    spec = SPECS[name]
    model = ActorCritic(spec)
    model.init_weights(3)
    # Move off the init so heads are not ~0, from an explicit stream: the global one depends on which
    # tests ran before, and a ReLU pre-activation drawn within float32 rounding of 0 would take the
    # other branch than the float64 reference in some orders.
    gen = torch.Generator().manual_seed(len(name))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.1)
    batch = _batch(spec, model, 128, seed=len(name))
    params = FlatParams(spec).load(model.flat_tensors())
    # The autograd reference runs in float64, so it does not depend on float32 summation order
    # (BLAS kernel, torch's thread count, which other tests change).
    model.double()
    t = {
        k: torch.from_numpy(v) if v.dtype.kind == "i" else torch.from_numpy(v).double()
        for k, v in batch.items()
    }
    adv_t = torch_normalize(t["advantages"])
    logp, ent, values = model.evaluate_actions(t["obs"], t["actions"])
    coefs = LossCoefs(clip_range=0.2, vf_coef=0.5, ent_coef=ent_coef, clip_range_vf=clip_range_vf)
    loss_t, stats_t = ppo_loss(
        logp, ent, values, Minibatch.take(t, slice(None)).with_advantages(adv_t), coefs
    )
    model.zero_grad()
    loss_t.backward()
    torch_grads = {n: p.grad.numpy() for n, p in model.named_parameters()}

    adv = normalize(batch["advantages"])
    np.testing.assert_allclose(adv, adv_t.numpy(), rtol=1e-5, atol=1e-6)
    head, v, cache = forward(params, batch["obs"])
    if spec.action_kind == "discrete":
        terms = categorical_terms(head, batch["actions"])
    else:
        terms = gaussian_terms(head, params.view("log_std"), batch["actions"])
    np.testing.assert_allclose(terms.log_prob, logp.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terms.entropy, ent.detach().numpy(), rtol=1e-5, atol=1e-5)
    mb = Minibatch.take(batch, slice(None)).with_advantages(adv)
    lg = ppo_loss_grads(head, v, terms, mb, coefs)
    assert lg.loss == pytest.approx(float(loss_t.detach()), rel=1e-5, abs=1e-6)
    for k in ("pg_loss", "value_loss", "entropy_loss", "approx_kl", "clip_fraction"):
        assert lg.stats[k] == pytest.approx(float(stats_t[k]), rel=1e-4, abs=1e-6), k
    assert 0.0 < lg.stats["clip_fraction"] < 1.0  # both branches of the clipped objective are exercised
    grads = params.tensors(backward(params, cache, lg.g_head, lg.g_values, lg.g_log_std))
    assert grads.keys() == torch_grads.keys()
    for n in grads:
        np.testing.assert_allclose(grads[n], torch_grads[n], rtol=2e-4, atol=2e-6, err_msg=n)


def test_adam_and_clipping_match_torch() -> None:
    rng = np.random.default_rng(0)
    p_np = rng.standard_normal(300).astype(np.float32)
    p_t = torch.nn.Parameter(torch.from_numpy(p_np.copy()))
    opt = torch.optim.Adam([p_t], lr=3e-3, eps=1e-5)
    m, v = np.zeros_like(p_np), np.zeros_like(p_np)
    for step in range(1, 30):
        g = (rng.standard_normal(300) * (5 if step % 3 else 0.01)).astype(np.float32)
        p_t.grad = torch.from_numpy(g.copy())
        norm_t = float(torch.nn.utils.clip_grad_norm_([p_t], 0.5))
        opt.step()
        norm_np = clip_grad_norm(g, 0.5)
        adam_step(p_np, g, m, v, step, 3e-3, eps=1e-5)
        assert norm_np == pytest.approx(norm_t, rel=1e-5)
        np.testing.assert_allclose(p_np, p_t.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_flat_params_round_trip_and_layout() -> None:
    spec = SPECS["box-relu"]
    model = ActorCritic(spec)
    model.init_weights(1)
    tensors = model.flat_tensors()
    params = FlatParams(spec).load(tensors)
    assert params.size == sum(t.size for t in tensors.values())
    back = params.tensors()
    assert all(np.array_equal(back[k], tensors[k]) for k in tensors)
    params.view("log_std")[...] = 7.0  # views write through to the flat vector
    assert np.count_nonzero(params.flat == 7.0) == spec.action_dim
    with pytest.raises(ValueError, match="float32"):
        FlatParams(spec, np.zeros(params.size, dtype=np.float64))


def test_numpy_and_torch_backends_train_alike(ftg_env) -> None:
    """Whole updates through the policy-updater: both backends end close to each other."""
    from ftg_common import layout, runtime
    from ftg_common.tensorio import decode
    from tests.funcs import iterate, new_run

    common = dict(
        n_envs=4, n_steps=32, shards=1, batch_size=64, n_epochs=4, total_steps=128 * 4, ent_coef=0.01
    )
    weights = {}
    for backend in ("numpy", "torch"):
        cfg = new_run(run_id=f"b-{backend}", seed=1, update_backend=backend, **common)
        out = iterate(cfg, 0)
        assert out["update"]["n_updates"] == 4 * 2
        weights[backend] = decode(runtime.store().get_bytes(layout.policy_key(cfg.run_id, 1)))[0]
    before = decode(runtime.store().get_bytes(layout.policy_key("b-numpy", 0)))[0]
    for k in weights["numpy"]:
        moved = np.abs(weights["torch"][k] - before[k]).max()
        diff = np.abs(weights["numpy"][k] - weights["torch"][k]).max()
        assert diff <= 1e-4 + 1e-2 * moved, (k, diff, moved)
