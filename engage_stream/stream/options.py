"""Kafka client settings of the data path, as frozen values built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    # A member that stops heartbeating for this long is evicted and its partitions move:
    # the takeover time after a crash. Short, but 8 heartbeats long, so a busy event loop
    # is not taken for a dead worker. (A restarted worker does not wait for it: static
    # membership, `Settings.instance_id`.)
    session_timeout_ms: int = 8_000
    heartbeat_interval_ms: int = 1_000
    # A batch (apply + checkpoint) taking longer than this is a stuck member.
    max_poll_interval_ms: int = 300_000
    # One fetch may carry a large backlog; a partition's share is bounded below it.
    fetch_max_bytes: int = 32 * 1024 * 1024
    max_partition_fetch_bytes: int = 8 * 1024 * 1024


COMPRESSION_TYPES = ("zstd", "lz4", "snappy", "gzip", "none")


@dataclass(frozen=True, slots=True)
class ProducerOptions:
    # Every output and changelog record is acknowledged by all in-sync replicas before the
    # checkpoint stores the state that caused it.
    acks: str = "all"
    # No linger: a checkpoint hands all its batches over before it waits, so they leave in
    # one request per broker anyway, and the stage waits for the acknowledgement — a linger
    # only delays it (a checkpoint's round trip measured 11.7 → 4.2 ms p50, bench/README).
    linger_ms: int = 0
    max_batch_bytes: int = 1024 * 1024
    # A send not acknowledged (or not even accepted, the broker away) within this fails:
    # a checkpoint's batch is applied again, a clock tick is skipped (the next one carries on).
    request_timeout_ms: int = 40_000
    # Batches are compressed: the changelog carries every changed profile value (~3 kB of
    # JSON, ~13x smaller in a zstd batch) per batch, and the broker's CPU follows the bytes
    # it takes in. Measured on the quick backlog (bench/README, "Compressed batches"):
    # against none, broker CPU per event roughly halved and the worker faster; zstd (level
    # 3) encodes 5-8x as fast as aiokafka's lz4 (level 9) and smaller. "none" turns it off
    # (for a consumer that cannot read zstd); "lz4", "snappy" and "gzip" work too.
    compression_type: str = "zstd"

    def __post_init__(self) -> None:
        if self.compression_type not in COMPRESSION_TYPES:
            raise ValueError(
                f"producer compression_type {self.compression_type!r}: expected one of "
                + ", ".join(COMPRESSION_TYPES)
            )

    @property
    def compression(self) -> str | None:
        """The producer's `compression_type` argument."""
        return None if self.compression_type == "none" else self.compression_type


@dataclass(frozen=True, slots=True)
class RetryOptions:
    # A batch whose checkpoint failed (broker or disk, never the data) is applied again
    # after a growing pause; after this many attempts the stage stops the worker loudly.
    attempts: int = 8
    first_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
