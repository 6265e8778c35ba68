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
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    iteration: int = Field(ge=0, lt=1_000_000)
    config_digest: str = Field(pattern=DIGEST_PATTERN)


# --- rollout-collector -----------------------------------------------------------------------------
class CollectRequest(RunRef):
    shard: int = Field(ge=0, lt=10_000)


class CollectResult(_Msg):
    key: str
    carry_key: str
    shard: int
    steps: int
    policy_version: int
    episode_returns: list[float]
    episode_lengths: list[int]
    seconds: float


# --- reward-aggregator -----------------------------------------------------------------------------
class AggregateRequest(RunRef):
    shards: list[CollectResult] = Field(min_length=1)


class AggregateResult(_Msg):
    key: str
    batch_size: int
    steps: int
    episodes: int
    mean_return: float | None
    adv_mean: float
    adv_std: float
    seconds: float


# --- policy-updater --------------------------------------------------------------------------------
class UpdateRequest(RunRef):
    mode: Literal["update", "init"] = "update"
    batch: AggregateResult | None = None


class UpdateResult(_Msg):
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
    version: int | None = Field(default=None, ge=0, description="policy version; default iteration + 1")
    episodes: int | None = Field(default=None, gt=0, le=1000)


class EvalResult(_Msg):
    key: str
    version: int
    episodes: int
    mean_return: float
    std_return: float
    iqm_return: float
    min_return: float
    max_return: float
    mean_length: float
    seconds: float


class ErrorBody(_Msg):
    error: str
    field: str | None = None
