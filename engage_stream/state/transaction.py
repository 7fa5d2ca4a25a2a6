"""Buffered writes for one checkpoint of one partition.

Reads see the transaction's own writes first; nothing reaches RocksDB until the checkpoint
has put every changed key on the changelog and the broker acknowledged it. Several writes
to one key in a batch coalesce into one put and one changelog record.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from sortedcontainers import SortedDict

from engage_stream.state.partition_store import PartitionStore

_DELETED = None


class Transaction:
    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        # Sorted, so range reads over a large batch stay O(log n + hits).
        self.writes: SortedDict = SortedDict()

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.store.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = _DELETED

    def range(
        self, start: bytes, end: bytes, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Merged view of stored and buffered keys in [start, end)."""
        pending = [
            (k, self.writes[k])
            for k in self.writes.irange(start, end, inclusive=(True, False), reverse=reverse)
        ]
        stored = self.store.range_reverse(start, end) if reverse else self.store.range(start, end)
        if not pending:
            yield from stored
            return
        overridden = {k for k, _ in pending}
        merged = heapq.merge(
            ((k, v) for k, v in stored if k not in overridden),
            ((k, v) for k, v in pending if v is not None),
            key=lambda kv: kv[0],
            reverse=reverse,
        )
        yield from merged  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.writes)
