"""In-memory stores with the interfaces of the RocksDB ones, for replay and tests.

`MemoryKV` is a bare key-value (`state.kv.KV`); `MemoryStore` is a whole partition database
(`PartitionStore`'s interface: atomic writes with offsets), so `replay` runs the worker's
own transactions and stage over it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from sortedcontainers import SortedDict


class MemoryKV:
    def __init__(self) -> None:
        self._d: SortedDict = SortedDict()

    def get(self, key: bytes) -> bytes | None:
        return self._d.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._d[key] = value

    def delete(self, key: bytes) -> None:
        self._d.pop(key, None)

    def range(
        self, start: bytes, end: bytes, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = list(self._d.irange(start, end, inclusive=(True, False), reverse=reverse))
        for k in keys:
            yield k, self._d[k]

    def __len__(self) -> int:
        return len(self._d)


class MemoryStore:
    """A partition database in memory: what `Transaction` commits to in `replay`."""

    def __init__(self) -> None:
        self.kv = MemoryKV()
        self.changelog_offset = -1
        self.source_offset = -1

    def get(self, key: bytes) -> bytes | None:
        return self.kv.get(key)

    def range(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.kv.range(start, end)

    def range_reverse(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.kv.range(start, end, reverse=True)

    def write(
        self,
        writes: Mapping[bytes, bytes | None],
        *,
        changelog_offset: int | None,
        source_offset: int | None,
    ) -> None:
        for k, v in writes.items():
            if v is None:
                self.kv.delete(k)
            else:
                self.kv.put(k, v)
        if changelog_offset is not None:
            self.changelog_offset = changelog_offset
        if source_offset is not None:
            self.source_offset = source_offset

    def count(self, prefix: bytes) -> int:
        return sum(1 for _ in self.kv.range(prefix, prefix + b"\xff"))

    def __len__(self) -> int:
        return len(self.kv)
