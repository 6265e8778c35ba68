"""PPO loss, normalisation and schedules against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from ftg_common.algos.minibatch import LossCoefs, Minibatch
from ftg_common.algos.ppo import normalize
from ftg_common.algos.ppo import ppo_loss as _ppo_loss
from ftg_common.algos.schedules import linear_schedule

CLIP = 0.2
# Five samples covering every branch of the clipped surrogate (c = 0.2):
#   i  ratio  A    -A*r   -A*clip(r)   max    clipped(|r-1|>c)
#   0  1.1    2    -2.2   -2.2         -2.2   no   (inside the clip range)
#   1  1.5    1    -1.5   -1.2         -1.2   yes  (A>0, ratio too high: clipped term wins)
#   2  0.5   -1     0.5    0.8          0.8   yes  (A<0, ratio too low: clipped term wins)
#   3  1.5   -1     1.5    1.2          1.5   yes  (A<0, ratio high: unclipped term, pessimistic)
#   4  0.5    1    -0.5   -0.8         -0.5   yes  (A>0, ratio low: unclipped term, pessimistic)
# pg_loss = (-2.2 - 1.2 + 0.8 + 1.5 - 0.5) / 5 = -1.6 / 5 = -0.32
RATIOS = [1.1, 1.5, 0.5, 1.5, 0.5]
ADV = [2.0, 1.0, -1.0, -1.0, 1.0]
OLD_LOGP = [-1.0, -0.5, -2.0, -1.0, -0.3]
# Values: pred [1..5], returns [0,2,2,5,5], residuals R - v = [-1, 0, -1, 1, 0]
# value_loss = (1 + 0 + 1 + 1 + 0) / 5 = 0.6
PRED = [1.0, 2.0, 3.0, 4.0, 5.0]
OLD_V = [1.5] * 5
RET = [0.0, 2.0, 2.0, 5.0, 5.0]
# entropy mean = 0.7 -> entropy_loss = -0.7
ENT = [0.5, 0.6, 0.7, 0.8, 0.9]
VF_COEF, ENT_COEF = 0.5, 0.01


def ppo_loss(new, old, adv, pred, old_v, ret, ent, clip_range, vf_coef, ent_coef, clip_range_vf=None):
    """The loss with the tables' inputs in their column order (actions are unused by the loss)."""
    mb = Minibatch(obs=None, actions=None, old_log_prob=old, advantages=adv, old_values=old_v, returns=ret)
    return _ppo_loss(new, ent, pred, mb, LossCoefs(clip_range, vf_coef, ent_coef, clip_range_vf))


def _inputs(requires_grad: bool = False):
    old = torch.tensor(OLD_LOGP)
    new = (old + torch.log(torch.tensor(RATIOS))).detach().requires_grad_(requires_grad)
    pred = torch.tensor(PRED, requires_grad=requires_grad)
    ent = torch.tensor(ENT, requires_grad=requires_grad)
    return new, old, torch.tensor(ADV), pred, torch.tensor(OLD_V), torch.tensor(RET), ent


def test_loss_hand_values() -> None:
    loss, stats = ppo_loss(*_inputs(), clip_range=CLIP, vf_coef=VF_COEF, ent_coef=ENT_COEF)
    assert stats["pg_loss"].item() == pytest.approx(-0.32, abs=1e-6)
    assert stats["value_loss"].item() == pytest.approx(0.6, abs=1e-6)
    assert stats["entropy_loss"].item() == pytest.approx(-0.7, abs=1e-6)
    # total = -0.32 + 0.01*(-0.7) + 0.5*0.6 = -0.027
    assert loss.item() == pytest.approx(-0.027, abs=1e-6)
    # 4 of 5 ratios are outside [0.8, 1.2]
    assert stats["clip_fraction"].item() == pytest.approx(0.8, abs=1e-7)
    # approx_kl = mean((r - 1) - ln r):
    #   r=1.1: 0.1 - 0.0953102 = 0.0046898; r=1.5: 0.5 - 0.4054651 = 0.0945349
    #   r=0.5: -0.5 + 0.6931472 = 0.1931472
    #   mean = (0.0046898 + 2*0.0945349 + 2*0.1931472) / 5 = 0.1160108
    expected_kl = sum((r - 1) - math.log(r) for r in RATIOS) / 5
    assert expected_kl == pytest.approx(0.1160108, abs=1e-6)
    assert stats["approx_kl"].item() == pytest.approx(expected_kl, abs=1e-6)


def test_value_clipping() -> None:
    # pred - old = [-0.5, 0.5, 1.5, 2.5, 3.5] -> clamp to +-1 -> [-0.5, 0.5, 1, 1, 1]
    # v = 1.5 + that = [1, 2, 2.5, 2.5, 2.5]; (R - v)^2 = [1, 0, 0.25, 6.25, 6.25]
    # value_loss = 13.75 / 5 = 2.75; total = -0.32 - 0.007 + 0.5*2.75 = 1.048
    loss, stats = ppo_loss(*_inputs(), clip_range=CLIP, vf_coef=VF_COEF, ent_coef=ENT_COEF, clip_range_vf=1.0)
    assert stats["value_loss"].item() == pytest.approx(2.75, abs=1e-6)
    assert loss.item() == pytest.approx(1.048, abs=1e-6)


def test_gradients_flow_and_stats_are_detached() -> None:
    new, old, adv, pred, old_v, ret, ent = _inputs(requires_grad=True)
    loss, stats = ppo_loss(
        new, old, adv, pred, old_v, ret, ent, clip_range=CLIP, vf_coef=VF_COEF, ent_coef=ENT_COEF
    )
    loss.backward()
    # d pg / d new_logp_i = -A_i * r_i / B where the unclipped term is active, 0 where clipped:
    #   i0: -2*1.1/5 = -0.44; i1, i2: 0; i3: 1*1.5/5 = 0.3; i4: -1*0.5/5 = -0.1
    torch.testing.assert_close(new.grad, torch.tensor([-0.44, 0.0, 0.0, 0.3, -0.1]))
    # d (0.5 * mean((R - v)^2)) / d v_i = -(R_i - v_i) / 5 = [0.2, 0, 0.2, -0.2, 0]
    torch.testing.assert_close(pred.grad, torch.tensor([0.2, 0.0, 0.2, -0.2, 0.0]))
    # d (0.01 * -mean(H)) / d H_i = -0.002
    torch.testing.assert_close(ent.grad, torch.full((5,), -0.002))
    assert all(not v.requires_grad for v in stats.values())


def test_value_clipping_blocks_gradient_where_clamped() -> None:
    new, old, adv, pred, old_v, ret, ent = _inputs(requires_grad=True)
    loss, _ = ppo_loss(new, old, adv, pred, old_v, ret, ent, CLIP, VF_COEF, ENT_COEF, clip_range_vf=1.0)
    loss.backward()
    # unclamped i0, i1: -(R - v)/5 = [0.2, 0]; clamped i2..i4 get no gradient
    torch.testing.assert_close(pred.grad, torch.tensor([0.2, 0.0, 0.0, 0.0, 0.0]))


def test_identical_policies_give_zero_kl_and_no_clipping() -> None:
    logp = torch.tensor([-0.3, -1.2, -2.0])
    adv = torch.tensor([1.0, -2.0, 0.5])
    z = torch.zeros(3)
    _, stats = ppo_loss(logp, logp, adv, z, z, z, z, CLIP, VF_COEF, ENT_COEF)
    assert stats["approx_kl"].item() == 0.0
    assert stats["clip_fraction"].item() == 0.0
    # ratio 1 -> pg_loss = -mean(A) = -(1 - 2 + 0.5)/3 = 1/6
    assert stats["pg_loss"].item() == pytest.approx(1 / 6, abs=1e-7)


def test_normalize() -> None:
    # mean 2.5, unbiased std sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3) = sqrt(5/3) = 1.2909944
    out = normalize(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    s = math.sqrt(5 / 3)
    torch.testing.assert_close(out, torch.tensor([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]))
    one = torch.tensor([3.0])
    assert normalize(one) is one
    # a constant batch stays finite thanks to eps
    assert torch.all(normalize(torch.full((4,), 2.0)) == 0)


def test_linear_schedule() -> None:
    assert linear_schedule(3e-4, 1.0) == pytest.approx(3e-4)
    assert linear_schedule(3e-4, 0.5) == pytest.approx(1.5e-4)
    assert linear_schedule(0.2, 0.0) == 0.0
