"""RocksDB settings for the partition databases, as one frozen value built at start-up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RocksDBOptions:
    # One LRU block cache shared by every partition database of the process, so memory is
    # bounded by this, not by the number of partitions a worker owns.
    block_cache_bytes: int = 64 * 1024 * 1024
    # Per column family memtable; a checkpoint's WriteBatch lands here first.
    write_buffer_bytes: int = 16 * 1024 * 1024
    # Flush + compaction threads (the machine this is sized for has two cores).
    max_background_jobs: int = 2
    # Most point reads miss (a new messageId's dedup lookup, a new profile): a whole-key
    # bloom filter with this many bits per key answers those without reading data blocks.
    bloom_bits_per_key: float = 10.0
    # RocksDB's own LOG files kept per database.
    keep_log_files: int = 2
