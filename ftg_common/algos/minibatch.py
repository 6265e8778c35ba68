"""The minibatch and loss-coefficient types taken by both PPO loss implementations (numpy and torch).

Generic over the array type so one definition serves ``np.ndarray`` and ``torch.Tensor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

A = TypeVar("A")


@dataclass(frozen=True)
class Minibatch(Generic[A]):
    """Rows of a training batch; all arrays share the leading dimension B.

    Attributes:
        obs: [B, obs_dim] float32.
        actions: [B] int64 (discrete) or [B, action_dim] float32 (box).
        old_log_prob: [B] log pi(a|s) under the policy that collected the data.
        advantages: [B] as the loss uses them (normalised beforehand if configured).
        old_values: [B] V(s) at collection time (the centre of value clipping).
        returns: [B] value targets.
    """

    obs: A
    actions: A
    old_log_prob: A
    advantages: A
    old_values: A
    returns: A

    @classmethod
    def take(cls, batch: dict[str, Any], idx: Any) -> Minibatch[Any]:
        """Rows ``idx`` of a stored training batch (keys as the reward-aggregator writes them)."""
        return cls(
            obs=batch["obs"][idx],
            actions=batch["actions"][idx],
            old_log_prob=batch["log_probs"][idx],
            advantages=batch["advantages"][idx],
            old_values=batch["values"][idx],
            returns=batch["returns"][idx],
        )

    def with_advantages(self, advantages: A) -> Minibatch[A]:
        """The same rows with other advantages (e.g. normalised)."""
        return Minibatch(self.obs, self.actions, self.old_log_prob, advantages, self.old_values, self.returns)


@dataclass(frozen=True)
class LossCoefs:
    """Coefficients of the PPO loss (Stable-Baselines3 names).

    Attributes:
        clip_range: epsilon of the probability-ratio clip.
        vf_coef: weight of the value loss.
        ent_coef: weight of the entropy bonus.
        clip_range_vf: if set, V is clipped to old_values +- clip_range_vf (SB3 style: the clipped
            prediction replaces the raw one).
    """

    clip_range: float
    vf_coef: float
    ent_coef: float
    clip_range_vf: float | None = None
