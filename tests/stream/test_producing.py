"""Record placement (the same partition as Kafka's default partitioner, cached), record
sizes and compressed batches."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from engage_stream.config import Settings
from engage_stream.stream.options import COMPRESSION_TYPES, ProducerOptions
from engage_stream.stream.producing import KeyPartitioner, murmur2, partition_for


def _keys(seed: int) -> list[bytes]:
    """Random bytes of every length 0–69 (40 each), then 2,000 user keys."""
    rng = random.Random(seed)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(70) for _ in range(40)]
    return keys + [f"user_id:user-{i:07d}".encode() for i in range(2000)]


def _native_murmur2(key: bytes) -> int:
    return int(pytest.importorskip("engage_stream_core").murmur2(key))


@pytest.mark.parametrize("hash_of", [murmur2, _native_murmur2], ids=["python", "native"])
def test_murmur2_matches_aiokafka_on_every_length_and_many_keys(hash_of: Any) -> None:
    for key in _keys(3):
        assert hash_of(key) == aiokafka_murmur2(key), key


def test_the_native_placement_agrees_with_the_python_one() -> None:
    core = pytest.importorskip("engage_stream_core")
    for key in _keys(5):
        assert core.partition_for(key, 7) == partition_for(key, 7), key
        assert core.partition_for(key, 12) == partition_for(key, 12), key
    with pytest.raises(ValueError, match="at least one partition"):
        core.partition_for(b"k", 0)


def test_the_key_partitioner_places_natively_when_the_core_is_installed() -> None:
    core = pytest.importorskip("engage_stream_core")
    part = KeyPartitioner(7)
    assert part.native
    keys = [f"anonymous_id:a-{i}".encode() for i in range(350)]
    assert [part(k) for k in keys] == [core.partition_for(k, 7) for k in keys]
    assert [part(k) for k in keys] == [partition_for(k, 7) for k in keys]
    assert not part._known  # nothing cached: hashing natively is cheaper than the lookup


def test_key_partitioner_agrees_with_routing_and_bounds_its_memory() -> None:
    part = KeyPartitioner(7, native=False)
    part.MAX_KEYS = 100  # type: ignore[misc]
    keys = [f"anonymous_id:a-{i}".encode() for i in range(350)]
    for _ in range(2):
        assert [part(k) for k in keys] == [partition_for(k, 7) for k in keys]
    assert len(part._known) <= 100


@pytest.mark.broker
def test_a_profile_value_larger_than_the_brokers_default_limit_reaches_the_changelog(
    worker_settings: Settings,
) -> None:
    """A very active profile's window state can exceed Kafka's 1 MB default message size;
    the broker refusing its changelog record would stop the worker at every restart."""
    from engage_stream.stream.producing import OutgoingRecord, Sender
    from engage_stream.stream.topics import ensure_topics

    ensure_topics(worker_settings)
    big = os.urandom(3 * 1024 * 1024)  # (incompressible: a compressed batch stays this big)

    async def go() -> dict[tuple[str, int], int]:
        sender = Sender(worker_settings.broker)
        await sender.start()
        try:
            return await sender.send_many(
                [
                    OutgoingRecord(worker_settings.changelog_topic, b"p:big", big, None, 0),
                    OutgoingRecord(worker_settings.changelog_topic, b"p:small", b"{}", None, 0),
                ]
            )
        finally:
            await sender.stop()

    written = asyncio.run(go())
    assert written[(worker_settings.changelog_topic, 0)] == 1


def test_the_producer_compresses_with_zstd_unless_told_otherwise() -> None:
    assert ProducerOptions().compression == "zstd"
    assert ProducerOptions(compression_type="none").compression is None
    assert [ProducerOptions(compression_type=c).compression for c in COMPRESSION_TYPES] == [
        "zstd",
        "lz4",
        "snappy",
        "gzip",
        None,
    ]
    with pytest.raises(ValueError, match="compression_type 'brotli': expected one of zstd"):
        ProducerOptions(compression_type="brotli")


@pytest.mark.broker
@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_compressed_batches_are_smaller_on_the_broker_and_every_client_reads_them(
    worker_settings: Settings, compression: str
) -> None:
    """What the worker produces (profile values here) is stored compressed, and both
    clients the project reads its own topics with — aiokafka (the stages, recovery) and
    kafka-python (compacted-topic followers, tools) — read it back: each needs its codec
    (cramjam, zstandard) installed, which this fails without."""
    from aiokafka import AIOKafkaConsumer
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import NewTopic

    from bench.compression import stored_bytes
    from engage_stream.stream.producing import OutgoingRecord, Sender

    topic = f"compressed-{compression}-{worker_settings.app_id}"
    admin = KafkaAdminClient(bootstrap_servers=worker_settings.broker)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    rng = random.Random(5)
    values = [
        b'{"profile_id":"user_id:u%d","traits":{"plan":{"value":"%s","ts":%d}},"engine":%s}'
        % (i, rng.choice([b"free", b"pro"]), 1_800_000_000_000 + i, b"[%d]" % i * 200)
        for i in range(300)
    ]
    options = ProducerOptions(compression_type=compression)

    async def produce_and_read() -> list[bytes]:
        sender = Sender(worker_settings.broker, options)
        await sender.start()
        try:
            await sender.send_many(
                [OutgoingRecord(topic, b"p:%d" % i, v, None, 0) for i, v in enumerate(values)]
            )
        finally:
            await sender.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=worker_settings.broker, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            while len(got) < len(values):
                for recs in (await consumer.getmany(timeout_ms=2000)).values():
                    got += [r.value for r in recs]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(produce_and_read()) == values
    sync = KafkaConsumer(
        topic,
        bootstrap_servers=worker_settings.broker,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        assert [r.value for r in sync][: len(values)] == values
    finally:
        sync.close()
    stored = stored_bytes(worker_settings.broker, topic, partitions=1)
    raw = sum(map(len, values))
    if compression == "none":
        assert stored > raw
    else:
        assert stored < raw / 4, f"{stored} bytes stored for {raw} bytes of values"
