"""The policy of a DQN version for the rollout and evaluation paths: numpy only, never torch.

Acting is epsilon-greedy on the online Q-network (the behaviour policy, which also reports mu(a|s));
evaluation and the off-policy estimates use its greedy policy. Every method takes raw observation
vectors, as the env emits them and the replay buffer stores them: a spec with an observation encoding
(Discrete observations and the like) one-hot encodes them before the network.
"""

from __future__ import annotations

import numpy as np

from ftg_common.algos.dqn import epsilon_greedy, epsilon_greedy_probs, greedy_actions
from ftg_common.algos.qnet import ONLINE, FlatQ, QNetSpec

__all__ = ["QPolicy"]


class QPolicy:
    """The online Q-network of a DQN version.

    Args:
        spec: the architecture.
        tensors: the ``q.*`` tensors of the version's policy file.
    """

    def __init__(self, spec: QNetSpec, tensors: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self._net = FlatQ(spec, ONLINE).load(tensors)
        self._encoding = spec.encoding  # parsed once, not per step

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q(s, .) for raw obs [B, raw_obs_dim] (the spec's ``raw_obs_dim``): [B, n_actions] float32."""
        if self._encoding is None:
            return self._net.q_values(obs)
        return self._net.q_values(self._encoding.encode(np.asarray(obs).reshape(np.shape(obs)[0], -1)))

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Epsilon-greedy actions [B] int64 and their behaviour probabilities mu(a|s) [B] float32."""
        return epsilon_greedy(self.q_values(obs), epsilon, rng)

    def act_deterministic(self, obs: np.ndarray) -> np.ndarray:
        """The greedy action argmax_a Q(s, a): [B] int64 (what evaluation episodes take)."""
        return greedy_actions(self.q_values(obs))

    def probs(self, obs: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
        """The epsilon-greedy distribution over actions, [B, n_actions] (epsilon 0: the greedy policy)."""
        return epsilon_greedy_probs(self.q_values(obs), epsilon)
