"""Policy versions in the object store: the one module that writes and reads them.

A version is what the policy-updater produces and the other functions consume:

- ``ckpt/<v>/weights.safetensors`` and ``ckpt/<v>/optimizer.safetensors``: parameters and optimizer state;
- ``ckpt/<v>/state.json``: a :class:`CheckpointState` (counters and the policy's architecture), written
  last so that its presence marks a complete checkpoint;
- ``policy/<v>.safetensors``: the inference weights with the spec as metadata (numpy-loadable, what the
  rollout-collector and policy-evaluator read).

A DQN version (:class:`~ftg_common.update.dqn.DQNVersion`) has the same four objects: its weights
hold the online (``q.*``) and target (``q_target.*``) networks, its ``state.json`` a
:class:`~ftg_common.update.dqn.DQNState` (spec: a :class:`~ftg_common.algos.qnet.QNetSpec`), and its
policy file the online network only, with the spec under ``qnet_spec``. A tabular Q-learning version
(:class:`~ftg_common.update.qlearning.QTableVersion`) holds its table (``q_table``) in both weight files,
no optimizer tensors, and its :class:`~ftg_common.policy.qtable.QTableSpec` under ``qtable_spec``.

No RNG state is stored: every random stream is derived from (run seed, purpose, counters), so the
counters here are all that resuming needs. No torch here.

Every object carries its own content digest, checked on every read here; a damaged one raises
:class:`~ftg_common.errors.CorruptObjectError` naming its key. :func:`write_version` also answers the
SHA-256 of each object's stored bytes, which the version fence records when it commits the version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ftg_common import layout
from ftg_common.errors import CorruptObjectError
from ftg_common.normalize import NormalizeSettings, NormStats, stats_from_tensors, stats_to_tensors
from ftg_common.policy.spec import (
    NORM_METADATA_KEY,
    NORM_PREFIX,
    SPEC_METADATA_KEY,
    PolicySpec,
    check_tensors,
    save_policy_bytes,
    split_norm_tensors,
)
from ftg_common.policy.stored import read_spec_and_tensors
from ftg_common.store.base import ObjectStore
from ftg_common.store.integrity import decode_json, object_digest
from ftg_common.tensorio import decode, encode

if TYPE_CHECKING:
    from ftg_common.algos.qnet import QNetSpec
    from ftg_common.policy.numpy_policy import NumpyPolicy
    from ftg_common.policy.qpolicy import QPolicy
    from ftg_common.update.dqn import DQNVersion
    from ftg_common.update.qlearning import QTableVersion


class VersionCounters(BaseModel):
    """The counters every version's ``state.json`` starts with, PPO's and DQN's alike.

    Attributes:
        version: the version (0 is the initial one; version i+1 is trained after iteration i).
        iteration: the iteration whose update produced it (-1 for version 0).
        total_steps: environment steps so far.
        n_updates: gradient steps taken so far.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=0)
    iteration: int = Field(ge=-1)
    total_steps: int = Field(ge=0)
    n_updates: int = Field(ge=0)


class CheckpointState(VersionCounters):
    """Counters of a policy version (``state.json``).

    Attributes:
        version: the policy version (0 is the initial policy; version i+1 is trained on batch i).
        iteration: the iteration whose update produced it (-1 for version 0).
        total_steps: environment steps trained on so far.
        n_updates: gradient steps taken so far.
        optimizer_step: Adam's step count where the optimizer tensors do not carry it.
        spec: the network's architecture.
    """

    optimizer_step: int = Field(default=0, ge=0)
    spec: PolicySpec


@dataclass(frozen=True)
class PolicyVersion:
    """A whole version in memory: counters, parameters (safetensors names) and optimizer tensors.

    ``norm`` holds the observation/return normalisation statistics the version acts with (None when
    the run does not normalise) and ``norm_settings`` the options; both are stored with the weights
    (checkpoint and policy file), as float64 tensors under the ``norm.`` prefix and JSON metadata.
    """

    state: CheckpointState
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    norm: NormStats | None = None
    norm_settings: NormalizeSettings | None = None


class CommittedVersion(TypedDict):
    """Which version an update committed and where (see :meth:`VersionKeys.committed`)."""

    key: str
    ckpt_key: str
    version: int
    iteration: int
    total_steps: int


@dataclass(frozen=True)
class VersionKeys:
    """Where a written version lives: the inference weights and the checkpoint folder.

    Attributes:
        policy: key of the inference weights.
        checkpoint: the checkpoint folder.
        digests: key -> SHA-256 (hex) of the stored bytes of every object of the version.
    """

    policy: str
    checkpoint: str
    digests: dict[str, str] = field(default_factory=dict)

    def committed(self, iteration: int, total_steps: int) -> CommittedVersion:
        """The fields of an ``UpdateResult`` that say which version an update wrote here.

        Args:
            iteration: the iteration whose update produced the version (the version is ``iteration + 1``).
            total_steps: environment steps so far.
        """
        return {
            "key": self.policy,
            "ckpt_key": self.checkpoint,
            "version": iteration + 1,
            "iteration": iteration,
            "total_steps": total_steps,
        }


def version_object_keys(run_id: str, version: int) -> list[str]:
    """Keys of every object of a version, in the order :func:`write_version` writes them."""
    return [
        layout.ckpt_weights_key(run_id, version),
        layout.ckpt_optim_key(run_id, version),
        layout.policy_key(run_id, version),
        layout.ckpt_state_key(run_id, version),
    ]


def _qnet_policy_bytes(spec: QNetSpec, weights: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    from ftg_common.algos.qnet import ONLINE, QNET_SPEC_METADATA_KEY

    """The policy file of a DQN version: the online network, its spec as metadata."""
    online = {k: np.asarray(w, dtype=np.float32) for k, w in weights.items() if k.startswith(ONLINE + ".")}
    if set(online) != set(spec.shapes(ONLINE)):
        raise ValueError(f"DQN weights do not hold the online network of {spec}")
    return encode(online, {**metadata, QNET_SPEC_METADATA_KEY: spec.model_dump_json()})


def _norm_of(
    v: PolicyVersion | DQNVersion | QTableVersion,
) -> tuple[dict[str, np.ndarray], dict[str, str]] | None:
    """(statistics tensors, metadata with the options) of a version that normalises, else None."""
    if not isinstance(v, PolicyVersion) or v.norm is None:
        return None
    meta = {} if v.norm_settings is None else {NORM_METADATA_KEY: v.norm_settings.to_json()}
    return stats_to_tensors(v.norm), meta


def _norm_from(
    tensors: dict[str, np.ndarray], meta: dict[str, str], key: str
) -> tuple[dict[str, np.ndarray], NormStats | None, NormalizeSettings | None]:
    """(weights, statistics, options) of stored tensors and metadata; CorruptObjectError if unreadable."""
    weights, norm = split_norm_tensors(tensors)
    if not norm:
        return weights, None, None
    try:
        stats = stats_from_tensors(norm)
        text = meta.get(NORM_METADATA_KEY)
        settings = None if text is None else NormalizeSettings.from_json(text)
    except (ValueError, TypeError) as exc:
        raise CorruptObjectError(key, f"bad normalisation statistics: {exc}") from None
    return weights, stats, settings


def write_version(
    store: ObjectStore, run_id: str, v: PolicyVersion | DQNVersion | QTableVersion
) -> VersionKeys:
    """Write every object of version ``v.state.version``; identical inputs give identical bytes.

    Returns:
        The version's keys and the digests of what was written.
    """
    n = v.state.version
    digests: dict[str, str] = {}
    weights, optim = layout.ckpt_weights_key(run_id, n), layout.ckpt_optim_key(run_id, n)
    norm = _norm_of(v)
    if norm is None:
        digests[weights] = store.put_tensors(weights, v.weights)
    else:
        stored = {**v.weights, **{NORM_PREFIX + k: a for k, a in norm[0].items()}}
        digests[weights] = store.put_tensors(weights, stored, norm[1])
    digests[optim] = store.put_tensors(optim, v.optimizer)
    policy = layout.policy_key(run_id, n)
    meta = {"version": str(n), "run_id": run_id}
    spec = v.state.spec
    # The off-policy families' modules load here, in the updater: a PPO collector never imports them.
    from ftg_common.algos.qnet import QNetSpec
    from ftg_common.policy.qtable import QTableSpec, qtable_policy_bytes

    if isinstance(spec, QNetSpec):
        data = _qnet_policy_bytes(spec, v.weights, meta)
    elif isinstance(spec, QTableSpec):
        data = qtable_policy_bytes(spec, v.weights, meta)
    elif norm is None:
        data = save_policy_bytes(spec, v.weights, meta)
    else:
        data = save_policy_bytes(spec, v.weights, meta, norm[0], norm[1].get(NORM_METADATA_KEY))
    store.put_bytes(policy, data)
    digests[policy] = object_digest(data)
    # state.json last: its presence marks a complete checkpoint.
    state = layout.ckpt_state_key(run_id, n)
    digests[state] = store.put_json(state, v.state.model_dump(mode="json"))
    return VersionKeys(policy=policy, checkpoint=layout.ckpt_prefix(run_id, n), digests=digests)


def stored_digests(store: ObjectStore, run_id: str, version: int) -> dict[str, str]:
    """Read back every object of a version, check it, and answer the SHA-256 of its stored bytes.

    What the version fence records when the writer's own digests are not at hand.

    Raises:
        KeyNotFoundError: an object of the version is missing.
        CorruptObjectError: an object of the version is damaged.
    """
    digests: dict[str, str] = {}
    for key in version_object_keys(run_id, version):
        data = store.get_bytes(key)
        if key.endswith(".json"):
            decode_json(data, key)
        else:
            decode(data, key, require_digest=True)
        digests[key] = object_digest(data)
    return digests


def has_version(store: ObjectStore, run_id: str, version: int) -> bool:
    """True when version ``version`` was written completely."""
    return store.exists(layout.ckpt_state_key(run_id, version))


def read_version(store: ObjectStore, run_id: str, version: int) -> PolicyVersion:
    """Read a version written by :func:`write_version`."""
    state = CheckpointState.model_validate(store.get_json(layout.ckpt_state_key(run_id, version)))
    key = layout.ckpt_weights_key(run_id, version)
    weights, norm, settings = _norm_from(*store.get_tensors_with_metadata(key), key)
    return PolicyVersion(
        state=state,
        weights=weights,
        optimizer=store.get_tensors(layout.ckpt_optim_key(run_id, version)),
        norm=norm,
        norm_settings=settings,
    )


def read_dqn_version(store: ObjectStore, run_id: str, version: int) -> DQNVersion:
    """Read a DQN version written by :func:`write_version`.

    Raises:
        CorruptObjectError: ``state.json`` is not a DQN version's.
    """
    from ftg_common.update.dqn import DQNState, DQNVersion  # local: keeps this module light

    key = layout.ckpt_state_key(run_id, version)
    try:
        state = DQNState.model_validate(store.get_json(key))
    except ValueError as exc:  # pydantic's ValidationError is one
        raise CorruptObjectError(key, f"not a DQN checkpoint state: {exc}") from None
    return DQNVersion(
        state=state,
        weights=store.get_tensors(layout.ckpt_weights_key(run_id, version)),
        optimizer=store.get_tensors(layout.ckpt_optim_key(run_id, version)),
    )


def read_qtable_version(store: ObjectStore, run_id: str, version: int) -> QTableVersion:
    """Read a Q-learning version written by :func:`write_version`.

    Raises:
        CorruptObjectError: ``state.json`` is not a Q-learning version's, or the table does not match it.
    """
    from ftg_common.policy.qtable import QTABLE_KEY
    from ftg_common.update.qlearning import QTableState, QTableVersion  # local: keeps this module light

    key = layout.ckpt_state_key(run_id, version)
    try:
        state = QTableState.model_validate(store.get_json(key))
    except ValueError as exc:  # pydantic's ValidationError is one
        raise CorruptObjectError(key, f"not a Q-learning checkpoint state: {exc}") from None
    weights_key = layout.ckpt_weights_key(run_id, version)
    weights = store.get_tensors(weights_key)
    if set(weights) != {QTABLE_KEY} or tuple(weights[QTABLE_KEY].shape) != state.spec.shape:
        raise CorruptObjectError(weights_key, f"does not hold the {state.spec.shape} table of its state")
    return QTableVersion(state=state, weights=weights)


def read_qnet(store: ObjectStore, run_id: str, version: int) -> tuple[QNetSpec, dict[str, np.ndarray]]:
    """The online Q-network of a DQN version and its spec (numpy only).

    Raises:
        KeyNotFoundError: the version has no policy file.
        CorruptObjectError: the policy file is damaged, or is not a Q-network's.
    """
    from ftg_common.algos.qnet import ONLINE, QNET_SPEC_METADATA_KEY, QNetSpec

    key, spec, tensors = read_spec_and_tensors(
        store, run_id, version, QNetSpec, QNET_SPEC_METADATA_KEY, "a Q-network"
    )
    if {k: tuple(v.shape) for k, v in tensors.items()} != spec.shapes(ONLINE):
        raise CorruptObjectError(key, "tensors do not match the Q-network spec")
    return spec, tensors


def load_q_policy(store: ObjectStore, run_id: str, version: int) -> QPolicy:
    """The greedy / epsilon-greedy policy of a DQN version (numpy only)."""
    from ftg_common.policy.qpolicy import QPolicy

    return QPolicy(*read_qnet(store, run_id, version))


@dataclass(frozen=True)
class PolicyFile:
    """What a version's policy file holds: spec, inference weights, and normalisation (if any)."""

    spec: PolicySpec
    weights: dict[str, np.ndarray]
    norm: NormStats | None = None
    norm_settings: NormalizeSettings | None = None


def read_policy_file(store: ObjectStore, run_id: str, version: int) -> PolicyFile:
    """The policy file of a version: its spec, inference weights and normalisation statistics.

    Raises:
        KeyNotFoundError: the version has no policy file.
        CorruptObjectError: the policy file is damaged, or is not a policy file.
    """
    key = layout.policy_key(run_id, version)
    tensors, meta = store.get_tensors_with_metadata(key)
    weights, norm, settings = _norm_from(tensors, meta, key)
    try:
        spec = PolicySpec.from_json(meta[SPEC_METADATA_KEY])
        check_tensors(spec, weights)
    except KeyError:
        raise CorruptObjectError(key, f"no {SPEC_METADATA_KEY!r} metadata: not a policy file") from None
    except ValueError as exc:  # pydantic's ValidationError is one
        raise CorruptObjectError(key, f"not a policy file: {exc}") from None
    return PolicyFile(spec, weights, norm, settings)


def read_policy(store: ObjectStore, run_id: str, version: int) -> tuple[PolicySpec, dict[str, np.ndarray]]:
    """The inference weights of a version and their spec (normalisation: :func:`read_policy_file`).

    Raises:
        KeyNotFoundError: the version has no policy file.
        CorruptObjectError: the policy file is damaged, or is not a policy file.
    """
    f = read_policy_file(store, run_id, version)
    return f.spec, f.weights


def load_numpy_policy(store: ObjectStore, run_id: str, version: int) -> NumpyPolicy:
    """A NumpyPolicy for ``version`` (numpy only: the rollout path never loads torch).

    Its ``norm`` and ``norm_settings`` are the version's normalisation (None when the run has none).
    """
    from ftg_common.policy.numpy_policy import NumpyPolicy

    f = read_policy_file(store, run_id, version)
    return NumpyPolicy(f.spec, f.weights, norm=f.norm, norm_settings=f.norm_settings)
