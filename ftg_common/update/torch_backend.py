"""The torch side of the policy-updater.

The autograd PPO backend (``update_backend: torch``), the reference the numpy backend is checked
against. Importing this module imports torch; the policy-updater does so only for runs that ask for it.
"""

from __future__ import annotations

import numpy as np
import torch

from ftg_common.algos.minibatch import LossCoefs, Minibatch
from ftg_common.algos.ppo import ppo_loss
from ftg_common.checkpoints import PolicyVersion
from ftg_common.policy.torch_policy import ActorCritic


def set_threads(n: int) -> None:
    """Size torch's intra-op pool (a function instance gets one core by default)."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """Adam's per-parameter state as flat arrays named ``<param index>.<field>``."""
    out: dict[str, np.ndarray] = {}
    for idx, st in opt.state_dict()["state"].items():
        for name, value in st.items():
            out[f"{idx}.{name}"] = (
                value.detach().cpu().numpy().copy() if torch.is_tensor(value) else np.asarray(value)
            )
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, arr in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = torch.from_numpy(arr.copy())
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


class TorchPPOBackend:
    """The actor-critic and Adam in torch (fused CPU kernel: ~15 % faster here, deterministic on CPU)."""

    def __init__(
        self, version: PolicyVersion, *, learning_rate: float, adam_eps: float, max_grad_norm: float
    ) -> None:
        self.model = ActorCritic(version.state.spec)
        self.model.load_flat_tensors(version.weights)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=learning_rate, eps=adam_eps, fused=True)
        if version.optimizer:
            load_optimizer_tensors(self.opt, version.optimizer)
        self.params = list(self.model.parameters())
        self.max_grad_norm = max_grad_norm
        self._loss: torch.Tensor | None = None

    def evaluate(self, mb: Minibatch[np.ndarray], coefs: LossCoefs) -> dict[str, float]:
        """Loss statistics of ``mb``; the loss graph is kept for :meth:`apply`."""
        t = Minibatch(
            *(
                torch.from_numpy(np.ascontiguousarray(a))
                for a in (mb.obs, mb.actions, mb.old_log_prob, mb.advantages, mb.old_values, mb.returns)
            )
        )
        logp, entropy, values = self.model.evaluate_actions(t.obs, t.actions)
        self._loss, stats = ppo_loss(logp, entropy, values, t, coefs)
        return {k: float(v) for k, v in stats.items()}

    def apply(self, learning_rate: float) -> float:
        """Backpropagate the pending loss, clip to ``max_grad_norm`` and take one Adam step."""
        if self._loss is None:
            raise RuntimeError("apply() needs a loss from evaluate() first")
        for group in self.opt.param_groups:
            group["lr"] = learning_rate
        self.opt.zero_grad(set_to_none=True)
        self._loss.backward()  # type: ignore[no-untyped-call]
        self._loss = None
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.opt.step()
        return float(norm)

    @property
    def optimizer_step(self) -> int:
        """0: torch's Adam keeps its step count in the optimizer tensors."""
        return 0

    def weights(self) -> dict[str, np.ndarray]:
        """The trained parameters (safetensors names)."""
        return self.model.flat_tensors()

    def optimizer_tensors(self) -> dict[str, np.ndarray]:
        """Adam's state (the step count included), as stored in the checkpoint."""
        return optimizer_tensors(self.opt)
