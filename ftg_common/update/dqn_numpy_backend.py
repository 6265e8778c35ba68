"""The default DQN backend: hand-written gradients of the Q-network in numpy (no torch import).

Adam and gradient clipping follow torch's update rules (:mod:`ftg_common.algos.adam`); the tests check
every step against the torch backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ftg_common.algos.dqn import huber_loss, polyak_update, td_targets
from ftg_common.algos.qnet import ONLINE, TARGET, FlatQ
from ftg_common.replay.transitions import Transitions
from ftg_common.update.common import resume_flat_adam

if TYPE_CHECKING:
    from ftg_common.update.dqn import DQNVersion


class NumpyDQNBackend:
    """Online and target Q-networks and Adam's moments, as flat float32 vectors.

    Args:
        version: the version to train from: its spec, ``q.*`` (online) and ``q_target.*`` (target)
            weights, Adam's ``exp_avg`` and ``exp_avg_sq`` (empty for a fresh optimizer) and step count.
        adam_eps: Adam's epsilon.
        max_grad_norm: gradient-norm clip.
    """

    def __init__(self, version: DQNVersion, *, adam_eps: float, max_grad_norm: float) -> None:
        spec, weights = version.state.spec, version.weights
        self.online = FlatQ(spec, ONLINE).load(
            {k: v for k, v in weights.items() if k.startswith(ONLINE + ".")}
        )
        self.target = FlatQ(spec, TARGET).load(
            {k: v for k, v in weights.items() if k.startswith(TARGET + ".")}
        )
        self.adam = resume_flat_adam(
            version, self.online.size, adam_eps=adam_eps, max_grad_norm=max_grad_norm
        )

    def sync_target(self, tau: float, times: int) -> None:
        """Polyak-update the target ``times`` times towards the online network (one flat vector)."""
        moved = polyak_update({"w": self.target.flat}, {"w": self.online.flat}, tau, times)["w"]
        self.target.flat[...] = moved

    def train_step(self, batch: Transitions, gamma: float, learning_rate: float) -> dict[str, float]:
        """Huber TD loss of ``batch``, its gradient by hand, clipped, one Adam step."""
        next_q, _ = self.target.forward(batch.next_obs)
        targets = td_targets(batch.rewards, next_q, batch.terminated, gamma)
        q_all, acts = self.online.forward(batch.obs)
        rows = np.arange(len(batch))
        q_taken = q_all[rows, batch.actions]
        loss, g_taken = huber_loss(q_taken, targets)
        g_q = np.zeros_like(q_all)
        g_q[rows, batch.actions] = g_taken
        grad = self.online.backward(batch.obs, acts, g_q)
        norm = self.adam.apply(self.online.flat, grad, learning_rate)
        return {
            "loss": loss,
            "q_mean": float(q_taken.mean()),
            "target_mean": float(targets.mean()),
            "grad_norm": norm,
        }

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Online Q(s, .) for obs [B, obs_dim]: [B, n_actions]."""
        return self.online.q_values(obs)

    def weights(self) -> dict[str, np.ndarray]:
        """Online and target parameters (safetensors names)."""
        return {**self.online.tensors(), **self.target.tensors()}

    def optimizer_tensors(self) -> dict[str, np.ndarray]:
        """Adam's moments."""
        return {"exp_avg": self.adam.exp_avg.copy(), "exp_avg_sq": self.adam.exp_avg_sq.copy()}

    @property
    def optimizer_step(self) -> int:
        """Adam steps taken (kept in the checkpoint state: numpy's Adam has no step tensor)."""
        return self.adam.step
