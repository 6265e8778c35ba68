"""PPO loss and its gradient w.r.t. the network outputs, in numpy (Stable-Baselines3 semantics, the
same as ``ftg_common.algos.ppo.ppo_loss``). Pure functions; float32 throughout."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class HeadTerms:
    """Log-prob and entropy of the taken actions, with what their gradients need."""

    log_prob: np.ndarray  # [B]
    entropy: np.ndarray  # [B]
    # discrete: probabilities [B, n] and log-probabilities [B, n]; box: z = (a - mean) / std [B, A]
    probs: np.ndarray | None = None
    log_probs_all: np.ndarray | None = None
    z: np.ndarray | None = None
    std: np.ndarray | None = None


def categorical_terms(logits: np.ndarray, actions: np.ndarray) -> HeadTerms:
    """logits [B, n], actions [B] int -> log pi(a|s) [B] and entropy [B]."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp_all = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(logp_all)
    log_prob = np.take_along_axis(logp_all, actions.reshape(-1, 1).astype(np.int64), axis=1)[:, 0]
    entropy = -(probs * logp_all).sum(axis=1)
    return HeadTerms(log_prob, entropy, probs=probs, log_probs_all=logp_all)


def gaussian_terms(mean: np.ndarray, log_std: np.ndarray, actions: np.ndarray) -> HeadTerms:
    """Diagonal Gaussian with state-independent log_std [A]: mean [B, A], actions [B, A]."""
    std = np.exp(log_std)
    z = (actions - mean) * np.exp(-log_std)
    log_norm = np.float32(log_std.sum() + 0.5 * mean.shape[1] * _LOG_2PI)
    log_prob = -0.5 * (z * z).sum(axis=1) - log_norm
    entropy = np.full(mean.shape[0], log_norm + np.float32(0.5 * mean.shape[1]), dtype=np.float32)
    return HeadTerms(log_prob.astype(np.float32), entropy, z=z, std=std)


def normalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(x - mean) / (std + eps) with the Bessel-corrected std (torch's default), as SB3 does."""
    if x.shape[0] < 2:
        return x
    return (x - x.mean()) / (x.std(ddof=1) + np.float32(eps))


@dataclass
class LossGrads:
    loss: float
    stats: dict[str, float]
    g_head: np.ndarray  # [B, out_dim]
    g_values: np.ndarray  # [B]
    g_log_std: np.ndarray | None  # [A] for Box actions


def ppo_loss_grads(
    head: np.ndarray,
    values: np.ndarray,
    terms: HeadTerms,
    actions: np.ndarray,
    old_log_prob: np.ndarray,
    advantages: np.ndarray,
    old_values: np.ndarray,
    returns: np.ndarray,
    clip_range: float,
    vf_coef: float,
    ent_coef: float,
    clip_range_vf: float | None = None,
) -> LossGrads:
    """Loss = pg + ent_coef * (-mean entropy) + vf_coef * mean((R - V)^2), and its gradients.

    Shapes: head [B, out], values/old_log_prob/advantages/old_values/returns [B]; actions [B] (discrete)
    or [B, A] (box). Advantages are used as given.
    """
    b = head.shape[0]
    log_ratio = terms.log_prob - old_log_prob
    ratio = np.exp(log_ratio)
    surrogate = advantages * ratio
    surrogate_clipped = advantages * np.clip(ratio, 1.0 - clip_range, 1.0 + clip_range)
    pg_loss = float(-np.minimum(surrogate, surrogate_clipped).mean())
    # Where the unclipped surrogate is the smaller (ties included, i.e. inside the clip range) its
    # gradient flows; where the clipped one is smaller the ratio is saturated and the gradient is 0.
    g_log_prob = np.where(surrogate <= surrogate_clipped, -advantages * ratio, 0.0).astype(np.float32) / b

    if clip_range_vf is None:
        v = values
        g_v_through = np.ones_like(values)
    else:
        delta = values - old_values
        v = old_values + np.clip(delta, -clip_range_vf, clip_range_vf)
        g_v_through = (np.abs(delta) <= clip_range_vf).astype(np.float32)
    err = v - returns
    value_loss = float((err * err).mean())
    g_values = (vf_coef * 2.0 / b) * err * g_v_through

    entropy_loss = float(-terms.entropy.mean())
    g_entropy = np.float32(-ent_coef / b)  # d loss / d entropy_i

    if terms.probs is not None:
        onehot = np.zeros_like(terms.probs)
        np.put_along_axis(onehot, actions.reshape(-1, 1).astype(np.int64), 1.0, axis=1)
        g_head = g_log_prob[:, None] * (onehot - terms.probs)
        if ent_coef:
            # dH/dz_j = -p_j (log p_j + H)
            g_head -= g_entropy * terms.probs * (terms.log_probs_all + terms.entropy[:, None])
        g_log_std = None
    else:
        z, std = terms.z, terms.std
        g_head = g_log_prob[:, None] * z / std
        # d log pi / d log_std_j = z_j^2 - 1; d H / d log_std_j = 1 for every row.
        g_log_std = (g_log_prob[:, None] * (z * z - 1.0)).sum(axis=0) + g_entropy * b
        g_log_std = g_log_std.astype(np.float32)

    loss = pg_loss + ent_coef * entropy_loss + vf_coef * value_loss
    stats = {
        "pg_loss": pg_loss,
        "value_loss": value_loss,
        "entropy_loss": entropy_loss,
        "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
        "clip_fraction": float((np.abs(ratio - 1.0) > clip_range).mean()),
    }
    return LossGrads(loss, stats, g_head.astype(np.float32), g_values.astype(np.float32), g_log_std)
