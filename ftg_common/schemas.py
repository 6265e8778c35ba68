"""Wire contracts of the four functions: request and response bodies (JSON objects).

Responses stay small (keys, counters and summary statistics) because Argo keeps every step's result in
the Workflow object; tensors live in the object store.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ftg_common.ids import RUN_ID_PATTERN

DIGEST_PATTERN = r"^[0-9a-f]{16}$"


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    """Where a shard's trajectory and env carry were written, and the episodes it finished."""

    key: str
    carry_key: str
    shard: int
    steps: int
    policy_version: int
    episode_returns: list[float]
    episode_lengths: list[int]
    seconds: float = 0.0  # wall time of the call; faas.serve fills it in


# --- reward-aggregator -----------------------------------------------------------------------------
class AggregateRequest(RunRef):
    """Build an iteration's training batch from the results of all its shards."""

    shards: list[CollectResult] = Field(min_length=1)


class AggregateResult(_Msg):
    """The training batch's key and summary (advantage statistics are before normalisation)."""

    key: str
    batch_size: int
    steps: int
    episodes: int
    mean_return: float | None
    adv_mean: float
    adv_std: float
    seconds: float = 0.0  # wall time of the call; faas.serve fills it in


# --- policy-updater --------------------------------------------------------------------------------
class UpdateRequest(RunRef):
    """Train version ``iteration`` on its batch (``update``), or write version 0 (``init``)."""

    mode: Literal["update", "init"] = "update"
    batch: AggregateResult | None = None


class UpdateResult(_Msg):
    """The committed version's keys and counters, and loss statistics averaged over applied minibatches."""

    key: str
    ckpt_key: str
    version: int
    iteration: int
    total_steps: int
    already_committed: bool = False
    pg_loss: float | None = None
    value_loss: float | None = None
    entropy: float | None = None
    approx_kl: float | None = None
    clip_fraction: float | None = None
    explained_variance: float | None = None
    learning_rate: float | None = None
    clip_range: float | None = None
    n_updates: int = 0
    seconds: float


# --- policy-evaluator ------------------------------------------------------------------------------
class EvalRequest(RunRef):
    """Run evaluation episodes of a policy version."""

    version: int | None = Field(default=None, ge=0, description="policy version; default iteration + 1")
    episodes: int | None = Field(default=None, gt=0, le=1000)


class EvalResult(_Msg):
    """Summary statistics of the evaluation episodes' returns and lengths."""

    key: str
    version: int
    episodes: int
    mean_return: float
    std_return: float
    iqm_return: float
    min_return: float
    max_return: float
    mean_length: float
    seconds: float = 0.0  # wall time of the call; faas.serve fills it in
