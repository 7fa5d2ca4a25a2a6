"""The key-value interface profile state is written against (RocksDB transaction or memory)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class KV(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def range(
        self, start: bytes, end: bytes, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...
