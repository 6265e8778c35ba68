"""The default PPO backend: hand-written gradients in numpy (see :mod:`ftg_common.policy.numpy_mlp`).

Flat-vector Adam and gradient clipping follow torch's update rules. No torch import.
"""

from __future__ import annotations

import numpy as np

from ftg_common.algos.adam import adam_step, clip_grad_norm
from ftg_common.algos.minibatch import LossCoefs, Minibatch
from ftg_common.algos.ppo_numpy import HeadTerms, categorical_terms, gaussian_terms, ppo_loss_grads
from ftg_common.checkpoints import PolicyVersion
from ftg_common.policy.numpy_mlp import FlatParams, backward, forward


class NumpyPPOBackend:
    """Parameters, Adam moments and the pending gradient of one update, all flat float32 vectors."""

    def __init__(self, version: PolicyVersion, *, adam_eps: float, max_grad_norm: float) -> None:
        spec = version.state.spec
        self.params = FlatParams(spec).load(version.weights)
        zeros = np.zeros(self.params.size, np.float32)
        self.exp_avg = version.optimizer.get("exp_avg", zeros).copy()
        self.exp_avg_sq = version.optimizer.get("exp_avg_sq", zeros).copy()
        self._step = version.state.optimizer_step
        self.adam_eps = adam_eps
        self.max_grad_norm = max_grad_norm
        self._discrete = spec.action_kind == "discrete"
        self._pending: np.ndarray | None = None

    def _terms(self, head: np.ndarray, actions: np.ndarray) -> HeadTerms:
        if self._discrete:
            return categorical_terms(head, actions)
        return gaussian_terms(head, self.params.view("log_std"), actions)

    def evaluate(self, mb: Minibatch[np.ndarray], coefs: LossCoefs) -> dict[str, float]:
        """Loss statistics of ``mb``; its gradient is kept for :meth:`apply`."""
        head, values, cache = forward(self.params, mb.obs)
        lg = ppo_loss_grads(head, values, self._terms(head, mb.actions), mb, coefs)
        self._pending = backward(self.params, cache, lg.g_head, lg.g_values, lg.g_log_std)
        return lg.stats

    def apply(self, learning_rate: float) -> float:
        """Clip the pending gradient to ``max_grad_norm`` and take one Adam step."""
        if self._pending is None:
            raise RuntimeError("apply() needs a gradient from evaluate() first")
        grad, self._pending = self._pending, None
        norm = clip_grad_norm(grad, self.max_grad_norm)
        self._step += 1
        adam_step(
            self.params.flat,
            grad,
            self.exp_avg,
            self.exp_avg_sq,
            self._step,
            learning_rate,
            eps=self.adam_eps,
        )
        return norm

    @property
    def optimizer_step(self) -> int:
        """Adam steps taken (numpy's Adam state has no step tensor, so the checkpoint state keeps it)."""
        return self._step

    def weights(self) -> dict[str, np.ndarray]:
        """The trained parameters (safetensors names)."""
        return self.params.tensors()

    def optimizer_tensors(self) -> dict[str, np.ndarray]:
        """Adam's moments, as stored in the checkpoint."""
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}
