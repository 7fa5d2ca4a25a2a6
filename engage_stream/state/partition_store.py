"""One RocksDB database per input partition, written only in atomic batches.

Data keys and the bookkeeping that makes recovery exact live in the same database and are
written in the same `WriteBatch` (key layout: `state.keys`):
- `META_CHANGELOG`: the changelog offset of the last record this database reflects;
- `META_SOURCE`: the last source (input) offset whose effects the database holds.
So after any crash the database is a consistent snapshot "as of source offset N".

Errors from RocksDB itself surface as `StorageError`, so the stage can tell a broken disk
(stop, retry, never dead-letter) from a record it cannot process (dead-letter it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch

from engage_stream.state.keys import (
    FORMAT_VERSION,
    META_CHANGELOG,
    META_FORMAT,
    META_PREFIX,
    META_SOURCE,
)
from engage_stream.state.options import RocksDBOptions


class StorageError(Exception):
    """The local database failed (I/O, corruption, closed): not a property of the data."""


class UnknownFormat(StorageError):
    """The database was written with another key layout than this version reads."""


_caches: dict[int, Cache] = {}


def _block_cache(size: int) -> Cache:
    cache = _caches.get(size)
    if cache is None:
        cache = _caches[size] = Cache(size)
    return cache


def _options(o: RocksDBOptions) -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_max_background_jobs(o.max_background_jobs)
    opts.set_write_buffer_size(o.write_buffer_bytes)
    opts.set_keep_log_file_num(o.keep_log_files)
    table = BlockBasedOptions()
    table.set_bloom_filter(o.bloom_bits_per_key, False)
    table.set_block_cache(_block_cache(o.block_cache_bytes))
    opts.set_block_based_table_factory(table)
    return opts


class PartitionStore:
    def __init__(self, path: Path, options: RocksDBOptions | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = Rdict(str(path), options=_options(options or RocksDBOptions()))
        except Exception as exc:
            raise StorageError(f"cannot open {path}: {exc}") from exc
        self._check_format()

    def _check_format(self) -> None:
        stamp = self._db.get(META_FORMAT)
        if stamp is None:
            it = self._db.iter()
            it.seek_to_first()
            holds_data = it.valid() and not it.key().startswith(META_PREFIX)
            if holds_data or self._db.get(META_SOURCE) is not None:
                self._db.close()
                raise UnknownFormat(
                    f"{self.path}: the state database has no format version (written before "
                    f"format {FORMAT_VERSION}); delete it to rebuild it from the changelog, or "
                    "start the worker with --reset-local-state"
                )
            self._db.put(META_FORMAT, str(FORMAT_VERSION).encode())
        elif int(stamp) != FORMAT_VERSION:
            self._db.close()
            raise UnknownFormat(
                f"{self.path}: the state database is format {int(stamp)}, this version reads "
                f"format {FORMAT_VERSION}; delete it to rebuild it from the changelog, or start "
                "the worker with --reset-local-state"
            )

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._db.get(key)
        except Exception as exc:
            raise StorageError(f"{self.path}: read failed: {exc}") from exc

    def range(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys in [start, end) in byte order."""
        try:
            bounds = ReadOptions()
            bounds.set_iterate_upper_bound(end)  # RocksDB stops at `end`, tombstones included
            it = self._db.iter(bounds)
            it.seek(start)
            while it.valid():
                yield it.key(), it.value()
                it.next()
        except Exception as exc:
            raise StorageError(f"{self.path}: range read failed: {exc}") from exc

    def range_reverse(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys in [start, end) in reverse byte order."""
        try:
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
        except Exception as exc:
            raise StorageError(f"{self.path}: range read failed: {exc}") from exc

    def write(
        self,
        writes: Mapping[bytes, bytes | None],
        *,
        changelog_offset: int | None,
        source_offset: int | None,
    ) -> None:
        """One atomic batch: the data together with the offsets it corresponds to."""
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
        try:
            self._db.write(batch)
        except Exception as exc:
            raise StorageError(f"{self.path}: write failed: {exc}") from exc

    def _meta(self, key: bytes) -> int:
        v = self.get(key)
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
