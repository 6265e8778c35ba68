"""The torch DQN backend (``update_backend: torch``): autograd reference for the numpy backend.

Importing this module imports torch; the policy-updater does so only for runs that ask for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from ftg_common.algos.qnet import ONLINE, TARGET, QNetSpec
from ftg_common.replay.transitions import Transitions
from ftg_common.update.torch_backend import load_optimizer_tensors, optimizer_tensors

if TYPE_CHECKING:
    from ftg_common.update.dqn import DQNVersion


class QNetwork(nn.Module):
    """obs -> net_arch -> n_actions; ``state_dict`` names are ``<i>.weight`` ... ``out.bias``."""

    def __init__(self, spec: QNetSpec) -> None:
        super().__init__()
        layers: dict[str, nn.Module] = {}
        width = spec.obs_dim
        for i, h in enumerate(spec.net_arch):
            layers[str(i)] = nn.Linear(width, h)
            width = h
        layers["out"] = nn.Linear(width, spec.n_actions)
        self.net = nn.ModuleDict(layers)
        self._hidden = [self.net[str(i)] for i in range(len(spec.net_arch))]
        self._act = torch.relu if spec.activation == "relu" else torch.tanh

    def forward(self, obs: Tensor) -> Tensor:
        """Q-values [B, n_actions] of obs [B, obs_dim]."""
        x = obs
        for layer in self._hidden:
            x = self._act(layer(x))
        q: Tensor = self.net["out"](x)
        return q

    def load_named(self, tensors: dict[str, np.ndarray], prefix: str) -> None:
        """Load ``<prefix>.<i>.weight`` ... tensors (the checkpoint names)."""
        state = {
            name[len(prefix) + 1 :]: torch.from_numpy(np.array(t, dtype=np.float32))
            for name, t in tensors.items()
            if name.startswith(prefix + ".")
        }
        self.net.load_state_dict(state, strict=True)

    def named(self, prefix: str) -> dict[str, np.ndarray]:
        """Parameters as ``<prefix>.<i>.weight`` ... float32 copies."""
        return {f"{prefix}.{k}": v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()}


class TorchDQNBackend:
    """Online and target Q-networks and Adam in torch.

    Args: as :class:`~ftg_common.update.dqn_numpy_backend.NumpyDQNBackend`, and the learning rate
    (torch's Adam keeps its own step count in the optimizer tensors).
    """

    def __init__(
        self, version: DQNVersion, *, learning_rate: float, adam_eps: float, max_grad_norm: float
    ) -> None:
        spec, weights, optimizer = version.state.spec, version.weights, version.optimizer
        self.online, self.target = QNetwork(spec), QNetwork(spec)
        self.online.load_named(weights, ONLINE)
        self.target.load_named(weights, TARGET)
        self.target.requires_grad_(False)
        self.params = list(self.online.parameters())
        self.opt = torch.optim.Adam(self.params, lr=learning_rate, eps=adam_eps)
        if optimizer:
            load_optimizer_tensors(self.opt, optimizer)
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def sync_target(self, tau: float, times: int) -> None:
        """Polyak-update the target ``times`` times towards the online network."""
        for _ in range(times):
            for t, o in zip(self.target.parameters(), self.online.parameters(), strict=True):
                t.mul_(1.0 - tau).add_(o, alpha=tau)

    def train_step(self, batch: Transitions, gamma: float, learning_rate: float) -> dict[str, float]:
        """Huber TD loss of ``batch`` by autograd, clipped, one Adam step."""
        obs, next_obs = torch.from_numpy(batch.obs), torch.from_numpy(batch.next_obs)
        actions = torch.from_numpy(batch.actions).long()
        rewards = torch.from_numpy(batch.rewards)
        alive = 1.0 - torch.from_numpy(batch.terminated).float()
        with torch.no_grad():
            targets = rewards + gamma * alive * self.target(next_obs).max(dim=1).values
        q_taken = self.online(obs).gather(1, actions[:, None]).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q_taken, targets)
        for group in self.opt.param_groups:
            group["lr"] = learning_rate
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.opt.step()
        return {
            "loss": float(loss.detach()),
            "q_mean": float(q_taken.detach().mean()),
            "target_mean": float(targets.mean()),
            "grad_norm": float(norm),
        }

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Online Q(s, .) for obs [B, obs_dim]: [B, n_actions]."""
        q: np.ndarray = self.online(torch.from_numpy(np.asarray(obs, np.float32))).numpy()
        return q

    def weights(self) -> dict[str, np.ndarray]:
        """Online and target parameters (safetensors names)."""
        return {**self.online.named(ONLINE), **self.target.named(TARGET)}

    def optimizer_tensors(self) -> dict[str, np.ndarray]:
        """Adam's state (its step count included)."""
        return optimizer_tensors(self.opt)

    @property
    def optimizer_step(self) -> int:
        """0: torch's Adam keeps its step count in the optimizer tensors."""
        return 0
