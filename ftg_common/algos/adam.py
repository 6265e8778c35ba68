"""Adam and gradient-norm clipping on flat float32 vectors, with torch.optim.Adam's update rule."""

from __future__ import annotations

import math

import numpy as np


def clip_grad_norm(grad: np.ndarray, max_norm: float) -> float:
    """Scale ``grad`` in place so its L2 norm is at most ``max_norm``; returns the norm before clipping.

    Same rule as torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), capped at 1.
    """
    norm = float(np.sqrt(np.dot(grad, grad)))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        grad *= np.float32(coef)
    return norm


def adam_step(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """One Adam update in place. ``step`` counts from 1 (this update included)."""
    exp_avg *= np.float32(beta1)
    exp_avg += np.float32(1.0 - beta1) * grad
    exp_avg_sq *= np.float32(beta2)
    exp_avg_sq += np.float32(1.0 - beta2) * grad * grad
    bias1 = 1.0 - beta1**step
    bias2 = 1.0 - beta2**step
    denom = np.sqrt(exp_avg_sq) / np.float32(math.sqrt(bias2))
    denom += np.float32(eps)
    param -= np.float32(lr / bias1) * exp_avg / denom


class FlatAdam:
    """Adam's state for one flat float32 parameter vector, with gradient-norm clipping before each step.

    numpy's Adam has no step tensor, so the step count lives here and a checkpoint keeps it in its state.

    Args:
        size: the parameter vector's length (fresh moments are zeros of it).
        moments: ``exp_avg`` and ``exp_avg_sq`` as a checkpoint stored them (empty for a fresh optimizer);
            copied, so the caller's arrays are never changed.
        step: Adam steps taken so far.
        eps: Adam's epsilon.
        max_grad_norm: gradient-norm clip.
    """

    def __init__(
        self, size: int, moments: dict[str, np.ndarray], step: int, *, eps: float, max_grad_norm: float
    ) -> None:
        zeros = np.zeros(size, np.float32)
        self.exp_avg = moments.get("exp_avg", zeros).copy()
        self.exp_avg_sq = moments.get("exp_avg_sq", zeros).copy()
        self.step = step
        self.eps = eps
        self.max_grad_norm = max_grad_norm

    def apply(self, param: np.ndarray, grad: np.ndarray, lr: float) -> float:
        """Clip ``grad``, then one Adam step on ``param`` (both in place); the norm before clipping."""
        norm = clip_grad_norm(grad, self.max_grad_norm)
        self.step += 1
        adam_step(param, grad, self.exp_avg, self.exp_avg_sq, self.step, lr, eps=self.eps)
        return norm
