"""Observation and reward normalisation as Stable-Baselines3's ``VecNormalize``, in a serverless shape.

numpy only (the rollout path imports it). Everything here is a pure function of arrays, or a frozen
dataclass holding them.

What SB3's ``VecNormalize`` does (training mode), and what this module reproduces:

* ``obs_rms`` and ``ret_rms`` start at mean 0, variance 1, count 1e-4 (a tiny prior that keeps the very
  first normalisation finite), float64.
* ``reset()`` zeroes the per-env discounted return and adds the first observations to ``obs_rms``
  (once, when training starts).
* each ``step``: the observations it returns (for an env whose episode ended: the first observation of
  the next one; the terminal observation is not added) update ``obs_rms`` and are then normalised with
  the updated statistics: ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)``, cast to
  float32. Then ``ret = ret * gamma + reward`` per env, ``ret_rms`` is updated with ``ret`` (even with
  ``norm_reward`` off), and the reward is divided by ``sqrt(ret_rms.var + epsilon)`` (never centred)
  and clipped to ``[-clip_reward, clip_reward]``. Finally ``ret`` is zeroed where the step was
  ``done``: SB3's ``done`` is ``terminated or truncated``, so a time-limit end resets it too.
* the terminal observation of a finished episode is normalised with the statistics of that step.
* evaluation freezes the statistics (``training=False``) and does not normalise rewards.

One deliberate difference: SB3 takes a batch's mean and variance in the observations' own dtype
(float32 for most envs) before merging in float64; here every moment is float64, so the statistics
agree with SB3's to float32 rounding for float32 observations and to 1e-12 for float64 ones.

Serverless shape: the statistics a rollout starts from (``base``) belong to the policy version. A shard
records what it saw as a :class:`ShardIncrement` that starts empty; while it steps it normalises with
``merge(base, increment)``, which is exactly what a single SB3 ``VecNormalize`` over the shard's envs
would hold. The aggregator merges the base with every shard's increment (:func:`merge_all`, exact and
order-independent), and the result is the next policy version's statistics. With one shard this is
SB3's sequence of statistics; with K shards each shard sees, within a rollout, the statistics of its
own envs on top of the shared base (the others' arrive at the next iteration).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np

__all__ = [
    "NormStats",
    "NormalizeSettings",
    "RunningStats",
    "ShardIncrement",
    "begin_shard",
    "merge",
    "merge_all",
    "merge_increments",
    "normalize_obs",
    "normalize_reward",
    "observe_reset",
    "observe_step",
    "running_stats_from_tensors",
    "running_stats_to_tensors",
    "shard_carry_from_tensors",
    "shard_carry_to_tensors",
    "shard_view",
    "stats_from_tensors",
    "stats_to_tensors",
    "update_returns",
]

RMS_PRIOR_COUNT = 1e-4
"""Count of SB3's initial statistics (mean 0, variance 1): ``RunningMeanStd(epsilon=1e-4)``."""

OBS_RMS = "obs_rms"
RET_RMS = "ret_rms"
CARRY_RETURNS = "norm.returns"
CARRY_OBS = "norm.obs"


@dataclass(frozen=True)
class NormalizeSettings:
    """``VecNormalize``'s options, SB3 names and defaults.

    Attributes:
        norm_obs: normalise observations.
        norm_reward: scale rewards by the running std of the discounted return.
        clip_obs: normalised observations are clipped to [-clip_obs, clip_obs].
        clip_reward: scaled rewards are clipped to [-clip_reward, clip_reward].
        gamma: discount of the return whose variance scales rewards (the RL Zoo sets the algorithm's).
        epsilon: added to the variance before the square root.
    """

    norm_obs: bool = True
    norm_reward: bool = True
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    gamma: float = 0.99
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        if not (self.clip_obs > 0 and self.clip_reward > 0):
            raise ValueError(
                f"clip_obs and clip_reward must be positive, got {self.clip_obs}, {self.clip_reward}"
            )
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not self.epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {self.epsilon}")

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), e.g. for safetensors metadata."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> NormalizeSettings:
        """Inverse of :meth:`to_json`; unknown keys raise TypeError."""
        return cls(**json.loads(text))


# --------------------------------------------------------------------------------------------------
# Running mean and variance
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RunningStats:
    """Mean, population variance and (float) count of a stream of arrays of shape S, float64.

    ``count`` is a float because SB3's prior has count 1e-4. An empty record (count 0) is the identity
    of :func:`merge`.

    Attributes:
        mean: [*S] float64.
        var: [*S] float64, population variance (ddof=0).
        count: number of rows seen (plus the prior's 1e-4, if started from :meth:`prior`).
    """

    mean: np.ndarray
    var: np.ndarray
    count: float

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        var = np.asarray(self.var, dtype=np.float64)
        if mean.shape != var.shape:
            raise ValueError(f"mean {mean.shape} and var {var.shape} must have the same shape")
        if not (np.isfinite(self.count) and self.count >= 0):
            raise ValueError(f"count must be finite and >= 0, got {self.count}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "var", var)
        object.__setattr__(self, "count", float(self.count))

    @property
    def shape(self) -> tuple[int, ...]:
        """S, the shape of one row."""
        return tuple(self.mean.shape)

    @classmethod
    def empty(cls, shape: tuple[int, ...] = ()) -> RunningStats:
        """No rows seen: mean 0, var 0, count 0 (the identity of :func:`merge`)."""
        return cls(np.zeros(shape), np.zeros(shape), 0.0)

    @classmethod
    def prior(cls, shape: tuple[int, ...] = (), count: float = RMS_PRIOR_COUNT) -> RunningStats:
        """SB3's starting point: mean 0, var 1, count 1e-4."""
        return cls(np.zeros(shape), np.ones(shape), count)

    @classmethod
    def from_batch(cls, batch: np.ndarray) -> RunningStats:
        """Statistics of the rows of ``batch`` [N, *S] in one pass (N = 0 gives :meth:`empty`)."""
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim == 0:
            raise ValueError("a batch needs a leading row dimension")
        if x.shape[0] == 0:
            return cls.empty(x.shape[1:])
        return cls(x.mean(axis=0), x.var(axis=0), float(x.shape[0]))

    def update(self, batch: np.ndarray) -> RunningStats:
        """These statistics with the rows of ``batch`` [N, *S] added (SB3's ``RunningMeanStd.update``)."""
        return merge(self, RunningStats.from_batch(batch))

    def std(self, epsilon: float = 0.0) -> np.ndarray:
        """sqrt(var + epsilon): [*S]."""
        out: np.ndarray = np.sqrt(self.var + epsilon)
        return out


def merge(a: RunningStats, b: RunningStats) -> RunningStats:
    """Statistics of the union of the rows behind ``a`` and ``b`` (Chan, Golub & LeVeque, 1979).

    With n = n_a + n_b and delta = mean_b - mean_a::

        mean = mean_a + delta * n_b / n
        var  = (var_a * n_a + var_b * n_b + delta^2 * n_a * n_b / n) / n

    Exact in real arithmetic, so merging per-shard statistics equals one pass over all the rows; the
    operations are SB3's ``update_from_moments`` in the same order, so a fold of merges reproduces its
    float64 results. Empty inputs are the identity.
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot merge statistics of shapes {a.shape} and {b.shape}")
    if b.count == 0.0:
        return a
    if a.count == 0.0:
        return b
    delta = b.mean - a.mean
    total = a.count + b.count
    mean = a.mean + delta * b.count / total
    m2 = a.var * a.count + b.var * b.count + np.square(delta) * a.count * b.count / total
    return RunningStats(mean, m2 / total, total)


def _canonical_key(s: RunningStats) -> tuple[float, bytes, bytes]:
    return (s.count, s.mean.tobytes(), s.var.tobytes())


def merge_all(parts: Iterable[RunningStats], shape: tuple[int, ...] | None = None) -> RunningStats:
    """Merge any number of statistics; the result is bit-identical whatever their order.

    Floating-point merging is commutative but not associative, so the parts are first put in a
    canonical order (by count, then the bytes of mean and var) and then folded left. Retried or
    reordered fan-ins therefore give the same bytes, which keeps resume exact.

    Args:
        parts: statistics of equal shape.
        shape: row shape to return for an empty ``parts`` (default: scalar).
    """
    ordered = sorted(parts, key=_canonical_key)
    if not ordered:
        return RunningStats.empty(shape or ())
    out = ordered[0]
    for part in ordered[1:]:
        out = merge(out, part)
    return out


# --------------------------------------------------------------------------------------------------
# The statistics of a policy version, and a shard's increment
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NormStats:
    """What a policy version stores: observation statistics and discounted-return statistics.

    Attributes:
        obs_rms: statistics of raw observations, rows of shape [obs_dim].
        ret_rms: statistics of per-env discounted returns, scalar rows.
    """

    obs_rms: RunningStats
    ret_rms: RunningStats

    @classmethod
    def initial(cls, obs_shape: tuple[int, ...]) -> NormStats:
        """SB3's starting statistics (the prior) for observations of shape ``obs_shape``."""
        return cls(RunningStats.prior(obs_shape), RunningStats.prior(()))


@dataclass(frozen=True, eq=False)
class ShardIncrement:
    """What a rollout shard adds to the statistics, and what it carries to its next invocation.

    Attributes:
        obs_rms: statistics of the raw observations the shard added (starts empty).
        ret_rms: statistics of the discounted returns it added (starts empty).
        returns: [M] float64 per-env discounted return ``ret`` after the shard's last step; carried.
        last_obs: [M, *S] float32 normalised observation the next step acts on (SB3's ``_last_obs``,
            normalised with the statistics of the step that produced it); carried.
    """

    obs_rms: RunningStats
    ret_rms: RunningStats
    returns: np.ndarray
    last_obs: np.ndarray


def begin_shard(
    obs_shape: tuple[int, ...], n_envs: int, carry: tuple[np.ndarray, np.ndarray] | None = None
) -> ShardIncrement:
    """An empty increment for a shard of ``n_envs`` envs.

    Args:
        obs_shape: S, the shape of one raw observation.
        n_envs: M.
        carry: (returns [M], last normalised obs [M, *S]) the shard's previous invocation left (see
            :func:`shard_carry_from_tensors`); None when the run starts (then :func:`observe_reset`
            fills both).
    """
    if carry is None:
        returns, last_obs = np.zeros(n_envs), np.zeros((n_envs, *obs_shape), dtype=np.float32)
    else:
        returns = np.asarray(carry[0], dtype=np.float64)
        last_obs = np.asarray(carry[1], dtype=np.float32)
    if returns.shape != (n_envs,) or last_obs.shape != (n_envs, *obs_shape):
        raise ValueError(
            f"carried returns {returns.shape} and obs {last_obs.shape} do not fit {n_envs} envs "
            f"with observations of shape {obs_shape}"
        )
    return ShardIncrement(
        RunningStats.empty(obs_shape), RunningStats.empty(()), returns.copy(), last_obs.copy()
    )


def shard_view(base: NormStats, inc: ShardIncrement) -> NormStats:
    """The statistics a shard normalises with: the version's, plus what the shard saw so far."""
    return NormStats(merge(base.obs_rms, inc.obs_rms), merge(base.ret_rms, inc.ret_rms))


def merge_increments(base: NormStats, increments: Iterable[ShardIncrement | NormStats]) -> NormStats:
    """The next policy version's statistics: ``base`` merged with every shard's increment.

    Independent of the shards' order (see :func:`merge_all`); equal, to float64 rounding, to adding
    every row all shards saw to ``base`` in one pass.
    """
    incs = list(increments)
    obs = merge_all([i.obs_rms for i in incs], base.obs_rms.shape)
    ret = merge_all([i.ret_rms for i in incs], ())
    return NormStats(merge(base.obs_rms, obs), merge(base.ret_rms, ret))


# --------------------------------------------------------------------------------------------------
# Normalising
# --------------------------------------------------------------------------------------------------


def normalize_obs(obs: np.ndarray, stats: RunningStats, clip_obs: float, epsilon: float) -> np.ndarray:
    """clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs) as float32.

    Computed in float64 like SB3 (float32 observations are promoted by the float64 statistics).

    Args:
        obs: [..., *S] raw observations; S is ``stats.shape``.
        stats: observation statistics.
        clip_obs: bound of the result's absolute value.
        epsilon: added to the variance.

    Returns:
        float32 array of ``obs``'s shape.
    """
    x = (np.asarray(obs, dtype=np.float64) - stats.mean) / np.sqrt(stats.var + epsilon)
    out: np.ndarray = np.clip(x, -clip_obs, clip_obs).astype(np.float32)
    return out


def normalize_reward(
    r: np.ndarray, return_stats: RunningStats, clip_reward: float, epsilon: float
) -> np.ndarray:
    """clip(r / sqrt(var_ret + epsilon), -clip_reward, clip_reward) as float32; never centred (as SB3).

    Args:
        r: [...] raw rewards.
        return_stats: scalar statistics of the discounted return.
        clip_reward: bound of the result's absolute value.
        epsilon: added to the variance.
    """
    x = np.asarray(r, dtype=np.float64) / np.sqrt(return_stats.var + epsilon)
    return np.clip(x, -clip_reward, clip_reward).astype(np.float32)


def update_returns(returns: np.ndarray, rewards: np.ndarray, gamma: float) -> np.ndarray:
    """The discounted returns after one step, ``ret * gamma + r`` per env: [M] float64.

    The reset on ``done`` comes after this update (see :func:`observe_step`).
    """
    return np.asarray(returns, dtype=np.float64) * gamma + np.asarray(rewards, dtype=np.float64)


def observe_reset(
    base: NormStats, inc: ShardIncrement, obs: np.ndarray, settings: NormalizeSettings
) -> tuple[ShardIncrement, np.ndarray]:
    """The first observations of a run (SB3's ``VecNormalize.reset`` in training mode).

    Called once per env, when the run starts; an iteration that continues carried episodes starts
    from ``inc.last_obs`` instead.

    Args:
        base: the policy version's statistics.
        inc: the shard's increment so far.
        obs: [M, *S] raw first observations.
        settings: the normalisation options.

    Returns:
        (increment with ``obs`` added and ``returns`` zeroed, normalised obs [M, *S] float32).
    """
    obs_rms = inc.obs_rms.update(obs) if settings.norm_obs else inc.obs_rms
    inc = replace(inc, obs_rms=obs_rms, returns=np.zeros(np.shape(obs)[0]))
    normed = _maybe_normalize_obs(obs, merge(base.obs_rms, obs_rms), settings)
    return replace(inc, last_obs=normed), normed


def observe_step(
    base: NormStats,
    inc: ShardIncrement,
    obs: np.ndarray,
    rewards: np.ndarray,
    dones: np.ndarray,
    settings: NormalizeSettings,
) -> tuple[ShardIncrement, np.ndarray, np.ndarray]:
    """One vectorised step, in SB3's order: obs stats, obs, return stats, reward, return reset.

    Args:
        base: the policy version's statistics.
        inc: the shard's increment before this step.
        obs: [M, *S] raw observations the step returned (auto-reset: the next episode's first one).
        rewards: [M] raw rewards.
        dones: [M] bool, terminated or truncated.
        settings: the normalisation options.

    Returns:
        (increment after the step, normalised obs [M, *S] float32, normalised rewards [M] float32).
        The statistics to normalise a finished episode's terminal observation with are
        ``shard_view(base, new_increment)``.
    """
    obs_rms = inc.obs_rms.update(obs) if settings.norm_obs else inc.obs_rms
    normed_obs = _maybe_normalize_obs(obs, merge(base.obs_rms, obs_rms), settings)
    returns = update_returns(inc.returns, rewards, settings.gamma)
    # SB3 updates the return statistics in training mode even when rewards are not normalised.
    ret_rms = inc.ret_rms.update(returns)
    if settings.norm_reward:
        normed_rewards = normalize_reward(
            rewards, merge(base.ret_rms, ret_rms), settings.clip_reward, settings.epsilon
        )
    else:
        normed_rewards = np.asarray(rewards).astype(np.float32)
    # SB3 zeroes ret on done = terminated or truncated, so a time-limit cut starts a new return too.
    returns = np.where(np.asarray(dones, dtype=bool), 0.0, returns)
    return ShardIncrement(obs_rms, ret_rms, returns, normed_obs), normed_obs, normed_rewards


def _maybe_normalize_obs(obs: np.ndarray, stats: RunningStats, settings: NormalizeSettings) -> np.ndarray:
    if settings.norm_obs:
        return normalize_obs(obs, stats, settings.clip_obs, settings.epsilon)
    return np.asarray(obs).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Serialisation (safetensors-compatible float64 arrays)
# --------------------------------------------------------------------------------------------------


def running_stats_to_tensors(stats: RunningStats, name: str) -> dict[str, np.ndarray]:
    """``{name}.mean`` [*S], ``{name}.var`` [*S], ``{name}.count`` [] as float64 arrays."""
    return {
        f"{name}.mean": stats.mean.copy(),
        f"{name}.var": stats.var.copy(),
        f"{name}.count": np.array(stats.count, dtype=np.float64),
    }


def running_stats_from_tensors(tensors: Mapping[str, np.ndarray], name: str) -> RunningStats:
    """Inverse of :func:`running_stats_to_tensors`; ValueError names a missing or bad tensor."""
    arrays = {}
    for part in ("mean", "var", "count"):
        key = f"{name}.{part}"
        if key not in tensors:
            raise ValueError(f"normalisation statistics lack tensor {key!r}")
        a = np.asarray(tensors[key])
        if a.dtype != np.float64:
            raise ValueError(f"tensor {key!r} must be float64, got {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"tensor {key!r} holds non-finite values")
        arrays[part] = a
    if arrays["count"].shape != ():
        raise ValueError(f"tensor {name}.count must be a scalar, got shape {arrays['count'].shape}")
    if np.any(arrays["var"] < 0):
        raise ValueError(f"tensor {name}.var holds negative variances")
    return RunningStats(arrays["mean"].copy(), arrays["var"].copy(), float(arrays["count"]))


def stats_to_tensors(stats: NormStats | ShardIncrement, prefix: str = "") -> dict[str, np.ndarray]:
    """``{prefix}obs_rms.{mean,var,count}`` and ``{prefix}ret_rms.{mean,var,count}``, float64.

    For storing with a policy version (``prefix=""``) or in a shard's trajectory (its increment).
    """
    return {
        **running_stats_to_tensors(stats.obs_rms, prefix + OBS_RMS),
        **running_stats_to_tensors(stats.ret_rms, prefix + RET_RMS),
    }


def stats_from_tensors(tensors: Mapping[str, np.ndarray], prefix: str = "") -> NormStats:
    """Inverse of :func:`stats_to_tensors`; other tensors in ``tensors`` are ignored."""
    ret = running_stats_from_tensors(tensors, prefix + RET_RMS)
    if ret.shape != ():
        raise ValueError(f"{prefix}{RET_RMS} must hold scalar statistics, got shape {ret.shape}")
    return NormStats(running_stats_from_tensors(tensors, prefix + OBS_RMS), ret)


def shard_carry_to_tensors(inc: ShardIncrement) -> dict[str, np.ndarray]:
    """What the shard's env carry adds: ``norm.returns`` [M] float64 and ``norm.obs`` [M, *S] float32."""
    return {CARRY_RETURNS: inc.returns.astype(np.float64), CARRY_OBS: inc.last_obs.astype(np.float32)}


def shard_carry_from_tensors(tensors: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(returns [M] float64, last normalised obs [M, *S] float32) from an env carry."""
    for key in (CARRY_RETURNS, CARRY_OBS):
        if key not in tensors:
            raise ValueError(f"env carry lacks tensor {key!r}")
    returns = np.asarray(tensors[CARRY_RETURNS], dtype=np.float64)
    obs = np.asarray(tensors[CARRY_OBS], dtype=np.float32)
    if returns.ndim != 1 or obs.shape[:1] != returns.shape:
        raise ValueError(f"carried returns {returns.shape} and obs {obs.shape} disagree on the env count")
    return returns, obs
