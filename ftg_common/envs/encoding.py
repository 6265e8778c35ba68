"""Observation encodings: what the policy's input layer sees for each gymnasium observation space.

numpy only at import (gymnasium is imported by :func:`observation_encoding` alone), so the updater
and the policy's numpy inference can encode stored observations without it.

A shard stores each observation as its *raw vector*, ``np.asarray(obs, float32).reshape(-1)``: the
flattened Box, the index of a Discrete, the indices of a Tuple of Discrete or of a MultiDiscrete. The
encoding maps raw vectors [B, raw_dim] to the policy input [B, dim]:

* Box: flattened, unchanged (dim = prod(shape));
* MultiBinary: the bits as floats (dim = n), as SB3 does;
* Discrete(n, start): one-hot of ``obs - start`` (dim = n), as SB3's ``preprocess_obs``;
* MultiDiscrete(nvec, start) and Tuple(Discrete, ...): the one-hots of the components, concatenated
  (dim = sum of the sizes); SB3 does this for MultiDiscrete, and a Tuple of Discrete is the same thing.

Raw vectors keep trajectories small (Taxi: 1 float per step instead of 500) and exact (indices are
integers far below 2**24, so float32 holds them exactly).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["ObservationEncoding", "observation_encoding", "raw_observation"]

Kind = Literal["box", "binary", "onehot"]


@dataclass(frozen=True)
class ObservationEncoding:
    """How raw observation vectors become the policy input.

    Attributes:
        kind: ``box`` (identity), ``binary`` (bits as floats) or ``onehot`` (concatenated one-hots).
        raw_dim: width of a raw observation vector.
        dim: width of the encoded vector (the policy's ``obs_dim``).
        sizes: categories of each one-hot component (``onehot`` only).
        starts: smallest value of each component (``onehot`` only).
    """

    kind: Kind
    raw_dim: int
    dim: int
    sizes: tuple[int, ...] = ()
    starts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "onehot":
            if not (len(self.sizes) == len(self.starts) == self.raw_dim) or sum(self.sizes) != self.dim:
                raise ValueError(f"inconsistent one-hot encoding: {self}")
            if any(n <= 0 for n in self.sizes):
                raise ValueError(f"one-hot components need at least one category, got sizes {self.sizes}")
        elif self.raw_dim != self.dim or self.sizes or self.starts:
            raise ValueError(f"a {self.kind} encoding keeps the width and has no sizes: {self}")

    @property
    def identity(self) -> bool:
        """True when encoding only casts to float32 (Box and MultiBinary)."""
        return self.kind != "onehot"

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Raw vectors [B, raw_dim] (or [B] when raw_dim is 1) -> policy input [B, dim] float32.

        Raises:
            ValueError: wrong width, or (one-hot) a value that is not an integer in its component's
                range: an out-of-range index is an error, never an all-zero row.
        """
        x = np.asarray(raw)
        if x.ndim == 1 and self.raw_dim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.raw_dim:
            raise ValueError(f"raw observations must be [B, {self.raw_dim}], got shape {np.shape(raw)}")
        if self.identity:
            return x.astype(np.float32)
        return self._one_hot(x)

    __call__ = encode

    def _one_hot(self, x: np.ndarray) -> np.ndarray:
        index = np.rint(x).astype(np.int64)
        if not np.array_equal(index, x):
            raise ValueError("one-hot observations must be whole numbers")
        index -= np.asarray(self.starts, dtype=np.int64)
        sizes = np.asarray(self.sizes, dtype=np.int64)
        bad = (index < 0) | (index >= sizes)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"observation component {col} = {x[row, col]} is outside "
                f"[{self.starts[col]}, {self.starts[col] + self.sizes[col]})"
            )
        # Column of component k's category c: the widths of the components before k, plus c.
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        out = np.zeros((x.shape[0], self.dim), dtype=np.float32)
        out[np.arange(x.shape[0])[:, None], offsets + index] = 1.0
        return out

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """(component [dim] int64, raw value [dim] float32) of every encoded column.

        Column j of a one-hot encoding is 1 exactly when raw component ``component[j]`` equals
        ``value[j]``: what an exported graph computes with one gather and one comparison. An identity
        encoding maps column j to component j (its values are meaningless and left 0).
        """
        if self.identity:
            return np.arange(self.dim, dtype=np.int64), np.zeros(self.dim, dtype=np.float32)
        component = np.repeat(np.arange(self.raw_dim, dtype=np.int64), self.sizes)
        value = np.concatenate([np.arange(n) + s for n, s in zip(self.sizes, self.starts, strict=True)])
        return component, value.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The encoding as plain JSON-ready values (``kind``, ``raw_dim``, ``dim``, ``sizes``, ``starts``)."""
        data = asdict(self)
        data["sizes"], data["starts"] = list(self.sizes), list(self.starts)
        return data

    def to_json(self) -> str:
        """Canonical JSON, e.g. for safetensors metadata next to the policy spec."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ObservationEncoding:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        return cls(
            kind=data["kind"],
            raw_dim=int(data["raw_dim"]),
            dim=int(data["dim"]),
            sizes=tuple(int(n) for n in data.get("sizes", ())),
            starts=tuple(int(s) for s in data.get("starts", ())),
        )


def _one_hot_parts(space: Any) -> tuple[list[int], list[int]] | None:
    """(sizes, starts) of a Discrete, MultiDiscrete or Tuple of Discrete; None for other spaces."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return [int(space.n)], [int(space.start)]
    if isinstance(space, spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise ValueError(
                f"unsupported observation space {space!r}: only a 1-D MultiDiscrete is supported"
            )
        return [int(n) for n in space.nvec], [int(s) for s in space.start]
    if isinstance(space, spaces.Tuple):
        items = [s for s in space.spaces if isinstance(s, spaces.Discrete)]
        if not items or len(items) != len(space.spaces):
            return None
        return [int(s.n) for s in items], [int(s.start) for s in items]
    return None


def observation_encoding(space: Any) -> tuple[int, ObservationEncoding]:
    """(encoded width, encoding) of a gymnasium observation space.

    Args:
        space: Box, MultiBinary, Discrete, MultiDiscrete or a Tuple of Discrete.

    Raises:
        ValueError: any other space (Dict, Text, Graph, a Tuple holding a non-Discrete, ...), naming it.
    """
    from gymnasium import spaces

    parts = _one_hot_parts(space)
    if parts is not None:
        sizes, starts = parts
        enc = ObservationEncoding("onehot", len(sizes), sum(sizes), tuple(sizes), tuple(starts))
    elif isinstance(space, spaces.Box | spaces.MultiBinary):
        width = int(math.prod(space.shape))
        enc = ObservationEncoding("box" if isinstance(space, spaces.Box) else "binary", width, width)
    else:
        raise ValueError(
            f"unsupported observation space {space!r}: supported are Box, MultiBinary, Discrete, "
            "MultiDiscrete and Tuple of Discrete"
        )
    return enc.dim, enc


def raw_observation(obs: Any) -> np.ndarray:
    """One gymnasium observation as its raw vector [raw_dim] float32 (what a trajectory stores)."""
    return np.asarray(obs, dtype=np.float32).reshape(-1)
