"""One tabular Q-learning update as a pure function: version, plan and transitions in; next version out.

The policy-updater works around it: it plans the update (:func:`~ftg_common.update.qlearning_plan.
plan_qlearning_update`), reads the iteration's trajectory shards (and, with ``replay_batches``, a
sample of the replay buffer), calls :func:`train_qlearning` and writes the version through
:func:`ftg_common.checkpoints.write_version`. No I/O and no randomness here: the table after an update is
a function of the table before it and the transitions in their order, so a resumed run computes the
same bytes as an uninterrupted one.

A version is four objects like every other family's: ``ckpt/<v>/weights.safetensors`` holds the table
(``q_table`` [S, A] float64), ``optimizer.safetensors`` is empty (tabular Q-learning has no optimizer
state), ``state.json`` a :class:`QTableState` and the policy file the table with its spec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftg_common.algos.qlearning import QPassStats, combine_passes, q_learning_pass
from ftg_common.checkpoints import VersionCounters, VersionKeys
from ftg_common.config import QLearningConfig
from ftg_common.policy.qtable import QTABLE_KEY, QTableSpec
from ftg_common.replay.transitions import Transitions
from ftg_common.schemas import UpdateResult
from ftg_common.update.qlearning_plan import QLearningPlan

__all__ = [
    "QLearningUpdateStats",
    "QTableState",
    "QTableVersion",
    "initial_qtable_version",
    "qtable_spec",
    "train_qlearning",
]


class QTableState(VersionCounters):
    """Counters of a Q-learning version (its checkpoint's ``state.json``).

    Attributes:
        version: the version (0 is the initial table; version i+1 is trained after collection i).
        iteration: the iteration whose update produced it (-1 for version 0).
        total_steps: environment steps collected so far (= transitions appended to the replay buffer).
        n_updates: table updates (one per transition applied) so far.
        spec: the table's shape and discretisation.
    """

    spec: QTableSpec


@dataclass(frozen=True)
class QTableVersion:
    """A whole Q-learning version in memory: counters and the table (``weights[q_table]`` [S, A])."""

    state: QTableState
    weights: dict[str, np.ndarray]

    @property
    def optimizer(self) -> dict[str, np.ndarray]:
        """No optimizer state: written as an empty tensor file like any version's."""
        return {}

    @property
    def table(self) -> np.ndarray:
        """The Q-table [S, A] float64."""
        return self.weights[QTABLE_KEY]


def qtable_spec(hp: QLearningConfig) -> QTableSpec:
    """The table a config's env and discretisation call for (the env is created once to read its spaces).

    Raises:
        UnknownEnvError: spaces the table cannot be built for, naming the config field (see
            :meth:`QTableSpec.from_spaces`).
    """
    from ftg_common.envs.factory import make_env  # local: an update never needs gymnasium

    env = make_env(hp.env_id, hp.env_kwargs)
    try:
        return QTableSpec.from_spaces(env.observation_space, env.action_space, hp.bins, hp.low, hp.high)
    finally:
        env.close()


def initial_qtable_version(spec: QTableSpec, initial_q: float) -> QTableVersion:
    """Version 0: every entry ``initial_q`` (deterministic: no seed involved)."""
    state = QTableState(version=0, iteration=-1, total_steps=0, n_updates=0, spec=spec)
    return QTableVersion(state=state, weights={QTABLE_KEY: np.full(spec.shape, initial_q, dtype=np.float64)})


@dataclass(frozen=True)
class QLearningUpdateStats:
    """What an update reports besides the new version."""

    plan: QLearningPlan
    online: QPassStats
    replayed: QPassStats

    def result(self, keys: VersionKeys, chunks_read: int) -> UpdateResult:
        """The policy-updater's answer once the version is written at ``keys``."""
        # Means over every applied transition, online and replayed alike.
        both = combine_passes([self.online, self.replayed])
        return UpdateResult(
            **keys.committed(self.plan.iteration, self.plan.total_steps),
            learning_rate=self.plan.learning_rate,
            n_updates=both.n_updates,
            td_loss=both.td_loss,
            q_mean=both.q_mean,
            replay_chunks_read=chunks_read,
            seconds=0.0,
        )


def _apply(table: np.ndarray, spec: QTableSpec, t: Transitions, plan: QLearningPlan) -> QPassStats:
    """One pass of updates over ``t``'s rows in order (terminated rows do not bootstrap)."""
    if len(t) == 0:
        return QPassStats(0, None, None)
    return q_learning_pass(
        table,
        spec.states(t.obs),
        t.actions,
        t.rewards.astype(np.float64),
        spec.states(t.next_obs),
        t.terminated,
        plan.learning_rate,
        plan.gamma,
    )


def train_qlearning(
    version: QTableVersion,
    plan: QLearningPlan,
    collected: list[Transitions],
    replayed: Transitions | None = None,
) -> tuple[QTableVersion, QLearningUpdateStats]:
    """Apply the iteration's transitions, then the replayed ones, to a copy of ``version``'s table.

    Args:
        version: the version that collected iteration ``plan.iteration`` (must be version
            ``plan.iteration``).
        plan: the update's plan; when ``plan.train`` is False nothing is applied (the counters move).
        collected: the iteration's transitions per shard, in shard order, each in collection order
            (row = t * M + env, as :func:`~ftg_common.replay.transitions.transitions_from_shard`
            flattens a shard).
        replayed: ``plan.replay_batches * plan.batch_size`` rows sampled from the replay buffer, batch
            after batch (None or empty when no replay is planned).

    Returns:
        (version ``plan.iteration + 1``, its statistics).
    """
    state = version.state
    if (state.version, state.total_steps) != (plan.iteration, plan.steps_before):
        raise ValueError(
            f"version {state.version} ({state.total_steps} steps) cannot train after collection "
            f"{plan.iteration} ({plan.steps_before} steps before it)"
        )
    table = np.array(version.table, dtype=np.float64, copy=True)
    empty = QPassStats(0, None, None)
    online, again = empty, empty
    if plan.train:
        online = combine_passes([_apply(table, state.spec, t, plan) for t in collected])
        if replayed is not None:
            again = _apply(table, state.spec, replayed, plan)
    new_state = QTableState(
        version=plan.iteration + 1,
        iteration=plan.iteration,
        total_steps=plan.total_steps,
        n_updates=state.n_updates + online.n_updates + again.n_updates,
        spec=state.spec,
    )
    return QTableVersion(new_state, {QTABLE_KEY: table}), QLearningUpdateStats(plan, online, again)
