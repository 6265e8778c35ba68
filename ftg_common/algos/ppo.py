"""PPO clipped-surrogate loss (Schulman et al., 2017) with Stable-Baselines3 conventions.

Imports torch, so only the policy-updater may import this module.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ftg_common.algos.schedules import linear_schedule

__all__ = ["linear_schedule", "normalize", "ppo_loss"]


def ppo_loss(
    new_log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    values_pred: Tensor,
    old_values: Tensor,
    returns: Tensor,
    entropy: Tensor,
    clip_range: float,
    vf_coef: float,
    ent_coef: float,
    clip_range_vf: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total PPO loss of one minibatch and its diagnostics.

    Args:
        new_log_prob: [B] log pi_theta(a|s) under the parameters being optimised.
        old_log_prob: [B] log pi(a|s) under the behaviour policy that collected the data.
        advantages: [B] used as given (normalise beforehand if wanted).
        values_pred: [B] V_theta(s).
        old_values: [B] V(s) at collection time (the centre of value clipping).
        returns: [B] value targets.
        entropy: [B] policy entropy at each s.
        clip_range: epsilon of the ratio clip.
        vf_coef: weight of the value loss.
        ent_coef: weight of the entropy bonus.
        clip_range_vf: if set, clip V_theta to old_values +- clip_range_vf (SB3 style: the clipped
            prediction replaces the raw one, there is no max of clipped and unclipped).

    Returns:
        (loss, stats). loss is a scalar with a graph; stats holds detached scalars pg_loss,
        value_loss, entropy_loss, approx_kl, clip_fraction.
    """
    log_ratio = new_log_prob - old_log_prob
    ratio = torch.exp(log_ratio)
    surrogate = advantages * ratio
    surrogate_clipped = advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    # max of negatives = min of the surrogates: the pessimistic bound.
    pg_loss = torch.maximum(-surrogate, -surrogate_clipped).mean()

    if clip_range_vf is None:
        v = values_pred
    else:
        v = old_values + torch.clamp(values_pred - old_values, -clip_range_vf, clip_range_vf)
    value_loss = (returns - v).pow(2).mean()

    entropy_loss = -entropy.mean()
    loss = pg_loss + ent_coef * entropy_loss + vf_coef * value_loss

    with torch.no_grad():
        # The k3 estimator of KL(old || new): unbiased and never negative.
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    stats = {
        "pg_loss": pg_loss.detach(),
        "value_loss": value_loss.detach(),
        "entropy_loss": entropy_loss.detach(),
        "approx_kl": approx_kl,
        "clip_fraction": clip_fraction,
    }
    return loss, stats


def normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / (std + eps) with torch's default (Bessel-corrected) std, as SB3 does.

    A single element is returned unchanged: its corrected std is undefined, and SB3 likewise
    skips advantage normalisation for minibatches of size 1.

    Args:
        x: [B] tensor.
    """
    if x.numel() < 2:
        return x
    return (x - x.mean()) / (x.std() + eps)
