"""Off-policy evaluation on a run's logged trajectory shards: from time-major shards to episodes.

Pure numpy. A shard holds T steps of M envs; episodes continue across iterations, so the log of one
iteration holds *segments*: each env's steps split where an episode ended. A segment is an episode for
:mod:`ftg_common.ope` that starts in the state the log starts it in; one cut by the end of the log
(neither terminated nor truncated) is bootstrapped with the model's value of its next observation, one
cut by the time limit is not (the limit is part of the task). The estimand is therefore the discounted
value of the target policy from the logged segments' start states.

With normalisation (:func:`shard_step_log`) the target is the evaluated version as the policy-evaluator
runs it: on the env's own observations normalised with *its* frozen statistics (not the behaviour's
running ones the trajectory's ``obs`` were normalised with), and earning the env's own rewards (the
trajectory's ``rewards`` are scaled). A normalising collector stores both (``raw.obs``,
``raw.rewards``). The behaviour probabilities stay the logged ones: they are what the actions were
drawn from. The critic, trained on scaled rewards, is scaled back by the version's return std
``sqrt(ret_rms.var + epsilon)`` to serve as the DR model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ftg_common.normalize import normalize_obs
from ftg_common.ope import LoggedEpisodes, evaluate
from ftg_common.rollout import RAW_OBS, RAW_REWARDS
from ftg_common.schemas import OPEValue

if TYPE_CHECKING:
    from ftg_common.policy.numpy_policy import NumpyPolicy
    from ftg_common.policy.qpolicy import QPolicy

__all__ = [
    "REPORTED",
    "StepLog",
    "ope_values",
    "q_step_log",
    "segment_episodes",
    "shard_step_log",
    "target_inputs",
    "v_step_log",
]


@dataclass(frozen=True)
class StepLog:
    """Per-step quantities of a shard, all [T, M] (time-major, as the collector stores them).

    Attributes:
        rewards: r_t.
        terminated: the episode reached a terminal state at step t.
        truncated: it was cut by the time limit at step t (and did not terminate).
        behaviour_probs: mu(a_t|s_t) of the logged action.
        target_probs: pi(a_t|s_t) of the logged action under the evaluated policy.
        q_taken: Qhat(s_t, a_t) of the model.
        v_target: Vhat(s_t) = sum_a pi(a|s_t) Qhat(s_t, a).
        v_next: Vhat(s_{t+1}); only its last row is read (the bootstrap of segments the log cuts).
    """

    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    behaviour_probs: np.ndarray
    target_probs: np.ndarray
    q_taken: np.ndarray
    v_target: np.ndarray
    v_next: np.ndarray


def _segments(terminated: np.ndarray, truncated: np.ndarray) -> list[tuple[int, int, int]]:
    """(env, first step, last step) of every segment, env by env, in time order."""
    t_len, m = terminated.shape
    ended = terminated | truncated
    out = []
    for j in range(m):
        start = 0
        for t in range(t_len):
            if ended[t, j] or t == t_len - 1:
                out.append((j, start, t))
                start = t + 1
    return out


def segment_episodes(logs: list[StepLog]) -> LoggedEpisodes:
    """Every segment of every shard as one padded set of logged episodes.

    Args:
        logs: one per shard (T and M may differ between shards).

    Returns:
        N segments padded to the longest, H steps.
    """
    rows: list[tuple[StepLog, int, int, int]] = [
        (log, j, a, b) for log in logs for j, a, b in _segments(log.terminated, log.truncated)
    ]
    n = len(rows)
    h = max((b - a + 1 for _, _, a, b in rows), default=1)
    names = ("rewards", "behaviour_probs", "target_probs", "q_taken", "v_target")
    padded = {name: np.zeros((n, h), dtype=np.float64) for name in names}
    # Padding past an episode's end is masked out by its length; 1 keeps the probabilities valid.
    padded["behaviour_probs"][:] = 1.0
    padded["target_probs"][:] = 1.0
    lengths = np.zeros(n, dtype=np.int64)
    terminated = np.zeros(n, dtype=bool)
    v_end = np.zeros(n, dtype=np.float64)
    for i, (log, j, a, b) in enumerate(rows):
        length = b - a + 1
        lengths[i] = length
        for name in names:
            padded[name][i, :length] = getattr(log, name)[a : b + 1, j]
        terminated[i] = bool(log.terminated[b, j])
        cut_by_log = not (log.terminated[b, j] or log.truncated[b, j])
        v_end[i] = float(log.v_next[b, j]) if cut_by_log else 0.0
    return LoggedEpisodes(
        rewards=padded["rewards"],
        behaviour_probs=padded["behaviour_probs"],
        target_probs=padded["target_probs"],
        lengths=lengths,
        terminated=terminated,
        q_taken=padded["q_taken"],
        v_target=padded["v_target"],
        v_end=v_end,
    )


def q_step_log(shard: dict[str, np.ndarray], q_obs: np.ndarray, q_next_last: np.ndarray) -> StepLog:
    """The step log of a DQN shard for the greedy policy of a Q-network, which is also the DR model.

    Args:
        shard: the stored off-policy trajectory (``rewards``, ``actions``, ``terminated``, ``truncated``,
            ``behaviour_probs``, all [T, M]).
        q_obs: [T, M, A] the evaluated network's Q(s_t, .).
        q_next_last: [M, A] its Q-values of the last step's next observations.
    """
    actions = shard["actions"].astype(np.int64)
    greedy = q_obs.argmax(axis=2)
    q_taken = np.take_along_axis(q_obs, actions[..., None], axis=2)[..., 0]
    v_next = np.zeros(actions.shape, dtype=np.float64)
    v_next[-1] = q_next_last.max(axis=1)
    return StepLog(
        rewards=shard["rewards"],
        terminated=shard["terminated"].astype(bool),
        truncated=shard["truncated"].astype(bool),
        behaviour_probs=shard["behaviour_probs"],
        target_probs=(actions == greedy).astype(np.float64),
        q_taken=q_taken,
        v_target=q_obs.max(axis=2),
        v_next=v_next,
    )


def v_step_log(
    shard: dict[str, np.ndarray], target_log_probs: np.ndarray, values: np.ndarray, gamma: float
) -> StepLog:
    """The step log of a PPO shard for a stochastic policy whose critic is the (state-value) model.

    The model's action value is one step of the critic: Qhat(s_t, a_t) = r_t + gamma V(s_{t+1}), zero
    after termination or the time limit; V(s_T) after the log is the stored ``last_values``.

    Args:
        shard: the stored on-policy trajectory (``rewards``, ``log_probs`` of the behaviour policy,
            ``terminated``, ``truncated`` [T, M], ``last_values`` [M]).
        target_log_probs: [T, M] log pi(a_t|s_t) of the evaluated policy.
        values: [T, M] its critic's V(s_t).
        gamma: discount.
    """
    terminated = shard["terminated"].astype(bool)
    truncated = shard["truncated"].astype(bool)
    v_next = np.concatenate([values[1:], shard["last_values"][None, :]], axis=0).astype(np.float64)
    v_next = np.where(terminated | truncated, 0.0, v_next)
    rewards = shard["rewards"].astype(np.float64)
    return StepLog(
        rewards=rewards,
        terminated=terminated,
        truncated=truncated,
        behaviour_probs=np.exp(shard["log_probs"].astype(np.float64)),
        target_probs=np.exp(target_log_probs.astype(np.float64)),
        q_taken=rewards + gamma * v_next,
        v_target=values.astype(np.float64),
        v_next=v_next,
    )


def target_inputs(shard: dict[str, np.ndarray], policy: NumpyPolicy) -> tuple[np.ndarray, np.ndarray, float]:
    """What the evaluated PPO version sees and earns on a logged shard.

    Args:
        shard: the stored trajectory (``obs`` [T, M, D], ``rewards`` [T, M]; ``raw.obs`` and
            ``raw.rewards`` when the run normalises).
        policy: the evaluated version, with its normalisation (``norm``, ``norm_settings``).

    Returns:
        (observations [T*M, D] as the version's network takes them, rewards [T, M] float64 in the env's
        units, the factor [] turning its critic's values into those units).
    """
    t, m = shard["rewards"].shape
    norm, settings = policy.norm, policy.norm_settings
    if norm is None or settings is None or RAW_OBS not in shard:
        # No normalisation (or a trajectory from before raw values were stored): as logged.
        return shard["obs"].reshape(t * m, -1), shard["rewards"].astype(np.float64), 1.0
    obs = shard[RAW_OBS].reshape(t * m, -1)
    if settings.norm_obs:
        obs = normalize_obs(obs, norm.obs_rms, settings.clip_obs, settings.epsilon)
    scale = float(norm.ret_rms.std(settings.epsilon)) if settings.norm_reward else 1.0
    return obs, shard[RAW_REWARDS].astype(np.float64), scale


def shard_step_log(shard: dict[str, np.ndarray], policy: NumpyPolicy | QPolicy, gamma: float) -> StepLog:
    """The step log of one logged shard for the evaluated version (DQN: greedy; PPO: its distribution).

    Args:
        shard: the stored trajectory of the iteration before the evaluated version.
        policy: the evaluated version.
        gamma: discount.
    """
    from ftg_common.policy.qpolicy import QPolicy  # local: keeps the PPO evaluator's imports as they were

    t, m = shard["rewards"].shape
    if isinstance(policy, QPolicy):
        q = policy.q_values(shard["obs"].reshape(t * m, -1)).reshape(t, m, -1)
        return q_step_log(shard, q, policy.q_values(shard["next_obs"][-1]))
    obs, rewards, scale = target_inputs(shard, policy)
    target = policy.log_prob(obs, shard["actions"].reshape(t * m, *shard["actions"].shape[2:])).reshape(t, m)
    values = policy.value(obs).reshape(t, m).astype(np.float64) * scale
    # The bootstrap of segments the log cuts: the behaviour critic's value, in the same units.
    last = shard["last_values"].astype(np.float64) * scale
    return v_step_log({**shard, "rewards": rewards, "last_values": last}, target, values, gamma)


# Estimators reported (pdis is computed too, but IS, WIS, PDWIS and DR are the ones tracked).
REPORTED = ("is", "pdis", "wis", "pdwis", "dr")


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def ope_values(
    logs: list[StepLog], gamma: float, rng: np.random.Generator, n_resamples: int = 200
) -> tuple[dict[str, OPEValue], int]:
    """Every estimator with its bootstrap interval, undefined ones as None (never NaN on the wire).

    Returns:
        (estimator -> value, the number of logged segments they are computed from).

    Raises:
        ZeroBehaviourProbabilityError: a logged action has mu(a|s) = 0.
    """
    ep = segment_episodes(logs)
    out = evaluate(ep, gamma, rng, n_resamples=n_resamples)
    values = {
        name: OPEValue(
            value=_finite(e.value), ci_low=_finite(e.ci_low), ci_high=_finite(e.ci_high), ess=e.ess
        )
        for name, e in out.items()
        if name in REPORTED
    }
    return values, len(ep.lengths)
