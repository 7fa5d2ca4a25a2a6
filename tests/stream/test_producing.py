"""Record placement: the same partition as Kafka's default partitioner, cached."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from engage_stream.stream.producing import KeyPartitioner, murmur2
from engage_stream.stream.routing import partition_for


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
