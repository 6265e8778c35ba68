"""Numpy inference of the actor-critic for the rollout and evaluation paths.

Must never import torch: the rollout-collector's cold start depends on it. The maths mirrors
`torch_policy.ActorCritic` exactly so that log-probs recorded at collection time match what the
updater recomputes (to float32 rounding).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ftg_common.algos.gsde import sample_exploration_matrices, sde_actions, sde_terms
from ftg_common.algos.ppo_numpy import log_softmax
from ftg_common.policy.numpy_mlp import FlatParams, Layer, fuse_actor_critic, mlp_forward
from ftg_common.policy.spec import PolicySpec

if TYPE_CHECKING:
    from ftg_common.normalize import NormalizeSettings, NormStats

__all__ = ["NumpyPolicy"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class NumpyPolicy:
    """Actor-critic MLP evaluated with numpy, built from the flat tensor dict of a checkpoint.

    Observations are [B, obs_dim] (any trailing shape is flattened), or raw vectors [B, raw_dim] when
    the spec one-hot encodes them (Discrete observations: the indices); outputs are float32, discrete
    actions int64 [B], box actions float32 [B, action_dim].
    """

    def __init__(
        self,
        spec: PolicySpec,
        tensors: dict[str, np.ndarray],
        norm: NormStats | None = None,
        norm_settings: NormalizeSettings | None = None,
    ) -> None:
        self.spec = spec
        # The version's normalisation, carried for the caller (the collector starts its statistics
        # from it, the evaluator normalises with it frozen); the methods below take observations
        # already normalised.
        self.norm = norm
        self.norm_settings = norm_settings
        self._encoding = spec.encoding
        self._params = FlatParams(spec).load(tensors)
        # Contiguous [in, out] copies made once: each forward pass is then x @ W + b with no strided reads.
        self._layers: dict[str, list[Layer]] = {
            net: [(np.ascontiguousarray(w), b.copy()) for w, b in layers]
            for net, layers in self._params.layers.items()
        }
        # Acting needs both nets on the same observations: one fused pass (see fuse_actor_critic).
        # A gSDE policy acts on the policy net's own latent, so its nets run apart.
        self._both = None if spec.use_sde else fuse_actor_critic(self._layers["pi"], self._layers["vf"])
        self._out = spec.out_dim
        self._relu = spec.activation == "relu"
        self._discrete = spec.action_kind == "discrete"
        self._sde = spec.use_sde
        if self._sde:
            self._log_std = self._params.view("log_std")  # [H, A] or [H, 1]
        elif not self._discrete:
            self._log_std = self._params.view("log_std")
            self._std = np.exp(self._log_std)
            # Multiplying by exp(-log_std), like the torch policy, keeps both paths bit-close.
            self._inv_std = np.exp(-self._log_std)
            # Gaussian log-density constant, summed over action dims.
            self._log_norm = np.float32(self._log_std.sum(dtype=np.float64) + spec.out_dim * _HALF_LOG_2PI)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        if self._encoding is not None:
            # Raw vectors (e.g. Discrete indices) -> the one-hot input the network was built for.
            return self._encoding.encode(np.asarray(obs).reshape(np.shape(obs)[0], -1))
        x = np.asarray(obs, dtype=np.float32)
        x = x.reshape(x.shape[0], -1) if x.ndim != 2 else x
        if x.shape[1] != self.spec.obs_dim:
            raise ValueError(f"observations must be [B, {self.spec.obs_dim}], got shape {np.shape(obs)}")
        return x

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Every method reads the one fused pass, so act, value, log_prob and the greedy action agree
        # bit for bit on the same observations.
        if self._both is None:
            return (
                mlp_forward(self._layers["pi"], x, self._relu)[0],
                mlp_forward(self._layers["vf"], x, self._relu)[0][:, 0],
            )
        both = mlp_forward(self._both, x, self._relu)[0]
        return both[:, : self._out], both[:, self._out]

    # --- public API ----------------------------------------------------------------------------
    def value(self, obs: np.ndarray) -> np.ndarray:
        """V(obs): [B] float32, bit-equal to the values ``act`` returns for the same observations."""
        return self._forward(self._obs(obs))[1]

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample actions from pi(.|obs).

        Draws B uniforms (discrete, inverse CDF) or B x action_dim standard normals (box) from
        `rng`, so a seeded generator reproduces the rollout. Box actions are NOT clipped to the
        action bounds: the log-prob belongs to the sampled action, clipping is the env wrapper's job.

        Args:
            obs: [B, obs_dim].
            rng: source of randomness.

        Returns:
            (actions int64 [B] or float32 [B, action_dim], values [B] float32, log_prob [B] float32).
        """
        x = self._obs(obs)
        head, values = self._forward(x)
        if self._discrete:
            logp = log_softmax(head)
            # float64 CDF so that rounding cannot leave a gap below u ~ 1.
            cdf = np.cumsum(np.exp(logp, dtype=np.float64), axis=1)
            u = rng.random(size=(x.shape[0],))
            actions = (cdf <= u[:, None]).sum(axis=1)
            np.minimum(actions, head.shape[1] - 1, out=actions)
            actions = actions.astype(np.int64, copy=False)
            log_prob = logp[np.arange(x.shape[0]), actions]
            return actions, values, log_prob
        if self._sde:
            raise ValueError("a gSDE policy acts with act_sde and its exploration matrices")
        noise = rng.standard_normal(head.shape, dtype=np.float32)
        actions = head + self._std * noise
        # (a - mean) / std is exactly the drawn noise, so no division is needed.
        log_prob = -0.5 * np.einsum("ij,ij->i", noise, noise) - self._log_norm
        return actions, values, log_prob.astype(np.float32, copy=False)

    def sample_sde_matrices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Exploration matrices of a gSDE policy, [n, H, A] float32 drawn from ``rng`` (one per env)."""
        if not self._sde:
            raise ValueError("this policy does not use gSDE")
        return sample_exploration_matrices(self._log_std, self.spec.out_dim, n, rng, self.spec.sde_use_expln)

    def act_sde(self, obs: np.ndarray, matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Actions of a gSDE policy, mu(s) + phi(s) @ E, with the envs' exploration matrices [B, H, A].

        Draws nothing: the noise is the matrices, held for several steps (see ``sde_sample_freq``).

        Returns:
            (actions float32 [B, A], unclipped; values [B] float32; log_prob [B] float32).
        """
        x = self._obs(obs)
        values = self._forward(x)[1]
        head, acts = mlp_forward(self._layers["pi"], x, self._relu)
        latent = acts[-1]
        actions = sde_actions(head, latent, matrices).astype(np.float32, copy=False)
        terms = sde_terms(head, self._log_std, latent, actions, self.spec.sde_use_expln)
        return actions, values, terms.log_prob.astype(np.float32, copy=False)

    def act_deterministic(self, obs: np.ndarray) -> np.ndarray:
        """Greedy action: argmax of the logits (int64 [B]) or the Gaussian mean (float32 [B, d])."""
        head = self._forward(self._obs(obs))[0]
        if self._discrete:
            greedy: np.ndarray = head.argmax(axis=1).astype(np.int64, copy=False)
            return greedy
        return head

    def log_prob(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Log pi(actions|obs): [B] float32. Actions are int [B] (discrete) or [B, action_dim] (box)."""
        x = self._obs(obs)
        if self._sde:
            head, acts = mlp_forward(self._layers["pi"], x, self._relu)
            a = np.asarray(actions, dtype=np.float32).reshape(head.shape)
            sde_lp: np.ndarray = sde_terms(head, self._log_std, acts[-1], a, self.spec.sde_use_expln).log_prob
            return sde_lp.astype(np.float32, copy=False)
        head = self._forward(x)[0]
        if self._discrete:
            taken = np.asarray(actions).reshape(-1).astype(np.int64, copy=False)
            chosen: np.ndarray = log_softmax(head)[np.arange(x.shape[0]), taken]
            return chosen
        a = np.asarray(actions, dtype=np.float32).reshape(head.shape)
        z = (a - head) * self._inv_std
        box: np.ndarray = (-0.5 * np.einsum("ij,ij->i", z, z) - self._log_norm).astype(np.float32, copy=False)
        return box
