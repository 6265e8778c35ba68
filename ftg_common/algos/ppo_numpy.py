"""PPO loss and its gradient w.r.t. the network outputs, in numpy.

Stable-Baselines3 semantics, the same as ``ftg_common.algos.ppo.ppo_loss``. Pure functions; float32
throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ftg_common.algos.gsde import SdeTerms, sde_grads
from ftg_common.algos.minibatch import LossCoefs, Minibatch

_LOG_2PI = math.log(2.0 * math.pi)

__all__ = [
    "CategoricalTerms",
    "GaussianTerms",
    "LossGrads",
    "categorical_terms",
    "gaussian_terms",
    "log_softmax",
    "normalize",
    "ppo_loss_grads",
]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of logits [B, n] (shifted by the row max, so large logits cannot overflow)."""
    z: np.ndarray = logits - logits.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


@dataclass(frozen=True)
class CategoricalTerms:
    """Log-prob and entropy of the taken discrete actions, with what their gradients need.

    Attributes:
        log_prob: [B] log pi(a|s).
        entropy: [B].
        probs: [B, n] pi(.|s).
        log_probs_all: [B, n] log pi(.|s).
    """

    log_prob: np.ndarray
    entropy: np.ndarray
    probs: np.ndarray
    log_probs_all: np.ndarray


@dataclass(frozen=True)
class GaussianTerms:
    """Log-prob and entropy of the taken box actions under a diagonal Gaussian.

    Attributes:
        log_prob: [B] log pi(a|s).
        entropy: [B].
        z: [B, A] (a - mean) / std.
        std: [A].
    """

    log_prob: np.ndarray
    entropy: np.ndarray
    z: np.ndarray
    std: np.ndarray


HeadTerms = CategoricalTerms | GaussianTerms | SdeTerms


def categorical_terms(logits: np.ndarray, actions: np.ndarray) -> CategoricalTerms:
    """Categorical log pi(a|s) [B] and entropy [B] from logits [B, n] and int actions [B]."""
    logp_all = log_softmax(logits)
    probs = np.exp(logp_all)
    log_prob = np.take_along_axis(logp_all, actions.reshape(-1, 1).astype(np.int64), axis=1)[:, 0]
    entropy = -(probs * logp_all).sum(axis=1)
    return CategoricalTerms(log_prob, entropy, probs, logp_all)


def gaussian_terms(mean: np.ndarray, log_std: np.ndarray, actions: np.ndarray) -> GaussianTerms:
    """Diagonal Gaussian with state-independent log_std [A]: mean [B, A], actions [B, A]."""
    std = np.exp(log_std)
    z = (actions - mean) * np.exp(-log_std)
    log_norm = np.float32(log_std.sum() + 0.5 * mean.shape[1] * _LOG_2PI)
    log_prob = -0.5 * (z * z).sum(axis=1) - log_norm
    entropy = np.full(mean.shape[0], log_norm + np.float32(0.5 * mean.shape[1]), dtype=np.float32)
    return GaussianTerms(log_prob.astype(np.float32), entropy, z, std)


def normalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(x - mean) / (std + eps) with the Bessel-corrected std (torch's default), as SB3 does.

    A single element is returned unchanged: its corrected std is undefined.
    """
    if x.shape[0] < 2:
        return x
    out: np.ndarray = (x - x.mean()) / (x.std(ddof=1) + np.float32(eps))
    return out


@dataclass(frozen=True)
class LossGrads:
    """The loss of one minibatch, its diagnostics, and d loss / d (network outputs).

    Attributes:
        loss: scalar total loss.
        stats: pg_loss, value_loss, entropy_loss, approx_kl, clip_fraction.
        g_head: [B, out_dim].
        g_values: [B].
        g_log_std: [A] for box actions, None for discrete ones.
    """

    loss: float
    stats: dict[str, float]
    g_head: np.ndarray
    g_values: np.ndarray
    g_log_std: np.ndarray | None


def _value_loss_grad(
    values: np.ndarray, mb: Minibatch[np.ndarray], coefs: LossCoefs
) -> tuple[float, np.ndarray]:
    """Mean squared value error (optionally SB3-clipped) and its gradient w.r.t. values [B]."""
    b = values.shape[0]
    if coefs.clip_range_vf is None:
        v = values
        g_through = np.ones_like(values)
    else:
        delta = values - mb.old_values
        v = mb.old_values + np.clip(delta, -coefs.clip_range_vf, coefs.clip_range_vf)
        g_through = (np.abs(delta) <= coefs.clip_range_vf).astype(np.float32)
    err = v - mb.returns
    return float((err * err).mean()), (coefs.vf_coef * 2.0 / b) * err * g_through


def _head_grads(
    terms: HeadTerms, actions: np.ndarray, g_log_prob: np.ndarray, g_entropy: np.float32, ent_coef: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradient w.r.t. the head [B, out] (and log_std [A] for a Gaussian) from d loss / d log pi [B]."""
    if isinstance(terms, SdeTerms):
        # gSDE: the slope has log_std's shape and dtype, all sde_grads reads of the parameter. The
        # variance's path into the latent is left out, as SB3's PPO detaches it (learn_features=False).
        sde = sde_grads(terms, terms.slope, g_log_prob, float(g_entropy))
        return sde.g_mean, sde.g_log_std.astype(np.float32)
    if isinstance(terms, CategoricalTerms):
        onehot = np.zeros_like(terms.probs)
        np.put_along_axis(onehot, actions.reshape(-1, 1).astype(np.int64), 1.0, axis=1)
        g_head = g_log_prob[:, None] * (onehot - terms.probs)
        if ent_coef:
            # dH/dz_j = -p_j (log p_j + H)
            g_head -= g_entropy * terms.probs * (terms.log_probs_all + terms.entropy[:, None])
        return g_head, None
    z, std, b = terms.z, terms.std, terms.z.shape[0]
    g_head = g_log_prob[:, None] * z / std
    # d log pi / d log_std_j = z_j^2 - 1; d H / d log_std_j = 1 for every row.
    g_log_std = (g_log_prob[:, None] * (z * z - 1.0)).sum(axis=0) + g_entropy * b
    return g_head, g_log_std.astype(np.float32)


def ppo_loss_grads(
    head: np.ndarray, values: np.ndarray, terms: HeadTerms, mb: Minibatch[np.ndarray], coefs: LossCoefs
) -> LossGrads:
    """Loss = pg + ent_coef * (-mean entropy) + vf_coef * mean((R - V)^2), and its gradients.

    Args:
        head: [B, out] actor output (logits or Gaussian mean) under the parameters being trained.
        values: [B] V(s) under those parameters.
        terms: log-prob/entropy terms of ``mb.actions`` under ``head``.
        mb: the minibatch; its advantages are used as given.
        coefs: loss coefficients.
    """
    b = head.shape[0]
    log_ratio = terms.log_prob - mb.old_log_prob
    ratio = np.exp(log_ratio)
    surrogate = mb.advantages * ratio
    surrogate_clipped = mb.advantages * np.clip(ratio, 1.0 - coefs.clip_range, 1.0 + coefs.clip_range)
    pg_loss = float(-np.minimum(surrogate, surrogate_clipped).mean())
    # Where the unclipped surrogate is the smaller (ties included, i.e. inside the clip range) its
    # gradient flows; where the clipped one is smaller the ratio is saturated and the gradient is 0.
    g_log_prob = np.where(surrogate <= surrogate_clipped, -mb.advantages * ratio, 0.0).astype(np.float32) / b
    value_loss, g_values = _value_loss_grad(values, mb, coefs)
    entropy_loss = float(-terms.entropy.mean())
    g_entropy = np.float32(-coefs.ent_coef / b)  # d loss / d entropy_i
    g_head, g_log_std = _head_grads(terms, mb.actions, g_log_prob, g_entropy, coefs.ent_coef)
    loss = pg_loss + coefs.ent_coef * entropy_loss + coefs.vf_coef * value_loss
    stats = {
        "pg_loss": pg_loss,
        "value_loss": value_loss,
        "entropy_loss": entropy_loss,
        "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
        "clip_fraction": float((np.abs(ratio - 1.0) > coefs.clip_range).mean()),
    }
    return LossGrads(loss, stats, g_head.astype(np.float32), g_values.astype(np.float32), g_log_std)
