"""The default PPO backend: hand-written gradients in numpy (see :mod:`ftg_common.policy.numpy_mlp`).

Flat-vector Adam and gradient clipping follow torch's update rules. No torch import.
"""

from __future__ import annotations

import numpy as np

from ftg_common.algos.gsde import sde_terms
from ftg_common.algos.minibatch import LossCoefs, Minibatch
from ftg_common.algos.ppo_numpy import HeadTerms, categorical_terms, gaussian_terms, ppo_loss_grads
from ftg_common.checkpoints import PolicyVersion
from ftg_common.policy.numpy_mlp import Cache, FlatParams, backward, forward
from ftg_common.update.common import resume_flat_adam


class NumpyPPOBackend:
    """Parameters, Adam moments and the pending gradient of one update, all flat float32 vectors."""

    def __init__(self, version: PolicyVersion, *, adam_eps: float, max_grad_norm: float) -> None:
        spec = version.state.spec
        self.params = FlatParams(spec).load(version.weights)
        self.adam = resume_flat_adam(
            version, self.params.size, adam_eps=adam_eps, max_grad_norm=max_grad_norm
        )
        self._discrete = spec.action_kind == "discrete"
        self._sde = spec.use_sde
        self._sde_expln = spec.sde_use_expln
        self._pending: np.ndarray | None = None

    def _terms(self, head: np.ndarray, actions: np.ndarray, cache: Cache) -> HeadTerms:
        if self._discrete:
            return categorical_terms(head, actions)
        if self._sde:
            # The latent phi(s) is the actor's last hidden layer; the variance uses it as a constant.
            latent = cache.pi_acts[-1]
            return sde_terms(head, self.params.view("log_std"), latent, actions, self._sde_expln)
        return gaussian_terms(head, self.params.view("log_std"), actions)

    def evaluate(self, mb: Minibatch[np.ndarray], coefs: LossCoefs) -> dict[str, float]:
        """Loss statistics of ``mb``; its gradient is kept for :meth:`apply`."""
        head, values, cache = forward(self.params, mb.obs)
        lg = ppo_loss_grads(head, values, self._terms(head, mb.actions, cache), mb, coefs)
        self._pending = backward(self.params, cache, lg.g_head, lg.g_values, lg.g_log_std)
        return lg.stats

    def apply(self, learning_rate: float) -> float:
        """Clip the pending gradient to ``max_grad_norm`` and take one Adam step."""
        if self._pending is None:
            raise RuntimeError("apply() needs a gradient from evaluate() first")
        grad, self._pending = self._pending, None
        return self.adam.apply(self.params.flat, grad, learning_rate)

    @property
    def optimizer_step(self) -> int:
        """Adam steps taken (numpy's Adam state has no step tensor, so the checkpoint state keeps it)."""
        return self.adam.step

    def weights(self) -> dict[str, np.ndarray]:
        """The trained parameters (safetensors names)."""
        return self.params.tensors()

    def optimizer_tensors(self) -> dict[str, np.ndarray]:
        """Adam's moments, as stored in the checkpoint."""
        return {"exp_avg": self.adam.exp_avg, "exp_avg_sq": self.adam.exp_avg_sq}
