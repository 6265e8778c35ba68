"""One DQN update as a pure function: version, plan and sampled minibatches in; next version out.

The policy-updater works around it: it plans the update (:func:`plan_dqn_update`), samples
``plan.gradient_steps`` minibatches from the replay buffer (``ReplayBuffer.sample``), calls
:func:`train_dqn` and writes the version. No I/O here; torch only if ``update_backend: torch``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from pydantic import Field

from ftg_common.algos.qnet import ONLINE, TARGET, QNetSpec, initial_qnet_weights
from ftg_common.checkpoints import VersionCounters, VersionKeys
from ftg_common.config import DQNConfig
from ftg_common.envs.seeding import INIT, derive_seed
from ftg_common.replay.transitions import Transitions
from ftg_common.schemas import UpdateResult
from ftg_common.update.dqn_loop import DQNBackend, DQNLoopStats, run_gradient_steps
from ftg_common.update.dqn_numpy_backend import NumpyDQNBackend
from ftg_common.update.dqn_plan import DQNPlan

__all__ = ["DQNState", "DQNUpdateStats", "DQNVersion", "initial_dqn_version", "make_dqn_backend", "train_dqn"]


class DQNState(VersionCounters):
    """Counters of a DQN version (its checkpoint's ``state.json``).

    Attributes:
        version: the version (0 is the initial network; version i+1 is trained after collection i).
        iteration: the iteration whose update produced it (-1 for version 0).
        total_steps: environment steps collected so far (= transitions appended to the replay buffer).
        n_updates: gradient steps taken so far.
        target_syncs: target-network updates made so far.
        optimizer_step: Adam's step count where the optimizer tensors do not carry it.
        spec: the Q-network's architecture.
    """

    target_syncs: int = Field(default=0, ge=0)
    optimizer_step: int = Field(default=0, ge=0)
    spec: QNetSpec


@dataclass(frozen=True)
class DQNVersion:
    """A whole DQN version in memory: counters, online + target parameters, optimizer tensors."""

    state: DQNState
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)

    def online(self) -> dict[str, np.ndarray]:
        """The online network's tensors (``q.*``): what the rollout-collector acts with."""
        return {k: v for k, v in self.weights.items() if k.startswith(ONLINE + ".")}


def initial_dqn_version(spec: QNetSpec, seed: int) -> DQNVersion:
    """Version 0: seeded online weights and a target network that is an exact copy of them."""
    online = initial_qnet_weights(spec, derive_seed(seed, INIT), ONLINE)
    target = {TARGET + name[len(ONLINE) :]: w.copy() for name, w in online.items()}
    state = DQNState(version=0, iteration=-1, total_steps=0, n_updates=0, spec=spec)
    return DQNVersion(state=state, weights={**online, **target})


@dataclass(frozen=True)
class DQNUpdateStats:
    """What an update reports besides the new version."""

    plan: DQNPlan
    loop: DQNLoopStats

    def result(self, keys: VersionKeys, chunks_read: int) -> UpdateResult:
        """The policy-updater's answer once the version is written at ``keys``.

        Args:
            keys: where the new version was written.
            chunks_read: replay chunks the sample read (0 when no gradient step was taken).
        """
        mean = self.loop.mean
        return UpdateResult(
            **keys.committed(self.plan.iteration, self.plan.total_steps),
            learning_rate=self.plan.learning_rate,
            n_updates=self.loop.n_updates,
            td_loss=mean("loss"),
            q_mean=mean("q_mean"),
            grad_norm=mean("grad_norm"),
            target_syncs=self.loop.target_syncs,
            replay_chunks_read=chunks_read,
            seconds=0.0,
        )


def make_dqn_backend(dqn: DQNConfig, version: DQNVersion, plan: DQNPlan) -> DQNBackend:
    """The backend the config names (torch is imported only when asked for)."""
    if dqn.update_backend == "torch":
        from ftg_common.update.dqn_torch_backend import TorchDQNBackend

        return TorchDQNBackend(
            version, learning_rate=plan.learning_rate, adam_eps=dqn.adam_eps, max_grad_norm=dqn.max_grad_norm
        )
    return NumpyDQNBackend(version, adam_eps=dqn.adam_eps, max_grad_norm=dqn.max_grad_norm)


def train_dqn(
    version: DQNVersion, plan: DQNPlan, batches: list[Transitions], dqn: DQNConfig
) -> tuple[DQNVersion, DQNUpdateStats]:
    """Train ``version`` (which must be version ``plan.iteration``) as planned.

    Args:
        version: the version whose online network collected iteration ``plan.iteration``.
        plan: :func:`~ftg_common.update.dqn_plan.plan_dqn_update` for that iteration.
        batches: ``plan.gradient_steps`` minibatches (``ReplaySample.batch(g)``), none before
            ``learning_starts``; observations as the replay buffer stores them (raw vectors).
        dqn: the run's DQN config.

    Returns:
        (version ``plan.iteration + 1``, its statistics).
    """
    state = version.state
    if state.version != plan.iteration:
        raise ValueError(f"version {state.version} cannot train after collection {plan.iteration}")
    if state.total_steps != plan.steps_before:
        raise ValueError(
            f"version {state.version} has seen {state.total_steps} steps, plan says {plan.steps_before}"
        )
    enc = state.spec.encoding
    if enc is not None:
        # The replay buffer keeps raw vectors (a Discrete observation: 1 float instead of n, exact);
        # the network takes their one-hot encoding, made once per minibatch here.
        batches = [replace(b, obs=enc.encode(b.obs), next_obs=enc.encode(b.next_obs)) for b in batches]
    backend = make_dqn_backend(dqn, version, plan)
    loop = run_gradient_steps(backend, batches, plan)
    new_state = DQNState(
        version=plan.iteration + 1,
        iteration=plan.iteration,
        total_steps=plan.total_steps,
        n_updates=state.n_updates + loop.n_updates,
        target_syncs=state.target_syncs + loop.target_syncs,
        optimizer_step=backend.optimizer_step,
        spec=state.spec,
    )
    new = DQNVersion(state=new_state, weights=backend.weights(), optimizer=backend.optimizer_tensors())
    return new, DQNUpdateStats(plan, loop)
