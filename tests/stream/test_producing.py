"""Record placement: the same partition as Kafka's default partitioner, cached."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from engage_stream.config import Settings
from engage_stream.stream.producing import KeyPartitioner, murmur2, partition_for


def test_murmur2_matches_aiokafka_on_every_length_and_many_keys() -> None:
    rng = random.Random(3)
    for length in range(0, 70):
        for _ in range(40):
            key = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(key) == aiokafka_murmur2(key), key
    for i in range(2000):
        key = f"user_id:user-{i:07d}".encode()
        assert murmur2(key) == aiokafka_murmur2(key)


def test_key_partitioner_agrees_with_routing_and_bounds_its_memory() -> None:
    part = KeyPartitioner(7)
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
    big = b"x" * (3 * 1024 * 1024)

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
