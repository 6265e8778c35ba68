"""One PPO update as a pure function.

A policy version and a training batch in, the next version and its statistics out. No I/O; the
policy-updater handler reads and writes around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftg_common.algos.stats import explained_variance
from ftg_common.checkpoints import CheckpointState, PolicyVersion, VersionKeys
from ftg_common.config import PPOConfig, RunConfig
from ftg_common.errors import Conflict
from ftg_common.normalize import NormStats, stats_from_tensors
from ftg_common.policy.spec import NORM_PREFIX
from ftg_common.schemas import UpdateResult
from ftg_common.update.loop import LoopStats, PPOBackend, run_epochs
from ftg_common.update.numpy_backend import NumpyPPOBackend
from ftg_common.update.plan import UpdatePlan, plan_update


@dataclass(frozen=True)
class UpdateStats:
    """What an update reports besides the new version."""

    plan: UpdatePlan
    loop: LoopStats
    explained_variance: float | None

    def result(self, keys: VersionKeys) -> UpdateResult:
        """The policy-updater's answer for this update, once the version is written at ``keys``."""
        mean = self.loop.mean
        entropy_loss = mean("entropy_loss")
        return UpdateResult(
            **keys.committed(self.plan.iteration, self.plan.total_steps),
            pg_loss=mean("pg_loss"),
            value_loss=mean("value_loss"),
            entropy=None if entropy_loss is None else -entropy_loss,
            approx_kl=mean("approx_kl"),
            clip_fraction=mean("clip_fraction"),
            explained_variance=self.explained_variance,
            learning_rate=self.plan.learning_rate,
            clip_range=self.plan.coefs.clip_range,
            n_updates=self.loop.n_updates,
            seconds=0.0,
        )


def make_backend(ppo: PPOConfig, version: PolicyVersion, plan: UpdatePlan) -> PPOBackend:
    """The backend the config names (torch is imported only when asked for)."""
    if ppo.update_backend == "torch":
        from ftg_common.settings import get_settings
        from ftg_common.update.torch_backend import TorchPPOBackend, set_threads

        set_threads(get_settings().torch_threads)
        return TorchPPOBackend(
            version, learning_rate=plan.learning_rate, adam_eps=ppo.adam_eps, max_grad_norm=ppo.max_grad_norm
        )
    return NumpyPPOBackend(version, adam_eps=ppo.adam_eps, max_grad_norm=ppo.max_grad_norm)


def next_norm_stats(version: PolicyVersion, batch: dict[str, np.ndarray], cfg: RunConfig) -> NormStats | None:
    """The normalisation statistics of the next version: the ones the aggregator merged into the batch.

    Raises:
        Conflict: the run normalises but the batch holds no statistics, or the reverse (field
            ``batch.key``: aggregate the iteration again).
    """
    settings = cfg.ppo_config.normalize_settings
    stored = {k: v for k, v in batch.items() if k.startswith(NORM_PREFIX)}
    if settings is None:
        if stored:
            raise Conflict(
                "the batch holds normalisation statistics, but the run does not normalise", "batch.key"
            )
        return None
    if not stored:
        raise Conflict("the run normalises, but the batch holds no normalisation statistics", "batch.key")
    try:
        return stats_from_tensors(stored, NORM_PREFIX)
    except ValueError as exc:
        raise Conflict(f"the batch's normalisation statistics are unreadable: {exc}", "batch.key") from exc


def train(
    version: PolicyVersion, batch: dict[str, np.ndarray], cfg: RunConfig, iteration: int
) -> tuple[PolicyVersion, UpdateStats]:
    """Train ``version`` (which must be version ``iteration``) on the batch of ``iteration``.

    Args:
        version: the policy version that collected the batch.
        batch: the reward-aggregator's batch: obs [N, obs_dim], actions [N] or [N, A], log_probs [N],
            values [N], advantages [N], returns [N].
        cfg: the run's frozen config.
        iteration: the iteration trained on.

    Returns:
        (version ``iteration + 1``, its statistics).
    """
    ppo, state = cfg.ppo_config, version.state
    if state.version != iteration:
        raise ValueError(f"version {state.version} cannot train on the batch of iteration {iteration}")
    plan = plan_update(ppo, cfg.seed, state.total_steps, iteration, int(batch["advantages"].shape[0]))
    norm = next_norm_stats(version, batch, cfg)
    encoding = state.spec.encoding
    if encoding is not None:
        # Trajectories store raw observation vectors (Discrete: the index); the network's input is
        # their one-hot encoding, built once per update rather than per minibatch.
        batch = {**batch, "obs": encoding.encode(batch["obs"])}
    backend = make_backend(ppo, version, plan)
    loop = run_epochs(
        backend, batch, plan, normalize_advantage=ppo.normalize_advantage, target_kl=ppo.target_kl
    )
    new_state = CheckpointState(
        version=iteration + 1,
        iteration=iteration,
        total_steps=plan.total_steps,
        n_updates=state.n_updates + loop.n_updates,
        optimizer_step=backend.optimizer_step,
        spec=state.spec,
    )
    new = PolicyVersion(
        state=new_state,
        weights=backend.weights(),
        optimizer=backend.optimizer_tensors(),
        norm=norm,
        norm_settings=None if norm is None else ppo.normalize_settings,
    )
    ev = explained_variance(batch["values"], batch["returns"])
    return new, UpdateStats(plan, loop, None if np.isnan(ev) else float(ev))
