"""`state.partition`: what a partition keeps in memory about its database."""

from __future__ import annotations

from pathlib import Path

from engage_stream.state.partition import PartitionState
from engage_stream.state.partition_store import PartitionStore


class CountingStore(PartitionStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.reads.append(key)
        return super().get(key)


def test_profiles_read_by_the_batch_are_counted_without_reading_them_again(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "p0")
    ps = PartitionState(0, store, reported=False)
    try:
        ps.count_profiles()
        tx = ps.begin()
        tx.put(b"p:a", b"1")
        tx.prepare()
        ps.finish(tx, None)
        assert ps.profiles == 1

        tx = ps.begin()
        assert tx.get(b"p:a") == b"1" and tx.get(b"p:new") is None  # as the stage reads them
        tx.put(b"p:a", b"2")
        tx.put(b"p:new", b"1")
        tx.put(b"p:unread", b"1")  # written without a read: looked up
        tx.delete(b"p:a")
        tx.prepare()
        store.reads.clear()
        ps.finish(tx, None)
        assert store.reads == [b"p:unread"]
        assert ps.profiles == 2 == store.count(b"p:")
    finally:
        store.close()
