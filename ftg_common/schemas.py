"""Wire contracts of the four functions: request and response bodies (JSON objects).

Responses stay small (keys, counters and summary statistics) because Argo keeps every step's result in
the Workflow object; tensors live in the object store.

Every number on the wire is finite: a message refuses NaN and infinities (``allow_inf_nan=False``),
so a request holding one is a 400 naming the field, and a result holding one cannot be built at all
(``faas.serve`` answers 500: a non-finite statistic is the function's bug, never a body that is not
JSON). Counters, sizes and seconds are also non-negative.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ftg_common.ids import RUN_ID_PATTERN

DIGEST_PATTERN = r"^[0-9a-f]{16}$"
MAX_KEY_CHARS = 1024  # object keys on the wire; the layout's keys are far shorter

Count = Annotated[int, Field(ge=0)]
Key = Annotated[str, Field(max_length=MAX_KEY_CHARS)]
Seconds = Annotated[float, Field(ge=0)]


class _Msg(BaseModel):
    # defer_build: a model's validator is built on its first use, not at import, so each function
    # builds the few messages it serves instead of every function's (a cold start pays for them all).
    # ser_json_inf_nan: a non-finite number set after validation is written as a literal that is not
    # JSON, which faas.serve then refuses (500), instead of pydantic's default null.
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, defer_build=True, ser_json_inf_nan="constants"
    )


class RunRef(_Msg):
    """Fields every request carries: which run and iteration, and the config digest it was planned with."""

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    iteration: int = Field(ge=0, lt=1_000_000)
    config_digest: str = Field(pattern=DIGEST_PATTERN)


# --- rollout-collector -----------------------------------------------------------------------------
class CollectRequest(RunRef):
    """Collect one shard's rollout of an iteration with policy version ``iteration``."""

    shard: int = Field(ge=0, lt=10_000)


class CollectResult(_Msg):
    """Where a shard's trajectory and env carry were written, and the episodes it finished.

    Only ``key`` and ``shard`` are read back by the reward-aggregator (checked against the run's
    layout); its counts come from the stored trajectories, never from these fields.
    """

    key: Key
    carry_key: Key
    shard: int = Field(ge=0, lt=10_000)
    steps: Count
    policy_version: Count
    episode_returns: list[float]
    episode_lengths: list[Count]
    seconds: Seconds = 0.0  # wall time of the call; faas.serve fills it in


# --- reward-aggregator -----------------------------------------------------------------------------
class AggregateRequest(RunRef):
    """Build an iteration's training batch from the results of all its shards."""

    shards: list[CollectResult] = Field(min_length=1, max_length=256)


class AggregateResult(_Msg):
    """The training batch's key and summary (advantage statistics are before normalisation).

    ``steps``, ``episodes`` and ``mean_return`` are computed from the stored trajectories.
    """

    key: Key
    batch_size: Count
    steps: Count
    episodes: Count
    mean_return: float | None
    adv_mean: float
    adv_std: float = Field(ge=0)
    seconds: Seconds = 0.0  # wall time of the call; faas.serve fills it in


class AppendResult(_Msg):
    """Off-policy runs: what the reward-aggregator appended to the replay buffer for an iteration.

    ``steps``, ``episodes`` and ``mean_return`` are computed from the stored trajectories, as for
    :class:`AggregateResult`.
    """

    key: Key = Field(description="the run's replay prefix")
    iteration: Count
    chunks: list[Count] = Field(description="the chunk ids the iteration's shards are stored as")
    evicted: list[Count] = Field(default_factory=list, description="chunk ids released by this append")
    replay_size: Count = Field(description="transitions the buffer holds for sampling after the append")
    steps: Count
    episodes: Count
    mean_return: float | None
    seconds: Seconds = 0.0  # wall time of the call; faas.serve fills it in


# --- policy-updater --------------------------------------------------------------------------------
class UpdateRequest(RunRef):
    """Train version ``iteration`` (``update``), or write version 0 (``init``).

    An on-policy update names its training batch (``batch``), an off-policy one the replay append of
    its iteration (``replay``).
    """

    mode: Literal["update", "init"] = "update"
    batch: AggregateResult | None = None
    replay: AppendResult | None = None


class UpdateResult(_Msg):
    """The committed version's keys and counters, and loss statistics averaged over applied minibatches.

    A statistic that is undefined (explained variance of constant returns) is None, never NaN.
    """

    key: Key
    ckpt_key: Key
    version: Count
    iteration: Count
    total_steps: Count
    already_committed: bool = False
    pg_loss: float | None = None
    value_loss: float | None = None
    entropy: float | None = None
    approx_kl: float | None = None
    clip_fraction: float | None = Field(default=None, ge=0, le=1)
    explained_variance: float | None = None
    learning_rate: float | None = Field(default=None, ge=0)
    clip_range: float | None = Field(default=None, ge=0)
    n_updates: Count = 0
    # Off-policy (DQN) statistics; None for PPO.
    td_loss: float | None = None
    q_mean: float | None = None
    grad_norm: float | None = Field(default=None, ge=0)
    target_syncs: Count | None = None
    replay_chunks_read: Count | None = None
    seconds: Seconds


# --- policy-evaluator ------------------------------------------------------------------------------
class EvalRequest(RunRef):
    """Run evaluation episodes of the policy version iteration ``iteration`` produced (``iteration + 1``).

    ``iteration``'s eval record holds that version's evaluation and no other, so ``version``, when given,
    must be ``iteration + 1``; it is there for callers that want to say which version they mean.
    """

    version: int | None = Field(
        default=None, ge=1, lt=1_000_001, description="policy version; must be iteration + 1 when given"
    )
    episodes: int | None = Field(default=None, gt=0, le=1000)


class OPEValue(_Msg):
    """One off-policy estimate of the evaluated version's value, with its bootstrap interval.

    ``value`` and the bounds are None when the estimator is undefined on the logged data (no logged
    episode the evaluated policy could have produced), never NaN.
    """

    value: float | None
    ci_low: float | None
    ci_high: float | None
    ess: float = Field(ge=0, description="effective sample size of the trajectory weights")


class EvalResult(_Msg):
    """Summary statistics of the evaluation episodes' returns and lengths.

    ``ope`` holds the off-policy estimates (``is``, ``pdis``, ``wis``, ``pdwis``, ``dr``) of the same
    version from the trajectories its predecessor logged, when they could be made.
    """

    key: Key
    version: Count
    episodes: Count
    mean_return: float
    std_return: float = Field(ge=0)
    iqm_return: float
    min_return: float
    max_return: float
    mean_length: float = Field(ge=0)
    ope: dict[str, OPEValue] | None = None
    ope_episodes: Count | None = None
    ope_error: str | None = Field(default=None, max_length=1000, description="why there are no estimates")
    seconds: Seconds = 0.0  # wall time of the call; faas.serve fills it in
