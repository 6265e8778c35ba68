"""Seeded initial weights of the actor-critic, in numpy (so creating a run needs no torch).

Two schemes, as Stable-Baselines3's ``ortho_init`` switch chooses between them:

- orthogonal (the default): hidden layers with gain sqrt(2), the policy head with gain 0.01 (a
  near-uniform / near-zero-mean first policy), the value head with gain 1, zero biases;
- torch's default ``nn.Linear`` initialisation: weight and bias uniform in +-1/sqrt(fan_in).

The result depends only on (spec, seed); layers are drawn in a fixed order from one generator.
"""

from __future__ import annotations

import math

import numpy as np

from ftg_common.policy.spec import PolicySpec, tensor_shapes

__all__ = ["initial_weights", "orthogonal"]

_HEAD_GAIN = {"pi": 0.01, "vf": 1.0}


def orthogonal(rng: np.random.Generator, rows: int, cols: int, gain: float) -> np.ndarray:
    """A [rows, cols] float32 matrix with orthonormal rows or columns (whichever are fewer), times ``gain``.

    The QR factor's signs are fixed by the diagonal of R, so the draw is uniform over orthogonal matrices.
    """
    a = rng.standard_normal((rows, cols))
    tall = rows >= cols
    q, r = np.linalg.qr(a if tall else a.T)
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    return np.asarray(gain * (q if tall else q.T), dtype=np.float32)


def _layer(
    rng: np.random.Generator, out_dim: int, in_dim: int, gain: float, ortho: bool
) -> tuple[np.ndarray, np.ndarray]:
    if ortho:
        return orthogonal(rng, out_dim, in_dim, gain), np.zeros(out_dim, np.float32)
    bound = 1.0 / math.sqrt(in_dim)
    weight = rng.uniform(-bound, bound, (out_dim, in_dim)).astype(np.float32)
    return weight, rng.uniform(-bound, bound, out_dim).astype(np.float32)


def initial_weights(spec: PolicySpec, seed: int, ortho: bool = True) -> dict[str, np.ndarray]:
    """Initial parameters of ``spec``'s actor-critic, keyed by the safetensors names.

    Args:
        spec: the architecture.
        seed: the only source of randomness.
        ortho: orthogonal initialisation (SB3's ``ortho_init``); otherwise torch's ``nn.Linear`` default.

    Returns:
        name -> float32 array with the shapes of :func:`ftg_common.policy.spec.tensor_shapes`.
    """
    rng = np.random.default_rng(seed)
    shapes = tensor_shapes(spec)
    out: dict[str, np.ndarray] = {}
    for net in ("pi", "vf"):
        names = [f"{net}.{i}" for i in range(len(spec.net_arch))] + [f"{net}.out"]
        for name in names:
            out_dim, in_dim = shapes[f"{name}.weight"]
            gain = _HEAD_GAIN[net] if name.endswith(".out") else math.sqrt(2.0)
            out[f"{name}.weight"], out[f"{name}.bias"] = _layer(rng, out_dim, in_dim, gain, ortho)
    if spec.action_kind == "box":
        out["log_std"] = np.full(shapes["log_std"], spec.log_std_init, np.float32)
    return out
