"""What both update backends share: schedules, counters and the result/bookkeeping of an update.
No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ftg_common import layout
from ftg_common.algos.schedules import linear_schedule
from ftg_common.algos.stats import explained_variance
from ftg_common.checkpoint_io import save_checkpoint
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.policy.spec import PolicySpec
from ftg_common.policy_io import save_policy
from ftg_common.schemas import UpdateResult
from ftg_common.store.base import ObjectStore

STAT_KEYS = ("pg_loss", "value_loss", "entropy_loss", "approx_kl", "clip_fraction")


def _schedule(kind: str, initial: float, progress_remaining: float) -> float:
    return linear_schedule(initial, progress_remaining) if kind == "linear" else initial


@dataclass(frozen=True)
class UpdatePlan:
    iteration: int
    batch_size: int
    total_steps: int
    learning_rate: float
    clip_range: float


def plan_update(ppo: PPOConfig, state: dict[str, Any], iteration: int, batch_size: int) -> UpdatePlan:
    total_steps = int(state["total_steps"]) + batch_size
    # SB3 convention: progress is measured after the rollout that is being trained on.
    progress_remaining = max(0.0, 1.0 - total_steps / ppo.total_steps)
    return UpdatePlan(
        iteration=iteration,
        batch_size=batch_size,
        total_steps=total_steps,
        learning_rate=_schedule(ppo.lr_schedule, ppo.learning_rate, progress_remaining),
        clip_range=_schedule(ppo.clip_schedule, ppo.clip_range, progress_remaining),
    )


class StatSums:
    def __init__(self) -> None:
        self.sums = dict.fromkeys(STAT_KEYS, 0.0)
        self.n = 0

    def add(self, stats: dict[str, float]) -> None:
        for k in STAT_KEYS:
            self.sums[k] += float(stats[k])
        self.n += 1

    def mean(self, key: str) -> float:
        return self.sums[key] / max(self.n, 1)


def commit_update(
    store: ObjectStore,
    cfg: RunConfig,
    plan: UpdatePlan,
    spec: PolicySpec,
    state: dict[str, Any],
    weights: dict[str, np.ndarray],
    optim: dict[str, np.ndarray],
    batch: dict[str, np.ndarray],
    sums: StatSums,
    extra_state: dict[str, Any],
    seconds: float,
) -> UpdateResult:
    """Write checkpoint and policy ``iteration + 1`` and the update record; return the result."""
    run_id, version = cfg.run_id, plan.iteration + 1
    new_state = {
        "version": version,
        "iteration": plan.iteration,
        "total_steps": plan.total_steps,
        "n_updates": int(state["n_updates"]) + sums.n,
        "spec": state["spec"],
        **extra_state,
    }
    prefix = save_checkpoint(store, run_id, version, weights, optim, new_state)
    key = save_policy(store, run_id, version, spec, weights)
    ev = explained_variance(batch["values"], batch["returns"])
    result = UpdateResult(
        key=key,
        ckpt_key=prefix,
        version=version,
        iteration=plan.iteration,
        total_steps=plan.total_steps,
        pg_loss=sums.mean("pg_loss"),
        value_loss=sums.mean("value_loss"),
        entropy=-sums.mean("entropy_loss"),
        approx_kl=sums.mean("approx_kl"),
        clip_fraction=sums.mean("clip_fraction"),
        explained_variance=None if np.isnan(ev) else float(ev),
        learning_rate=plan.learning_rate,
        clip_range=plan.clip_range,
        n_updates=sums.n,
        seconds=seconds,
    )
    # Kept so a retried call after the commit can answer with the same result.
    store.put_json(layout.update_key(run_id, plan.iteration), result.model_dump(mode="json"))
    return result
