"""Generalized state-dependent exploration (gSDE; Raffin, Kober & Stulp, 2021), as SB3's ``use_sde``.

numpy only: the rollout path samples with it, the numpy updater takes its gradients. Pure functions on
arrays; dtype follows the inputs (float32 on the training path, float64 in the gradient tests).

Model (SB3's ``StateDependentNoiseDistribution`` with the ``ActorCriticPolicy`` defaults
``full_std=True``, ``use_expln=False``, ``squash_output=False``, ``learn_features=False``):

* the latent features phi(s) [H] are the actor MLP's last hidden activations, the mean is the usual
  action head mu(s) = W phi(s) + b;
* the parameter ``log_std`` is [H, A] (``full_std``) or [H, 1] (one per feature, broadcast over the A
  action dims); std = exp(log_std), or with ``use_expln`` exp(log_std) for log_std <= 0 and
  log1p(log_std + eps) + 1 above (grows linearly instead of exponentially);
* exploration: a matrix E [H, A] with entries ~ N(0, std^2) is drawn per env; the action is
  mu(s) + phi(s) @ E, the same E for several steps, so the noise is a smooth function of the state;
* log-prob and entropy: the action is treated as Gaussian, independent per dimension, with variance
  sigma^2 = phi(s)^2 @ std^2 + eps (eps = 1e-6), exactly the marginal variance of phi(s) @ E plus eps;
* ``sde_sample_freq``: SB3's PPO draws new matrices at the start of each rollout and, when
  ``sde_sample_freq > 0``, every ``sde_sample_freq`` steps of the rollout (counted from its start);
  -1 means only at the start of a rollout. The draw comes from an explicit numpy Generator, so the
  run's seeded streams reproduce it and a resumed run draws the same matrices.
* ``learn_features=False``: SB3's PPO stops the gradient of the variance through phi(s); phi(s) still
  learns through the mean. :func:`sde_grads` returns that gradient anyway (``g_latent``) for the
  ``learn_features=True`` variant; the PPO update leaves it out by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SDE_EPSILON",
    "SdeGrads",
    "SdeTerms",
    "exploration_noise",
    "init_log_std",
    "resample_due",
    "sample_exploration_matrices",
    "sde_actions",
    "sde_grads",
    "sde_std",
    "sde_terms",
]

SDE_EPSILON = 1e-6
"""SB3's ``epsilon`` of the distribution: added to the variance, and inside ``expln``."""

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def init_log_std(latent_dim: int, action_dim: int, log_std_init: float, full_std: bool = True) -> np.ndarray:
    """The initial parameter: ``log_std_init`` everywhere, [H, A] (full_std) or [H, 1], float32."""
    return np.full((latent_dim, action_dim if full_std else 1), log_std_init, dtype=np.float32)


def _check_log_std(log_std: np.ndarray, action_dim: int) -> None:
    if log_std.ndim != 2 or log_std.shape[1] not in (1, action_dim):
        raise ValueError(f"log_std must be [H, {action_dim}] or [H, 1], got shape {log_std.shape}")


def _std_and_slope(log_std: np.ndarray, use_expln: bool) -> tuple[np.ndarray, np.ndarray]:
    """(std, d std / d log_std), both shaped like ``log_std``."""
    if not use_expln:
        std = np.exp(log_std)
        return std, std
    # np.where on clamped inputs: SB3 multiplies by masks, whose inf * 0 turns into NaN for large values.
    below = np.exp(np.minimum(log_std, 0.0))
    shifted = np.maximum(log_std, 0.0) + SDE_EPSILON
    std = np.where(log_std <= 0, below, np.log1p(shifted) + 1.0)
    slope = np.where(log_std <= 0, below, 1.0 / (1.0 + shifted))
    return std.astype(log_std.dtype, copy=False), slope.astype(log_std.dtype, copy=False)


def sde_std(log_std: np.ndarray, action_dim: int, use_expln: bool = False) -> np.ndarray:
    """Standard deviations of the exploration matrix's entries: [H, A].

    Args:
        log_std: [H, A] (full_std) or [H, 1] (broadcast over actions).
        action_dim: A.
        use_expln: the ``expln`` transform instead of ``exp``.
    """
    _check_log_std(log_std, action_dim)
    std, _ = _std_and_slope(log_std, use_expln)
    return np.broadcast_to(std, (log_std.shape[0], action_dim))


def resample_due(step: int, sde_sample_freq: int) -> bool:
    """Whether step ``step`` (0-based, counted from the rollout's start) draws new exploration matrices.

    True at the start of every rollout; then every ``sde_sample_freq`` steps if it is positive.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return step == 0 or (sde_sample_freq > 0 and step % sde_sample_freq == 0)


def sample_exploration_matrices(
    log_std: np.ndarray, action_dim: int, n: int, rng: np.random.Generator, use_expln: bool = False
) -> np.ndarray:
    """Draw ``n`` exploration matrices, entries ~ N(0, std^2): [n, H, A] in log_std's dtype.

    Draws exactly n * H * A standard normals from ``rng`` (in float32 for float32 ``log_std``), so the
    matrices are a pure function of the generator's state and the parameters.

    Args:
        log_std: [H, A] or [H, 1].
        action_dim: A.
        n: how many matrices (one per env).
        rng: the stream to draw from.
        use_expln: the ``expln`` transform instead of ``exp``.
    """
    std = sde_std(log_std, action_dim, use_expln)
    dtype = np.float32 if log_std.dtype == np.float32 else np.float64
    eps = rng.standard_normal((n, *std.shape), dtype=dtype)
    out: np.ndarray = eps * std
    return out


def exploration_noise(latent: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """phi(s_i) @ E_i for every row i: latent [B, H], matrices [B, H, A] (or one [H, A]) -> [B, A]."""
    if matrices.ndim == 2:
        out: np.ndarray = latent @ matrices
        return out
    if matrices.shape[0] != latent.shape[0]:
        raise ValueError(f"{matrices.shape[0]} exploration matrices for {latent.shape[0]} rows")
    noise: np.ndarray = np.einsum("bh,bha->ba", latent, matrices)
    return noise


def sde_actions(mean: np.ndarray, latent: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Sampled actions mu(s) + phi(s) @ E: [B, A] (unclipped: clipping is the env step's job)."""
    actions: np.ndarray = mean + exploration_noise(latent, matrices)
    return actions


@dataclass(frozen=True)
class SdeTerms:
    """Log-prob and entropy of actions under the gSDE Gaussian, with what their gradients need.

    Attributes:
        log_prob: [B] log pi(a|s), summed over action dims.
        entropy: [B].
        z: [B, A] (a - mu) / sigma.
        sigma: [B, A] sqrt(phi^2 @ std^2 + eps).
        latent: [B, H] phi(s).
        std: [H, A].
        slope: d std / d log_std, shaped like log_std.
    """

    log_prob: np.ndarray
    entropy: np.ndarray
    z: np.ndarray
    sigma: np.ndarray
    latent: np.ndarray
    std: np.ndarray
    slope: np.ndarray


def sde_terms(
    mean: np.ndarray,
    log_std: np.ndarray,
    latent: np.ndarray,
    actions: np.ndarray,
    use_expln: bool = False,
    epsilon: float = SDE_EPSILON,
) -> SdeTerms:
    """The log-prob log pi(a|s) and the entropy of the gSDE distribution.

    Args:
        mean: [B, A] mu(s).
        log_std: [H, A] or [H, 1].
        latent: [B, H] phi(s).
        actions: [B, A] the actions taken (unclipped, as sampled).
        use_expln: the ``expln`` transform instead of ``exp``.
        epsilon: added to the variance.

    Returns:
        The terms; ``log_prob`` = sum_a [-z^2/2 - log sigma - log(2 pi)/2], ``entropy`` = sum_a
        [1/2 + log(2 pi)/2 + log sigma].
    """
    action_dim = mean.shape[1]
    _check_log_std(log_std, action_dim)
    std, slope = _std_and_slope(log_std, use_expln)
    std = np.broadcast_to(std, (log_std.shape[0], action_dim))
    variance = (latent * latent) @ (std * std) + epsilon
    sigma = np.sqrt(variance)
    z = (actions - mean) / sigma
    log_sigma = np.log(sigma)
    log_prob = (-0.5 * z * z - log_sigma).sum(axis=1) - action_dim * _HALF_LOG_2PI
    entropy = log_sigma.sum(axis=1) + action_dim * (0.5 + _HALF_LOG_2PI)
    return SdeTerms(log_prob, entropy, z, sigma, latent, std, slope)


@dataclass(frozen=True)
class SdeGrads:
    """Gradients of a loss through the gSDE terms.

    Attributes:
        g_mean: [B, A] d loss / d mu (flows into the action head and, through it, into phi).
        g_log_std: d loss / d log_std, shaped like log_std ([H, A] or [H, 1]).
        g_latent: [B, H] d loss / d phi through the variance only (SB3's PPO stops this path:
            ``learn_features=False``).
    """

    g_mean: np.ndarray
    g_log_std: np.ndarray
    g_latent: np.ndarray


def sde_grads(
    terms: SdeTerms, log_std: np.ndarray, g_log_prob: np.ndarray, g_entropy: np.ndarray | float
) -> SdeGrads:
    """Chain rule from d loss / d log_prob [B] and d loss / d entropy ([B] or a scalar per row).

    With v = phi^2 @ std^2 + eps and sigma = sqrt(v)::

        d log_prob / d mu_a = z_a / sigma_a
        d log_prob / d v_a  = (z_a^2 - 1) / (2 v_a)          d entropy / d v_a = 1 / (2 v_a)
        d v_ba / d std_ha   = 2 phi_bh^2 std_ha              d v_ba / d phi_bh = 2 phi_bh std_ha^2

    Args:
        terms: what :func:`sde_terms` returned for the minibatch.
        log_std: the parameter the terms were computed from.
        g_log_prob: [B] d loss / d log_prob.
        g_entropy: [B] or scalar d loss / d entropy of each row.
    """
    g_lp = np.asarray(g_log_prob)[:, None]
    g_ent = np.broadcast_to(np.asarray(g_entropy, dtype=terms.z.dtype), g_lp.shape[:1])[:, None]
    sigma2 = terms.sigma * terms.sigma
    g_mean = g_lp * terms.z / terms.sigma
    g_var = (g_lp * (terms.z * terms.z - 1.0) + g_ent) / (2.0 * sigma2)  # [B, A] d loss / d v
    g_std = 2.0 * terms.std * ((terms.latent * terms.latent).T @ g_var)  # [H, A]
    if log_std.shape[1] != g_std.shape[1]:
        g_std = g_std.sum(axis=1, keepdims=True)  # one parameter per feature, shared by the A action dims
    g_log_std = g_std * terms.slope
    g_latent = 2.0 * terms.latent * (g_var @ (terms.std * terms.std).T)
    return SdeGrads(g_mean, g_log_std.astype(log_std.dtype, copy=False), g_latent)
