"""Buffered writes for one checkpoint of one partition.

Reads see the transaction's own writes first; nothing reaches RocksDB until the checkpoint
has put every changed key on the changelog and the broker acknowledged it. Several writes
to one key in a batch coalesce into one put and one changelog record.

`writes` is a plain dict (insertion order): puts and point reads are the hot path, range
reads are rare (a prune that has something to prune, a history read, the wake-up index).
The sorted view range reads need is built on the first range read of the batch and then
kept up to date with `bisect.insort`, so a transaction that never ranges never sorts, and
one that does stays O(log n + hits) per read.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator

from engage_stream.state.partition_store import PartitionStore

_DELETED = None
_ABSENT = object()


class Transaction:
    __slots__ = ("store", "writes", "_sorted")

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.writes: dict[bytes, bytes | None] = {}
        self._sorted: list[bytes] | None = None  # keys of `writes`, once a range read needs it

    def get(self, key: bytes) -> bytes | None:
        v = self.writes.get(key, _ABSENT)
        if v is _ABSENT:
            return self.store.get(key)
        return v  # type: ignore[return-value]

    def put(self, key: bytes, value: bytes) -> None:
        if self._sorted is not None and key not in self.writes:
            insort(self._sorted, key)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        if self._sorted is not None and key not in self.writes:
            insort(self._sorted, key)
        self.writes[key] = _DELETED

    def range(
        self, start: bytes, end: bytes, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Merged view of stored and buffered keys in [start, end)."""
        keys = self._sorted
        if keys is None:
            keys = self._sorted = sorted(self.writes)
        lo, hi = bisect_left(keys, start), bisect_left(keys, end)
        stored = self.store.range_reverse(start, end) if reverse else self.store.range(start, end)
        if lo == hi:
            yield from stored
            return
        pending = keys[hi - 1 : lo - 1 if lo else None : -1] if reverse else keys[lo:hi]
        yield from _merge(stored, pending, self.writes, reverse)

    def __len__(self) -> int:
        return len(self.writes)


def _merge(
    stored: Iterator[tuple[bytes, bytes]],
    pending: list[bytes],
    writes: dict[bytes, bytes | None],
    reverse: bool,
) -> Iterator[tuple[bytes, bytes]]:
    """Stored entries overlaid with the buffered ones (both already in the read order)."""
    i, n = 0, len(pending)
    for k, v in stored:
        while i < n and (pending[i] < k if not reverse else pending[i] > k):
            pk = pending[i]
            pv = writes[pk]
            if pv is not None:
                yield pk, pv
            i += 1
        if i < n and pending[i] == k:
            pv = writes[k]
            if pv is not None:
                yield k, pv
            i += 1
            continue
        yield k, v
    while i < n:
        pk = pending[i]
        pv = writes[pk]
        if pv is not None:
            yield pk, pv
        i += 1
