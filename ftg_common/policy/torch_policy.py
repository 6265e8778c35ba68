"""Torch actor-critic for the policy-updater: same architecture and tensor names as NumpyPolicy.

Parameter names in `state_dict()` are exactly the flat safetensors keys (`pi.0.weight`, ...,
`vf.out.bias`, `log_std`), so checkpoints need no renaming in either direction.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from ftg_common.algos.gsde import SDE_EPSILON
from ftg_common.policy.spec import PolicySpec, check_tensors, tensor_shapes

__all__ = ["ActorCritic"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _mlp(spec: PolicySpec, out_dim: int) -> nn.ModuleDict:
    layers: dict[str, nn.Module] = {}
    width = spec.obs_dim
    for i, h in enumerate(spec.net_arch):
        layers[str(i)] = nn.Linear(width, h)
        width = h
    layers["out"] = nn.Linear(width, out_dim)
    return nn.ModuleDict(layers)


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs (SB3 MlpPolicy layout) built from a PolicySpec."""

    log_std: nn.Parameter | None

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        self.spec = spec
        self.pi = _mlp(spec, spec.out_dim)
        self.vf = _mlp(spec, 1)
        self._discrete = spec.action_kind == "discrete"
        if self._discrete:
            self.log_std = None
        else:
            shape = tensor_shapes(spec)["log_std"]  # [A], or [H, A] / [H, 1] under gSDE
            self.log_std = nn.Parameter(torch.full(shape, float(spec.log_std_init)))
        self._act = torch.tanh if spec.activation == "tanh" else torch.relu
        # Tuples are not registered as submodules, so the hot path can skip ModuleDict lookups
        # without duplicating state_dict keys.
        n = len(spec.net_arch)
        self._pi_path = self._path(self.pi, n)
        self._vf_path = self._path(self.vf, n)

    @staticmethod
    def _path(net: nn.ModuleDict, depth: int) -> tuple[tuple[nn.Linear, ...], nn.Linear]:
        layers = [net[str(i)] for i in range(depth)] + [net["out"]]
        linear = tuple(layer for layer in layers if isinstance(layer, nn.Linear))
        return linear[:-1], linear[-1]

    def init_weights(self, seed: int, orthogonal: bool = True) -> None:
        """Load the seeded initial weights of :func:`ftg_common.policy.init.initial_weights`."""
        from ftg_common.policy.init import initial_weights

        self.load_flat_tensors(initial_weights(self.spec, seed, ortho=orthogonal))

    # --- forward passes (hot path: no validation, no torch.distributions) -----------------------
    def forward_actor(self, obs: Tensor) -> Tensor:
        """Logits [B, n_actions] (discrete) or Gaussian mean [B, action_dim] (box) for obs [B, obs_dim]."""
        hidden, head = self._pi_path
        x = obs
        for layer in hidden:
            x = self._act(layer(x))
        out: Tensor = head(x)
        return out

    def forward_value(self, obs: Tensor) -> Tensor:
        """V(obs): [B] for obs [B, obs_dim]."""
        hidden, head = self._vf_path
        x = obs
        for layer in hidden:
            x = self._act(layer(x))
        value: Tensor = head(x).squeeze(-1)
        return value

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log-prob, entropy and value for a minibatch.

        Args:
            obs: [B, obs_dim] float32.
            actions: [B] integer (discrete) or [B, action_dim] float32 (box).

        Returns:
            (log_prob [B], entropy [B], values [B]).
        """
        if self.spec.use_sde:
            return self._evaluate_sde(obs, actions)
        head = self.forward_actor(obs)
        values = self.forward_value(obs)
        if self._discrete:
            logp_all = torch.log_softmax(head, dim=-1)
            log_prob = logp_all.gather(1, actions.long().view(-1, 1)).squeeze(1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            return log_prob, entropy, values
        log_std = self.log_std
        assert log_std is not None
        z = (actions - head) * torch.exp(-log_std)
        log_norm = log_std.sum() + head.shape[1] * _HALF_LOG_2PI
        log_prob = -0.5 * z.pow(2).sum(-1) - log_norm
        # State-independent std: every row has the same entropy, so broadcast instead of recomputing.
        entropy = (log_norm + 0.5 * head.shape[1]).expand(head.shape[0])
        return log_prob, entropy, values

    def _evaluate_sde(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """gSDE: a Gaussian of variance phi(s)^2 @ std^2 + eps per action dim (see ``algos.gsde``)."""
        hidden, head_layer = self._pi_path
        x = obs
        for layer in hidden:
            x = self._act(layer(x))
        mean = head_layer(x)
        log_std = self.log_std
        assert log_std is not None
        if self.spec.sde_use_expln:
            below = torch.exp(torch.clamp(log_std, max=0.0))
            above = torch.log1p(torch.clamp(log_std, min=0.0) + SDE_EPSILON) + 1.0
            std = torch.where(log_std <= 0, below, above)
        else:
            std = torch.exp(log_std)
        std = std.expand(log_std.shape[0], mean.shape[1])
        # SB3's PPO (learn_features=False) keeps the variance from training the features.
        latent = x.detach()
        sigma = torch.sqrt(latent.pow(2) @ std.pow(2) + SDE_EPSILON)
        z = (actions - mean) / sigma
        log_sigma = torch.log(sigma)
        log_prob = (-0.5 * z.pow(2) - log_sigma).sum(-1) - mean.shape[1] * _HALF_LOG_2PI
        entropy = log_sigma.sum(-1) + mean.shape[1] * (0.5 + _HALF_LOG_2PI)
        return log_prob, entropy, self.forward_value(obs)

    # --- flat tensor I/O ------------------------------------------------------------------------
    def flat_tensors(self) -> dict[str, np.ndarray]:
        """Name -> float32 numpy copy of every parameter (safetensors keys; weights [out, in])."""
        return {
            name: t.detach().to(device="cpu", dtype=torch.float32).numpy().copy()
            for name, t in self.state_dict().items()
        }

    def load_flat_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        """Copy a flat tensor dict (exact names and shapes of the spec) into the parameters."""
        check_tensors(self.spec, tensors)
        state = {name: torch.as_tensor(np.asarray(t, dtype=np.float32)) for name, t in tensors.items()}
        self.load_state_dict(state, strict=True)
