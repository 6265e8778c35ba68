"""On-policy rollout of one shard: no I/O, numpy only (the rollout path never imports torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftg_common.algos.gsde import resample_due
from ftg_common.envs.vector import ShardEnvs
from ftg_common.normalize import (
    NormalizeSettings,
    NormStats,
    ShardIncrement,
    normalize_obs,
    observe_step,
    shard_view,
    stats_to_tensors,
)
from ftg_common.policy.numpy_policy import NumpyPolicy
from ftg_common.policy.spec import NORM_PREFIX

RAW_OBS = "raw.obs"
"""Trajectory tensor of a normalising run: the observations as the env emitted them [T, M, obs_dim]."""
RAW_REWARDS = "raw.rewards"
"""Trajectory tensor of a normalising run: the rewards as the env gave them [T, M]."""


@dataclass
class Rollout:
    """T steps of M envs, time-major, as sampled by the behaviour policy.

    Attributes:
        obs: [T, M, obs_dim] float32 observation each action was taken in (normalised when the run
            normalises; the raw vector, e.g. a Discrete index, otherwise).
        actions: [T, M] int64 (discrete) or [T, M, action_dim] float32 (box).
        log_probs: [T, M] float32 log pi(a|s) at collection time.
        values: [T, M] float32 V(obs).
        rewards: [T, M] float32 (normalised when the run normalises rewards).
        terminated: [T, M] bool.
        truncated: [T, M] bool (time limit, and not also terminated).
        trunc_values: [T, M] float32 V(final obs) where truncated, zero elsewhere.
        last_values: [M] float32 V(obs after the last step).
        episode_returns: returns of the episodes that finished during the rollout.
        episode_lengths: lengths of those episodes, in the same order.
        norm_increment: the shard's normalisation increment and carry (None without normalisation).
        raw_obs: [T, M, obs_dim] float32 the env's own observations, with normalisation only (else None).
        raw_rewards: [T, M] float32 the env's own rewards, with normalisation only (else None).
    """

    obs: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray
    values: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    trunc_values: np.ndarray
    last_values: np.ndarray
    episode_returns: list[float]
    episode_lengths: list[int]
    norm_increment: ShardIncrement | None = None
    raw_obs: np.ndarray | None = None
    raw_rewards: np.ndarray | None = None

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays as a trajectory object stores them (bool flags as uint8).

        With normalisation on, also the shard's statistics increment as ``norm.obs_rms.*`` and
        ``norm.ret_rms.*`` (float64), which the reward-aggregator merges into the next version's.
        """
        extra = {} if self.norm_increment is None else stats_to_tensors(self.norm_increment, NORM_PREFIX)
        if self.raw_obs is not None and self.raw_rewards is not None:
            # What off-policy evaluation weighs by: the evaluated version normalises with its own statistics.
            extra.update({RAW_OBS: self.raw_obs, RAW_REWARDS: self.raw_rewards})
        return {
            **extra,
            "obs": self.obs,
            "actions": self.actions,
            "log_probs": self.log_probs,
            "values": self.values,
            "rewards": self.rewards,
            "terminated": self.terminated.astype(np.uint8),
            "truncated": self.truncated.astype(np.uint8),
            "trunc_values": self.trunc_values,
            "last_values": self.last_values,
        }


@dataclass(frozen=True)
class RolloutNorm:
    """What a normalising rollout starts from.

    Attributes:
        base: the acting policy version's statistics (fixed for the rollout).
        settings: the normalisation options.
        increment: the shard's increment so far: empty statistics, the carried per-env discounted
            returns and the normalised observation the first step acts on.
    """

    base: NormStats
    settings: NormalizeSettings
    increment: ShardIncrement


@dataclass(frozen=True)
class SdeNoise:
    """Where a gSDE rollout draws its exploration matrices, and how often.

    Attributes:
        rng: the shard's own stream for the rollout (seeded from run seed, iteration and shard), apart
            from the action stream so that switching gSDE on changes nothing else.
        sample_freq: steps between draws (-1: once, at the rollout's start), SB3's ``sde_sample_freq``.
    """

    rng: np.random.Generator
    sample_freq: int


def collect_rollout(
    envs: ShardEnvs,
    policy: NumpyPolicy,
    n_steps: int,
    rng: np.random.Generator,
    norm: RolloutNorm | None = None,
    sde: SdeNoise | None = None,
) -> Rollout:
    """Step ``envs`` (already started) ``n_steps`` times with actions sampled from ``policy``.

    ``policy`` is a NumpyPolicy: ``act(obs, rng) -> (actions, values, log_probs)`` and ``value(obs)``.

    With ``norm`` (SB3's ``VecNormalize`` in training mode): the policy acts on normalised
    observations, each step's raw observations and rewards update the shard's statistics, and the
    trajectory stores the normalised observations and rewards; a truncated episode's final observation
    is normalised with the statistics of its step before it is bootstrapped. Episode returns stay raw.

    With ``sde`` (a gSDE policy) the actions are mu(s) + phi(s) @ E with one matrix E per env, drawn
    at the rollout's start and every ``sde.sample_freq`` steps; ``rng`` is then unused.
    """
    m, d = envs.n_envs, envs.obs_dim
    obs_buf = np.empty((n_steps, m, d), dtype=np.float32)
    act_buf: np.ndarray | None = None
    logp_buf = np.empty((n_steps, m), dtype=np.float32)
    val_buf = np.empty((n_steps, m), dtype=np.float32)
    rew_buf = np.empty((n_steps, m), dtype=np.float32)
    term_buf = np.zeros((n_steps, m), dtype=bool)
    trunc_buf = np.zeros((n_steps, m), dtype=bool)
    tval_buf = np.zeros((n_steps, m), dtype=np.float32)
    returns: list[float] = []
    lengths: list[int] = []
    inc = None if norm is None else norm.increment
    obs = envs.obs if inc is None else inc.last_obs
    raw_obs = None if norm is None else np.empty((n_steps, m, d), dtype=np.float32)
    raw_rew = None if norm is None else np.empty((n_steps, m), dtype=np.float32)
    for t in range(n_steps):
        obs_buf[t] = obs
        if raw_obs is not None:
            raw_obs[t] = envs.obs  # the env's own observation, before envs.step overwrites it in place
        if sde is not None:
            if resample_due(t, sde.sample_freq):
                matrices = policy.sample_sde_matrices(m, sde.rng)
            actions, values, log_probs = policy.act_sde(obs, matrices)
        else:
            actions, values, log_probs = policy.act(obs, rng)
        if act_buf is None:
            act_buf = np.empty((n_steps, *actions.shape), dtype=actions.dtype)
        act_buf[t] = actions
        val_buf[t] = values
        logp_buf[t] = log_probs
        obs, rewards, terminated, truncated, final_obs, finished = envs.step(actions)
        if norm is not None and inc is not None and raw_rew is not None:
            raw_rew[t] = rewards
            inc, obs, rewards = observe_step(
                norm.base, inc, obs, rewards, terminated | truncated, norm.settings
            )
            if truncated.any() and norm.settings.norm_obs:
                view = shard_view(norm.base, inc).obs_rms
                final_obs = normalize_obs(final_obs, view, norm.settings.clip_obs, norm.settings.epsilon)
        rew_buf[t] = rewards
        term_buf[t] = terminated
        trunc_buf[t] = truncated
        if truncated.any():
            tval_buf[t, truncated] = policy.value(final_obs[truncated])
        for ret, length in finished:
            returns.append(ret)
            lengths.append(length)
    assert act_buf is not None
    return Rollout(
        obs=obs_buf,
        actions=act_buf,
        log_probs=logp_buf,
        values=val_buf,
        rewards=rew_buf,
        terminated=term_buf,
        truncated=trunc_buf,
        trunc_values=tval_buf,
        last_values=policy.value(obs).astype(np.float32),
        episode_returns=returns,
        episode_lengths=lengths,
        norm_increment=inc,
        raw_obs=raw_obs,
        raw_rewards=raw_rew,
    )
