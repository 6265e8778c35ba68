"""The Q-table of a tabular Q-learning version: its shape, its policy file, and acting with it (numpy only).

A version's policy file (``policy/<v>.safetensors``) holds one float64 tensor ``q_table`` [S, A] and, as
metadata under ``qtable_spec``, the :class:`QTableSpec` that turns a raw observation vector into its
row. :class:`QTablePolicy` acts epsilon-greedy on it exactly as a DQN version's
:class:`~ftg_common.policy.qpolicy.QPolicy` does on its network, so the off-policy collection,
evaluation and off-policy estimates take either.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ftg_common.algos.qlearning import bin_indices, mixed_radix_index
from ftg_common.errors import CorruptObjectError, UnknownEnvError
from ftg_common.policy.qpolicy import QPolicy
from ftg_common.policy.stored import read_spec_and_tensors
from ftg_common.store.base import ObjectStore
from ftg_common.tensorio import encode

__all__ = [
    "MAX_TABLE_ENTRIES",
    "QTABLE_KEY",
    "QTABLE_SPEC_METADATA_KEY",
    "QTablePolicy",
    "QTableSpec",
    "load_qtable_policy",
    "qtable_policy_bytes",
    "read_qtable",
]

QTABLE_KEY = "q_table"
QTABLE_SPEC_METADATA_KEY = "qtable_spec"
MAX_TABLE_ENTRIES = 1 << 24
"""Largest table (states x actions): 128 MiB of float64, already more than an invocation should load."""


class QTableSpec(BaseModel):
    """How raw observations index the rows of a Q-table, and its number of actions.

    Attributes:
        kind: ``index`` (discrete observations: each component is a value in ``starts[k] ..
            starts[k] + sizes[k] - 1``) or ``bins`` (a Box: ``sizes[k]`` uniform intervals of
            ``[low[k], high[k]]``).
        n_actions: columns of the table (a Discrete action space starting at 0).
        sizes: values (``index``) or intervals (``bins``) per component of the raw observation.
        starts: smallest value per component (``index`` only).
        low: lower edge per dimension (``bins`` only).
        high: upper edge per dimension (``bins`` only).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["index", "bins"]
    n_actions: int = Field(gt=0)
    sizes: list[int] = Field(min_length=1)
    starts: list[int] = Field(default_factory=list)
    low: list[float] = Field(default_factory=list)
    high: list[float] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> QTableSpec:
        k = len(self.sizes)
        if any(n < 1 for n in self.sizes):
            raise ValueError(f"sizes must be positive, got {self.sizes}")
        if self.kind == "index" and (len(self.starts) != k or self.low or self.high):
            raise ValueError("an index table has one start per component and no edges")
        if self.kind == "bins":
            if self.starts or len(self.low) != k or len(self.high) != k:
                raise ValueError("a binned table has one low and one high edge per dimension and no starts")
            if not all(
                math.isfinite(lo) and math.isfinite(hi) and hi > lo
                for lo, hi in zip(self.low, self.high, strict=True)
            ):
                raise ValueError("binned edges must be finite with high > low")
        if self.n_states * self.n_actions > MAX_TABLE_ENTRIES:
            raise ValueError(
                f"a table of {self.n_states} states x {self.n_actions} actions "
                f"exceeds {MAX_TABLE_ENTRIES} entries"
            )
        return self

    @property
    def raw_dim(self) -> int:
        """Width of a raw observation vector."""
        return len(self.sizes)

    @property
    def n_states(self) -> int:
        """Rows of the table: the product of ``sizes``."""
        return math.prod(self.sizes)

    @property
    def shape(self) -> tuple[int, int]:
        """(n_states, n_actions)."""
        return self.n_states, self.n_actions

    def states(self, raw: np.ndarray) -> np.ndarray:
        """Row of each raw observation: raw [B, raw_dim] (or [B] when raw_dim is 1) -> [B] int64.

        Raises:
            ValueError: wrong width, or (``index``) a value that is not one of its component's.
        """
        x = np.asarray(raw)
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        if x.shape[1:] != (self.raw_dim,):
            raise ValueError(f"raw observations must be [B, {self.raw_dim}], got shape {np.shape(raw)}")
        sizes = np.asarray(self.sizes, dtype=np.int64)
        if self.kind == "index":
            return mixed_radix_index(x, sizes, np.asarray(self.starts, dtype=np.int64))
        return mixed_radix_index(bin_indices(x, sizes, np.asarray(self.low), np.asarray(self.high)), sizes)

    @classmethod
    def from_spaces(
        cls,
        observation_space: Any,
        action_space: Any,
        bins: int | list[int] | None = None,
        low: list[float] | None = None,
        high: list[float] | None = None,
    ) -> QTableSpec:
        """The table a gymnasium env's spaces and the config's discretisation call for.

        Raises:
            UnknownEnvError: naming the config field at fault: ``env_id`` (actions that are not a
                Discrete starting at 0, an unsupported observation space, a table too large), ``bins``
                (missing for a Box, given for discrete observations, or of the wrong length),
                ``low`` / ``high`` (wrong length, or an infinite bound of the space not given).
        """
        from gymnasium import spaces  # local: keeps the import of this module light

        from ftg_common.envs.encoding import observation_encoding

        if not isinstance(action_space, spaces.Discrete) or int(action_space.start) != 0:
            raise UnknownEnvError(
                f"Q-learning needs a Discrete action space starting at 0; this env has {action_space!r}"
            )
        n_actions = int(action_space.n)
        try:
            _, enc = observation_encoding(observation_space)
        except ValueError as exc:
            raise UnknownEnvError(f"Q-learning cannot index these observations: {exc}") from None
        if enc.kind != "box":
            if bins is not None or low is not None or high is not None:
                field = "bins" if bins is not None else ("low" if low is not None else "high")
                raise UnknownEnvError(
                    f"{observation_space!r} observations are their own table index: "
                    "leave bins, low and high unset",
                    field,
                )
            sizes = list(enc.sizes) if enc.kind == "onehot" else [2] * enc.raw_dim
            starts = list(enc.starts) if enc.kind == "onehot" else [0] * enc.raw_dim
            return _checked(kind="index", n_actions=n_actions, sizes=sizes, starts=starts)
        return _binned(observation_space, n_actions, bins, low, high)


def _checked(**fields: Any) -> QTableSpec:
    try:
        return QTableSpec(**fields)
    except ValueError as exc:  # pydantic's ValidationError is one: the table is too large
        raise UnknownEnvError(
            f"Q-learning table: {exc}", "bins" if fields["kind"] == "bins" else "env_id"
        ) from None


def _edges(given: list[float] | None, space_edge: np.ndarray, name: str, dim: int) -> list[float]:
    """Per-dimension edges: the config's when given, else the space's, which must then be finite."""
    if given is not None:
        if len(given) != dim:
            raise UnknownEnvError(
                f"{name} has {len(given)} values; the observations have {dim} dimensions", name
            )
        return [float(v) for v in given]
    infinite = [d for d in range(dim) if not np.isfinite(space_edge[d])]
    if infinite:
        raise UnknownEnvError(
            f"the observation space's {name} bound is infinite in dimension(s) {infinite}: "
            f"give {name} for every dimension explicitly",
            name,
        )
    return [float(v) for v in space_edge]


def _binned(
    space: Any,
    n_actions: int,
    bins: int | list[int] | None,
    low: list[float] | None,
    high: list[float] | None,
) -> QTableSpec:
    """The binned table of a Box observation space."""
    dim = int(math.prod(space.shape))
    if bins is None:
        raise UnknownEnvError(f"Box observations ({space!r}) need bins: intervals per dimension", "bins")
    counts = [bins] * dim if isinstance(bins, int) else list(bins)
    if len(counts) != dim:
        raise UnknownEnvError(
            f"bins has {len(counts)} counts; the observations have {dim} dimensions", "bins"
        )
    lo = _edges(low, np.asarray(space.low, dtype=np.float64).reshape(-1), "low", dim)
    hi = _edges(high, np.asarray(space.high, dtype=np.float64).reshape(-1), "high", dim)
    bad = [d for d in range(dim) if not hi[d] > lo[d]]
    if bad:
        raise UnknownEnvError(f"high is not above low in dimension(s) {bad}", "high")
    return _checked(kind="bins", n_actions=n_actions, sizes=counts, low=lo, high=hi)


class QTablePolicy(QPolicy):
    """The Q-table of a version, acting as a :class:`QPolicy` does: Q(s, .) is a row lookup.

    Args:
        spec: how observations index the table.
        table: [S, A] the table.
    """

    def __init__(self, spec: QTableSpec, table: np.ndarray) -> None:
        # No network to build: only q_values differs from the Q-network's policy.
        if tuple(table.shape) != spec.shape:
            raise ValueError(f"table has shape {table.shape}, spec says {spec.shape}")
        self.table_spec = spec
        self.table = table

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q(s, .) for raw obs [B, raw_dim]: [B, n_actions] (the table's dtype)."""
        rows: np.ndarray = self.table[self.table_spec.states(obs)]
        return rows


def qtable_policy_bytes(spec: QTableSpec, weights: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The policy file of a Q-learning version: the table, its spec as metadata."""
    table = weights.get(QTABLE_KEY)
    if table is None or tuple(table.shape) != spec.shape:
        raise ValueError(f"Q-learning weights do not hold a {spec.shape} {QTABLE_KEY!r}")
    return encode(
        {QTABLE_KEY: np.asarray(table, dtype=np.float64)},
        {**metadata, QTABLE_SPEC_METADATA_KEY: spec.model_dump_json()},
    )


def read_qtable(store: ObjectStore, run_id: str, version: int) -> tuple[QTableSpec, np.ndarray]:
    """The table of a Q-learning version and its spec, from the version's policy file.

    Raises:
        KeyNotFoundError: the version has no policy file.
        CorruptObjectError: the policy file is damaged, or is not a Q-table's.
    """
    key, spec, tensors = read_spec_and_tensors(
        store, run_id, version, QTableSpec, QTABLE_SPEC_METADATA_KEY, "a Q-table"
    )
    table = tensors.get(QTABLE_KEY)
    if set(tensors) != {QTABLE_KEY} or table is None or tuple(table.shape) != spec.shape:
        raise CorruptObjectError(key, "tensors do not match the Q-table spec")
    return spec, table


def load_qtable_policy(store: ObjectStore, run_id: str, version: int) -> QTablePolicy:
    """The greedy / epsilon-greedy policy of a Q-learning version (numpy only)."""
    return QTablePolicy(*read_qtable(store, run_id, version))
