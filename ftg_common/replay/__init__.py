"""The replay buffer of off-policy runs, kept in the object store with its index in the metadata store.

- :mod:`.transitions` — the :class:`Transitions` a chunk holds and how a trajectory shard becomes one.
- :mod:`.sampling` — pure functions: the FIFO window, the seeded sample indices of an iteration and
  which chunks (and rows) those indices fall in.
- :mod:`.buffer` — the I/O edge: idempotent append, eviction, and reading exactly the chunks a sample
  needs, each checked against the digest its index entry recorded.

Layout: chunk ``c`` is ``runs/<run>/replay/<c:08d>.safetensors`` (:func:`ftg_common.layout.replay_chunk_key`),
one appended shard each, its transitions numbered globally in append order. The index
(:class:`~ftg_common.meta.base.ReplayChunkRecord` per chunk, and a head) lives in the metadata store and
advances by compare-and-set, like the policy version.

Capacity: the buffer holds the last ``capacity`` transitions *for sampling* exactly (a FIFO window over
global indices, like SB3's ring buffer); storage is released a chunk at a time, once every transition of
a chunk has left the window, so up to one chunk's worth beyond capacity may stay stored.
"""

from ftg_common.replay.buffer import Appended, ChunkCache, MissingChunkError, ReplayBuffer, ReplaySample
from ftg_common.replay.sampling import REPLAY_SAMPLE, ReadPlan, plan_reads, sample_indices, window
from ftg_common.replay.transitions import Transitions, transitions_from_shard

__all__ = [
    "REPLAY_SAMPLE",
    "Appended",
    "ChunkCache",
    "MissingChunkError",
    "ReadPlan",
    "ReplayBuffer",
    "ReplaySample",
    "Transitions",
    "plan_reads",
    "sample_indices",
    "transitions_from_shard",
    "window",
]
