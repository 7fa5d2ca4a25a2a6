"""One RocksDB database per input partition, written only in atomic batches.

Data keys and the bookkeeping that makes recovery exact live in the same database and are
written in the same `WriteBatch`:
- `META_CHANGELOG`: the changelog offset of the last record this database reflects;
- `META_SOURCE`: the last source (input) offset whose effects the database holds.
So after any crash the database is a consistent snapshot "as of source offset N".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch

META_PREFIX = b"\x00meta:"
META_CHANGELOG = META_PREFIX + b"changelog_offset"
META_SOURCE = META_PREFIX + b"source_offset"

BLOCK_CACHE_BYTES = 64 * 1024 * 1024
_cache: Cache | None = None


def _block_cache() -> Cache:
    """One LRU block cache for every partition database of the process (bounded memory)."""
    global _cache
    if _cache is None:
        _cache = Cache(BLOCK_CACHE_BYTES)
    return _cache


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_max_background_jobs(2)
    opts.set_write_buffer_size(16 * 1024 * 1024)
    opts.set_keep_log_file_num(2)
    # Most point reads miss (every new messageId's dedup lookup, every new profile): a
    # whole-key bloom filter answers those without reading data blocks.
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_block_cache(_block_cache())
    opts.set_block_based_table_factory(table)
    return opts


class PartitionStore:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = Rdict(str(path), options=_options())

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def range(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys in [start, end) in byte order."""
        bounds = ReadOptions()
        bounds.set_iterate_upper_bound(end)  # RocksDB stops at `end`, tombstones included
        it = self._db.iter(bounds)
        it.seek(start)
        while it.valid():
            yield it.key(), it.value()
            it.next()

    def range_reverse(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys in [start, end) in reverse byte order."""
        bounds = ReadOptions()
        bounds.set_iterate_upper_bound(end)  # (a lower bound is not honoured going back)
        it = self._db.iter(bounds)
        it.seek_to_last()
        while it.valid():
            k = it.key()
            if k < start:
                break
            yield k, it.value()
            it.prev()

    def write(
        self,
        writes: Mapping[bytes, bytes | None],
        *,
        changelog_offset: int | None,
        source_offset: int | None,
    ) -> None:
        batch = WriteBatch(raw_mode=True)
        for k, v in writes.items():
            if v is None:
                batch.delete(k)
            else:
                batch.put(k, v)
        if changelog_offset is not None:
            batch.put(META_CHANGELOG, str(changelog_offset).encode())
        if source_offset is not None:
            batch.put(META_SOURCE, str(source_offset).encode())
        self._db.write(batch)

    def _meta(self, key: bytes) -> int:
        v = self._db.get(key)
        return int(v) if v is not None else -1

    @property
    def changelog_offset(self) -> int:
        return self._meta(META_CHANGELOG)

    @property
    def source_offset(self) -> int:
        return self._meta(META_SOURCE)

    def estimated_keys(self) -> int:
        return self._db.property_int_value("rocksdb.estimate-num-keys") or 0

    def disk_bytes(self) -> int:
        return (self._db.property_int_value("rocksdb.total-sst-files-size") or 0) + (
            self._db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0
        )

    def count(self, prefix: bytes) -> int:
        return sum(1 for _ in self.range(prefix, prefix + b"\xff"))

    def close(self) -> None:
        self._db.close()
