"""PPO clipped-surrogate loss (Schulman et al., 2017) with Stable-Baselines3 conventions.

Imports torch, so only the policy-updater may import this module.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ftg_common.algos.minibatch import LossCoefs, Minibatch

__all__ = ["normalize", "ppo_loss"]


def ppo_loss(
    new_log_prob: Tensor, entropy: Tensor, values_pred: Tensor, mb: Minibatch[Tensor], coefs: LossCoefs
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total PPO loss of one minibatch and its diagnostics.

    Args:
        new_log_prob: [B] log pi_theta(a|s) under the parameters being optimised.
        entropy: [B] policy entropy at each s.
        values_pred: [B] V_theta(s).
        mb: the minibatch (advantages used as given: normalise beforehand if wanted).
        coefs: loss coefficients (SB3-style value clipping: the clipped prediction replaces the raw
            one, there is no max of clipped and unclipped).

    Returns:
        (loss, stats). loss is a scalar with a graph; stats holds detached scalars pg_loss,
        value_loss, entropy_loss, approx_kl, clip_fraction.
    """
    clip_range, clip_range_vf = coefs.clip_range, coefs.clip_range_vf
    log_ratio = new_log_prob - mb.old_log_prob
    ratio = torch.exp(log_ratio)
    surrogate = mb.advantages * ratio
    surrogate_clipped = mb.advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    # max of negatives = min of the surrogates: the pessimistic bound.
    pg_loss = torch.maximum(-surrogate, -surrogate_clipped).mean()

    if clip_range_vf is None:
        v = values_pred
    else:
        v = mb.old_values + torch.clamp(values_pred - mb.old_values, -clip_range_vf, clip_range_vf)
    value_loss = (mb.returns - v).pow(2).mean()

    entropy_loss = -entropy.mean()
    loss = pg_loss + coefs.ent_coef * entropy_loss + coefs.vf_coef * value_loss

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
        eps: added to the std so a constant input does not divide by zero.
    """
    if x.numel() < 2:
        return x
    return (x - x.mean()) / (x.std() + eps)
