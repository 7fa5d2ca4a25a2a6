"""Producing many records at once: whole batches per partition, acknowledged together.

`AIOKafkaProducer.send` costs tens of microseconds of Python per record (futures, loop
look-ups, metadata checks); filling `BatchBuilder`s per partition and submitting each
once makes a checkpoint's hundreds of records cost about as much as a handful.

Keyed records are placed with Kafka's default partitioner (murmur2 of the key). aiokafka's
murmur2 is pure Python, several microseconds per key, and a worker places every record it
produces by key; `KeyPartitioner` hashes with the native core's murmur2 when it is
installed (native/src/partition.rs), else remembers where each key went and hashes the
rest with a leaner Python murmur2 (`murmur2`; both checked against aiokafka's in tests).
"""

from __future__ import annotations

import asyncio
import struct
from collections import defaultdict

from aiokafka import AIOKafkaProducer

from engage_stream.records import OutgoingRecord
from engage_stream.stream.options import ProducerOptions
from engage_stream.stream.topics import MAX_RECORD_BYTES

try:
    from engage_stream_core import partition_for as native_partition_for
except ImportError:  # the Python engine's installs: placed by `murmur2` below
    native_partition_for = None

__all__ = ["KeyPartitioner", "OutgoingRecord", "Sender", "murmur2", "partition_for"]


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Java `Utils.murmur2`), the same values as `aiokafka.partitioner`:
    the one copy, so producing and the owner routing (`partition_for`) agree."""
    length = len(data)
    h = 0x9747B28C ^ length
    body = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:body]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra >= 3:
        h ^= data[body + 2] << 16
    if extra >= 2:
        h ^= data[body + 1] << 8
    if extra >= 1:
        h ^= data[body]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) puts this key in."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KeyPartitioner:
    """Key → partition for one partition count, as Kafka's default partitioner places it."""

    MAX_KEYS = 100_000  # then start over (~15 MB at most): bounds memory, not correctness

    def __init__(self, partitions: int, native: bool = True) -> None:
        self.partitions = partitions
        self.native = native and native_partition_for is not None
        self._known: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        if self.native:
            return native_partition_for(key, self.partitions)  # type: ignore[misc]
        p = self._known.get(key)
        if p is None:
            if len(self._known) >= self.MAX_KEYS:
                self._known.clear()
            p = self._known[key] = partition_for(key, self.partitions)
        return p


class Sender:
    """An AIOKafkaProducer created on the running loop when the worker starts."""

    def __init__(self, bootstrap: str, options: ProducerOptions | None = None) -> None:
        self.bootstrap = bootstrap
        self.options = options or ProducerOptions()
        self.producer: AIOKafkaProducer | None = None
        self._partitioners: dict[str, KeyPartitioner] = {}

    @property
    def ready(self) -> bool:
        return self.producer is not None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks=self.options.acks,
            linger_ms=self.options.linger_ms,
            max_batch_size=self.options.max_batch_bytes,
            request_timeout_ms=self.options.request_timeout_ms,
            compression_type=self.options.compression,
            max_request_size=MAX_RECORD_BYTES + 1024 * 1024,  # a profile value, alone
        )
        await self.producer.start()

    def _started(self) -> AIOKafkaProducer:
        if self.producer is None:
            raise RuntimeError("the producer is not started: Sender.start() runs first")
        return self.producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def partition_of(self, topic: str, key: bytes) -> int:
        """Where a keyed record goes in `topic`, for its real partition count (which may
        differ from the configured one for a topic created earlier)."""
        return (await self._partitioner(topic))(key)

    async def _partitioner(self, topic: str) -> KeyPartitioner:
        part = self._partitioners.get(topic)
        if part is None:
            client = self._started().client
            await client._wait_on_metadata(topic)
            n = len(client.cluster.partitions_for_topic(topic) or ())
            part = self._partitioners[topic] = KeyPartitioner(n)
        return part

    async def send_many(self, records: list[OutgoingRecord]) -> dict[tuple[str, int], int]:
        """Send and wait for acknowledgement; returns the last offset written per partition.

        Keyed records without a partition go where Kafka's default partitioner would put
        them (murmur2), so consumers and the Profile API's routing agree.
        """
        if not records:
            return {}
        producer = self._started()
        groups: dict[tuple[str, int], list[OutgoingRecord]] = defaultdict(list)
        topic: str | None = None
        part: KeyPartitioner | None = None
        for rec in records:
            p = rec.partition
            if p is None:
                if rec.topic != topic or part is None:
                    topic, part = rec.topic, await self._partitioner(rec.topic)
                p = part(rec.key) if rec.key is not None else 0
            groups[(rec.topic, p)].append(rec)
        pending = []
        for (topic, p), recs in groups.items():
            batch = producer.create_batch()
            count = 0
            for rec in recs:
                while (
                    batch.append(
                        key=rec.key, value=rec.value, timestamp=None, headers=rec.headers or []
                    )
                    is None
                ):
                    if count == 0:
                        raise ValueError(f"record too large for one batch on {topic}")
                    pending.append(
                        (
                            (topic, p),
                            count,
                            await producer.send_batch(batch, topic, partition=p),
                        )
                    )
                    batch, count = producer.create_batch(), 0
                count += 1
            pending.append(
                ((topic, p), count, await producer.send_batch(batch, topic, partition=p))
            )
        metas = await asyncio.gather(*(fut for _, _, fut in pending))
        last: dict[tuple[str, int], int] = {}
        for (tp, count, _), meta in zip(pending, metas, strict=True):
            last[tp] = max(last.get(tp, -1), meta.offset + count - 1)
        return last
