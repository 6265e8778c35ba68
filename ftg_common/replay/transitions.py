"""Transitions as the replay buffer stores them (numpy only: the rollout path may import this)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ftg_common.errors import BadRequest, CorruptObjectError
from ftg_common.tensorio import decode, encode
from ftg_common.transition_arrays import TransitionArrays

__all__ = ["CHUNK_FORMAT", "Transitions", "transitions_from_shard"]

CHUNK_FORMAT = "ftg.replay.v1"
# Stored as uint8 (safetensors BOOL readers differ across libraries), read back as bool.
_FLAGS = ("terminated", "truncated")


@dataclass(frozen=True)
class Transitions(TransitionArrays):
    """N transitions, one row each; all arrays share the leading dimension N.

    ``terminated`` and ``truncated`` are kept apart: the TD target bootstraps from ``next_obs`` unless
    the episode *terminated*; a time-limit truncation still bootstraps (SB3's
    ``handle_timeout_termination``). Where an episode ended, ``next_obs`` is its final observation, not
    the reset one.

    Attributes:
        obs: [N, obs_dim] float32 observation the action was taken in.
        actions: [N] int64 discrete action.
        rewards: [N] float32.
        next_obs: [N, obs_dim] float32 observation after the step.
        terminated: [N] bool, the episode reached a terminal state.
        truncated: [N] bool, the episode was cut (time limit) without terminating.
        behaviour_probs: [N] float32 mu(a|s), the probability the collecting policy gave the action
            (what off-policy evaluation weighs by).
    """

    def __post_init__(self) -> None:
        n = self.obs.shape[0]
        for f in fields(self):
            arr = getattr(self, f.name)
            if arr.shape[:1] != (n,):
                raise ValueError(f"transitions: {f.name} has {arr.shape[:1]} rows, obs has {n}")
        if self.obs.ndim != 2 or self.next_obs.shape != self.obs.shape:
            raise ValueError(
                f"transitions: obs {self.obs.shape} and next_obs {self.next_obs.shape} must be [N, d]"
            )

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def take(self, rows: np.ndarray) -> Transitions:
        """The rows ``rows`` ([K] int64) as new transitions (copies)."""
        return Transitions(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays as a chunk object stores them (flags as uint8)."""
        out = {f.name: np.ascontiguousarray(getattr(self, f.name)) for f in fields(self)}
        for name in _FLAGS:
            out[name] = out[name].astype(np.uint8)
        return out

    @classmethod
    def concat(cls, parts: list[Transitions]) -> Transitions:
        """The rows of ``parts`` one after the other."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


def encode_chunk(tr: Transitions, source: str) -> bytes:
    """The bytes of a chunk object: a pure function of the transitions and their source."""
    return encode(tr.tensors(), {"format": CHUNK_FORMAT, "source": source})


def decode_chunk(data: bytes, key: str, size: int) -> Transitions:
    """The transitions of a chunk object, its own digest and its shape checked.

    Raises:
        CorruptObjectError: damaged bytes, not a replay chunk, or not ``size`` rows.
    """
    arrays, meta = decode(data, key, require_digest=True)
    if meta.get("format") != CHUNK_FORMAT:
        raise CorruptObjectError(key, f"not a replay chunk (format {meta.get('format')!r})")
    try:
        tr = Transitions(
            **{
                f.name: arrays[f.name].astype(bool) if f.name in _FLAGS else arrays[f.name]
                for f in fields(Transitions)
            }
        )
    except (KeyError, ValueError) as exc:
        raise CorruptObjectError(key, f"not a replay chunk: {exc}") from None
    if len(tr) != size:
        raise CorruptObjectError(key, f"holds {len(tr)} transitions, its index entry says {size}")
    return tr


def _flat(arr: Any, name: str, t: int, m: int) -> np.ndarray:
    a = np.asarray(arr)
    if a.shape[:2] != (t, m):
        raise BadRequest(f"trajectory {name} has shape {a.shape}, expected [{t}, {m}, ...]", name)
    return a.reshape(t * m, *a.shape[2:])


def transitions_from_shard(tensors: dict[str, np.ndarray]) -> Transitions:
    """Flatten a time-major off-policy trajectory shard into transitions (row = t * M + env).

    Args:
        tensors: the shard's arrays: obs [T, M, d], next_obs [T, M, d] (final observation where an
            episode ended), actions [T, M] int, rewards [T, M], terminated [T, M], truncated [T, M],
            behaviour_probs [T, M].

    Raises:
        BadRequest: a key is missing or an array has the wrong leading shape (names the key).
    """
    names = [f.name for f in fields(Transitions)]
    missing = [n for n in names if n not in tensors]
    if missing:
        raise BadRequest(f"trajectory shard lacks {missing} (an off-policy shard needs {names})", missing[0])
    obs = np.asarray(tensors["obs"])
    if obs.ndim != 3:
        raise BadRequest(f"trajectory obs has shape {obs.shape}, expected [T, M, obs_dim]", "obs")
    t, m = obs.shape[:2]
    return Transitions(
        obs=_flat(obs, "obs", t, m).astype(np.float32),
        actions=_flat(tensors["actions"], "actions", t, m).astype(np.int64),
        rewards=_flat(tensors["rewards"], "rewards", t, m).astype(np.float32),
        next_obs=_flat(tensors["next_obs"], "next_obs", t, m).astype(np.float32),
        terminated=_flat(tensors["terminated"], "terminated", t, m).astype(bool),
        truncated=_flat(tensors["truncated"], "truncated", t, m).astype(bool),
        behaviour_probs=_flat(tensors["behaviour_probs"], "behaviour_probs", t, m).astype(np.float32),
    )
