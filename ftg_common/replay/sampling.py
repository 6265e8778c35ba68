"""Which transitions an update samples, and which chunks hold them: pure functions, no I/O.

An iteration's sample is a function of (run seed, iteration, window) only, so a retried or resumed
update draws the same minibatches; the chunks to read follow from the indices and the index entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ftg_common.envs.seeding import REPLAY_SAMPLE
from ftg_common.errors import Conflict
from ftg_common.meta.base import ReplayChunkRecord

__all__ = ["REPLAY_SAMPLE", "ReadPlan", "evict_before", "plan_reads", "sample_indices", "window"]


def window(upto: int, capacity: int) -> tuple[int, int]:
    """The global indices [lo, hi) the buffer holds once ``upto`` transitions were appended (FIFO).

    Args:
        upto: transitions appended so far (the next global index).
        capacity: the buffer's capacity in transitions.

    Returns:
        (max(0, upto - capacity), upto).
    """
    if upto < 0 or capacity <= 0:
        raise ValueError(f"window needs upto >= 0 and capacity > 0, got {upto}, {capacity}")
    return max(0, upto - capacity), upto


def sample_indices(
    seed: int, iteration: int, lo: int, hi: int, n_batches: int, batch_size: int
) -> np.ndarray:
    """Uniform draws with replacement from [lo, hi), as SB3's replay buffer samples.

    The generator is seeded by ``SeedSequence([seed, REPLAY_SAMPLE, iteration])``, so the indices are a
    function of these arguments alone.

    Returns:
        [n_batches, batch_size] int64 global transition indices.

    Raises:
        ValueError: the window is empty.
    """
    if hi <= lo:
        raise ValueError(f"cannot sample from an empty replay window [{lo}, {hi})")
    rng = np.random.default_rng(np.random.SeedSequence([seed, REPLAY_SAMPLE, iteration]))
    return rng.integers(lo, hi, size=(n_batches, batch_size), dtype=np.int64)


@dataclass(frozen=True)
class ReadPlan:
    """What a sample needs from the object store.

    Attributes:
        records: the index entries of the chunks to read, ascending, each needed by some index.
        rows: same shape as the indices: the row of each index in the concatenation of those chunks.
    """

    records: tuple[ReplayChunkRecord, ...]
    rows: np.ndarray

    @property
    def chunk_ids(self) -> list[int]:
        """The ids of the chunks to read."""
        return [r.chunk for r in self.records]


def _check_contiguous(records: Sequence[ReplayChunkRecord]) -> None:
    for before, after in zip(records, records[1:], strict=False):
        if after.chunk != before.chunk + 1 or after.first != before.first + before.size:
            raise Conflict(
                f"replay index is not contiguous: chunk {before.chunk} ends at {before.last}, "
                f"chunk {after.chunk} starts at {after.first}",
                "replay",
            )


def plan_reads(indices: np.ndarray, records: Sequence[ReplayChunkRecord], lo: int, hi: int) -> ReadPlan:
    """The chunks holding ``indices`` and where each index lands in their concatenation.

    Args:
        indices: any shape of global transition indices, all in [lo, hi).
        records: the indexed chunks, ascending by id (``MetaStore.replay_chunks``).
        lo: first index of the sampling window.
        hi: end of the window (exclusive).

    Returns:
        The plan: only chunks that some index falls in are listed.

    Raises:
        Conflict: the index does not cover [lo, hi): transitions the window needs were evicted or were
            never appended. Sampling never falls back to other transitions.
    """
    records = sorted(records, key=lambda r: r.chunk)
    _check_contiguous(records)
    covered = (records[0].first, records[-1].last + 1) if records else (0, 0)
    if hi > lo and not (covered[0] <= lo and hi <= covered[1]):
        raise Conflict(
            f"replay window [{lo}, {hi}) is not covered by the indexed chunks, which hold "
            f"[{covered[0]}, {covered[1]}): transitions were evicted or not appended yet",
            "replay",
        )
    flat = np.asarray(indices, dtype=np.int64).ravel()
    if flat.size and (flat.min() < lo or flat.max() >= hi):
        raise ValueError(f"sample indices fall outside the window [{lo}, {hi})")
    firsts = np.fromiter((r.first for r in records), dtype=np.int64, count=len(records))
    # Position of the chunk holding each index: the last chunk whose first index is <= it.
    pos = np.searchsorted(firsts, flat, side="right") - 1
    used = np.unique(pos)
    chosen = tuple(records[int(p)] for p in used)
    # Row of each chunk's first transition once the chosen chunks are concatenated.
    sizes = np.fromiter((r.size for r in chosen), dtype=np.int64, count=len(chosen))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    slot = np.searchsorted(used, pos)
    rows = starts[slot] + (flat - firsts[pos])
    return ReadPlan(records=chosen, rows=rows.reshape(np.shape(indices)))


def evict_before(records: Sequence[ReplayChunkRecord], lo: int, next_chunk: int) -> int:
    """The lowest chunk id to keep when the window starts at ``lo``: every earlier chunk is out of it.

    Args:
        records: the indexed chunks.
        lo: first global index of the window.
        next_chunk: the head's next chunk id (what to answer when every chunk is out of the window).
    """
    keep = [r.chunk for r in records if r.last >= lo]
    return min(keep) if keep else next_chunk
