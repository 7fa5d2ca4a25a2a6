"""An in-memory key-value with the same interface as `Transaction`, for replay and tests."""

from __future__ import annotations

from collections.abc import Iterator

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
