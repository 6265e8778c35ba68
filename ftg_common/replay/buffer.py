"""The replay buffer's I/O edge: append, evict and sample through the object and metadata stores.

Append (one chunk per trajectory shard, in the caller's order):

1. encode the chunk: its bytes are a pure function of the transitions and their source;
2. if the source is already indexed, this is a retry: rewrite the identical bytes if the chunk is still
   indexed (repairing a crash between steps 3 and 4) and answer the recorded chunk; other content for
   the same source is a :class:`~ftg_common.errors.Conflict`;
3. compare-and-set the index entry at the head (``MetaStore.append_replay_chunk``);
4. write the object. Only the winner of step 3 writes a key, so concurrent appends never overwrite
   each other's chunks.

Evict: drop the index entries of chunks wholly outside the FIFO window, then delete every stored chunk
below the oldest indexed one (also those a crash between the two steps left behind).

Sample: the indices are drawn from (run seed, iteration) over the window the iteration saw
(:mod:`.sampling`); only the chunks they fall in are read, each checked against the SHA-256 its index
entry recorded. A chunk that is missing is a :class:`MissingChunkError` (409), a damaged one a
:class:`~ftg_common.errors.CorruptObjectError` (422); both name the key, and nothing is resampled.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ftg_common import layout
from ftg_common.errors import BadRequest, Conflict, CorruptObjectError
from ftg_common.meta.base import MetaStore, ReplayChunkRecord
from ftg_common.replay.sampling import ReadPlan, evict_before, plan_reads, sample_indices, window
from ftg_common.replay.transitions import Transitions, decode_chunk, encode_chunk
from ftg_common.store.base import KeyNotFoundError, ObjectStore
from ftg_common.store.integrity import object_digest

__all__ = ["Appended", "ChunkCache", "MissingChunkError", "ReplayBuffer", "ReplaySample"]

# Attempts of one append that lost the compare-and-set to a concurrent append of other sources.
_APPEND_ATTEMPTS = 8


def chunk_id_of(run_id: str, key: str) -> int | None:
    """The chunk id of a key :func:`ftg_common.layout.replay_chunk_key` built for ``run_id``, else None."""
    prefix, suffix = layout.replay_prefix(run_id) + "/", ".safetensors"
    if not (key.startswith(prefix) and key.endswith(suffix)):
        return None
    digits = key[len(prefix) : -len(suffix)]
    return int(digits) if len(digits) == 8 and digits.isdigit() else None


class MissingChunkError(Conflict):
    """A chunk the replay index lists is absent from the object store (409, names the key)."""

    def __init__(self, key: str, chunk: int) -> None:
        super().__init__(
            f"replay chunk {chunk} is indexed but missing from the object store: {key} "
            "(re-run the append of its source, or resume the run)",
            "replay",
        )
        self.key = key
        self.chunk = chunk


@dataclass(frozen=True)
class Appended:
    """The outcome of one append.

    Attributes:
        chunk: the chunk id the source is stored as.
        appended: True if this call appended it; False if it was already there (a retry).
    """

    chunk: int
    appended: bool


@dataclass
class ChunkCache:
    """Decoded chunks of warm invocations, keyed by (key, digest): a chunk never changes once indexed.

    Attributes:
        max_bytes: bound on the cached arrays; the least recently used chunks go first.
    """

    max_bytes: int = 256 * 2**20
    _items: OrderedDict[tuple[str, str], Transitions] = field(default_factory=OrderedDict)
    _bytes: int = 0

    @staticmethod
    def _size(tr: Transitions) -> int:
        return sum(a.nbytes for a in tr.tensors().values())

    def get(self, key: str, digest: str) -> Transitions | None:
        """The cached chunk, or None."""
        tr = self._items.get((key, digest))
        if tr is not None:
            self._items.move_to_end((key, digest))
        return tr

    def put(self, key: str, digest: str, tr: Transitions) -> None:
        """Cache a chunk read and checked, evicting the least recently used beyond ``max_bytes``."""
        if (key, digest) in self._items:
            return
        self._items[(key, digest)] = tr
        self._bytes += self._size(tr)
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= self._size(old)


@dataclass(frozen=True)
class ReplaySample:
    """The minibatches of one update.

    Attributes:
        indices: [n_batches, batch_size] int64 global transition indices.
        transitions: [n_batches * batch_size] rows, batch after batch.
        chunks: ids of the chunks read.
        window: [lo, hi) the indices were drawn from.
    """

    indices: np.ndarray
    transitions: Transitions
    chunks: list[int]
    window: tuple[int, int]

    @property
    def n_batches(self) -> int:
        """Minibatches in the sample."""
        return int(self.indices.shape[0])

    def batch(self, g: int) -> Transitions:
        """Minibatch ``g``: [batch_size] rows."""
        b = self.indices.shape[1]
        return self.transitions.take(np.arange(g * b, (g + 1) * b))


class ReplayBuffer:
    """A run's replay buffer: chunks in ``store``, index in ``meta``.

    Args:
        store: the object store.
        meta: the metadata store (the run must exist).
        run_id: the run.
        capacity: transitions the buffer holds (``buffer_size``).
        cache: decoded chunks shared across calls (optional).
    """

    def __init__(
        self,
        store: ObjectStore,
        meta: MetaStore,
        run_id: str,
        capacity: int,
        cache: ChunkCache | None = None,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.store, self.meta, self.run_id = store, meta, run_id
        self.capacity = capacity
        self.cache = cache

    def key(self, chunk: int) -> str:
        """Object key of chunk ``chunk``."""
        return layout.replay_chunk_key(self.run_id, chunk)

    # --- append ----------------------------------------------------------------------------------
    def append(self, source: str, tr: Transitions) -> Appended:
        """Append one shard's transitions as the next chunk; appending the same source again is a no-op.

        Args:
            source: what the transitions came from (its trajectory key); identifies a retry.
            tr: the transitions, in the order they get their global indices.

        Raises:
            Conflict: ``source`` was appended before with other content, or the head kept moving.
            BadRequest: ``tr`` is empty.
        """
        if len(tr) == 0:
            raise BadRequest(f"nothing to append from {source}: 0 transitions", "source")
        data = encode_chunk(tr, source)
        digest = object_digest(data)
        for _ in range(_APPEND_ATTEMPTS):
            done = self._already_appended(source, digest, data)
            if done is not None:
                return done
            head = self.meta.replay_head(self.run_id)
            record = ReplayChunkRecord(head.next_chunk, head.next_first, len(tr), digest, source)
            if self.meta.append_replay_chunk(self.run_id, record):
                self.store.put_bytes(self.key(record.chunk), data)
                return Appended(record.chunk, appended=True)
        raise Conflict(f"replay head of run {self.run_id} kept moving; {source} was not appended", "replay")

    def _already_appended(self, source: str, digest: str, data: bytes) -> Appended | None:
        chunk = self.meta.replay_source_chunk(self.run_id, source)
        if chunk is None:
            return None
        live = {r.chunk: r for r in self.meta.replay_chunks(self.run_id)}
        record = live.get(chunk)
        if record is None:  # appended and evicted since: nothing to repair
            return Appended(chunk, appended=False)
        if record.digest != digest:
            raise Conflict(
                f"{source} was appended as replay chunk {chunk} with other content "
                f"(sha256 {record.digest}, now {digest})",
                "source",
            )
        # Identical bytes: repairs a crash between the index entry and the object write.
        self.store.put_bytes(self.key(chunk), data)
        return Appended(chunk, appended=False)

    # --- evict -----------------------------------------------------------------------------------
    def evict(self) -> list[int]:
        """Release every chunk wholly outside the window of the last ``capacity`` transitions.

        Returns:
            The chunk ids whose index entries this call dropped.
        """
        head = self.meta.replay_head(self.run_id)
        lo, _ = window(head.next_first, self.capacity)
        before = evict_before(self.meta.replay_chunks(self.run_id), lo, head.next_chunk)
        dropped = self.meta.evict_replay_chunks(self.run_id, before)
        # Index first, objects second: a reader never finds an indexed chunk deleted by eviction.
        for key in self.store.list(layout.replay_prefix(self.run_id)):
            chunk = chunk_id_of(self.run_id, key)
            if chunk is not None and chunk < before:
                self.store.delete(key)
        return dropped

    # --- read ------------------------------------------------------------------------------------
    def read_chunk(self, record: ReplayChunkRecord) -> Transitions:
        """The transitions of an indexed chunk, checked against its index entry.

        Raises:
            MissingChunkError: the object is absent.
            CorruptObjectError: its bytes do not hash to the recorded digest, or are damaged.
        """
        key = self.key(record.chunk)
        if self.cache is not None:
            hit = self.cache.get(key, record.digest)
            if hit is not None:
                return hit
        try:
            data = self.store.get_bytes(key)
        except KeyNotFoundError:
            raise MissingChunkError(key, record.chunk) from None
        actual = object_digest(data)
        if actual != record.digest:
            raise CorruptObjectError(
                key, f"sha256 {actual} differs from {record.digest} recorded in the replay index"
            )
        tr = decode_chunk(data, key, record.size)
        if self.cache is not None:
            self.cache.put(key, record.digest, tr)
        return tr

    def read(self, plan: ReadPlan) -> Transitions:
        """The rows of a read plan: its chunks read (and checked), then gathered."""
        parts = [self.read_chunk(r) for r in plan.records]
        if len(parts) == 1:
            return parts[0].take(plan.rows.ravel())
        return Transitions.concat(parts).take(plan.rows.ravel())

    def sample(self, seed: int, iteration: int, upto: int, n_batches: int, batch_size: int) -> ReplaySample:
        """The minibatches of the update of ``iteration``: reproducible from (seed, iteration, upto).

        Args:
            seed: the run seed.
            iteration: the iteration being trained on.
            upto: transitions appended up to and including this iteration's (fixes the window).
            n_batches: gradient steps of the update.
            batch_size: rows per minibatch.

        Raises:
            Conflict: the window's transitions are not all indexed (evicted, or not appended yet).
            MissingChunkError: a sampled chunk's object is absent.
            CorruptObjectError: a sampled chunk is damaged.
        """
        lo, hi = window(upto, self.capacity)
        indices = sample_indices(seed, iteration, lo, hi, n_batches, batch_size)
        plan = plan_reads(indices, self.meta.replay_chunks(self.run_id), lo, hi)
        return ReplaySample(indices, self.read(plan), plan.chunk_ids, (lo, hi))
