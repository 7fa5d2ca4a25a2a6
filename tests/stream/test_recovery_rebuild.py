"""Recovery on a real broker when another worker wrote the changelog after our last,
unconfirmed checkpoint (the defect the 1M-event chaos run found).

Worker A processed source offsets 0..9 and stored them locally, but was killed before
committing past 5. Worker B took the partition over, reprocessed 5..7, wrote the
changelog and committed 8. The partition comes back to A: its database is ahead of the
commit (it holds 8 and 9) and behind the changelog (B's records). Continuing it would let
B's older values overwrite A's newer ones while the stream skips 8..9 — instead it must
be rebuilt: the state as of the commit, and processing resumes there.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.state.partition import PartitionState
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.recovery import SOURCE_HEADER
from engage_stream.stream.partitions import PartitionManager
from engage_stream.stream.topics import ensure_topics

pytestmark = pytest.mark.broker


def _key(n: int) -> bytes:
    return b"k9" if n == 9 else f"k{n % 3}".encode()


def _rebuilds() -> float:
    return metrics.REGISTRY.get_sample_value("engage_recovery_rebuilds_total") or 0.0


async def _scenario(settings: Settings) -> dict[str, object]:
    pm = PartitionManager(settings, recover_on_assign=False)
    changelog = TopicPartition(pm.changelog_topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker)
    await producer.start()

    async def write(key: bytes, value: bytes, tag: int) -> int:
        meta = await producer.send_and_wait(
            changelog.topic,
            value,
            key=key,
            partition=0,
            headers=[(SOURCE_HEADER, str(tag).encode())],
        )
        return meta.offset

    try:
        # A: source offsets 0..9, one record each (profile k{n % 3}; 9 wrote k9 alone)
        last_a = -1
        for n in range(10):
            last_a = await write(_key(n), f"A{n}".encode(), n)
        # A's local database holds all of it (checkpoint STORED), nothing committed past 5
        store = PartitionStore(pm.path(0), settings.rocksdb)
        ps = PartitionState(0, store)
        writes = {_key(n): f"A{n}".encode() for n in range(10)}
        ps.apply_changelog(writes, last_a, resume_at=10)
        store.close()
        # B: reprocessed 5..7 (k2, k0, k1) and committed 8
        for n in (5, 6, 7):
            await write(_key(n), f"B{n}".encode(), n)
    finally:
        await producer.stop()
    committer = AIOKafkaConsumer(
        bootstrap_servers=settings.broker, group_id=pm.group_id, enable_auto_commit=False
    )
    await committer.start()
    try:
        source = TopicPartition(pm.source_topic, 0)
        committer.assign([source])
        await committer.commit({source: OffsetAndMetadata(8, "")})
    finally:
        await committer.stop()
    before = _rebuilds()
    recovered = await pm.get(0)
    out = {
        "values": {k: recovered.store.get(k.encode()) for k in ("k0", "k1", "k2", "k9")},
        "source_offset": recovered.source_offset,
        "rebuilds": _rebuilds() - before,
    }
    pm.close()
    return out


def test_state_ahead_of_the_commit_is_rebuilt_when_another_worker_wrote_the_changelog(
    kafka_broker: str, tmp_path: Path
) -> None:
    settings = Settings(
        broker=kafka_broker, app_id=f"rebuild-{uuid.uuid4().hex[:8]}", data_dir=tmp_path
    )
    ensure_topics(settings)
    out = asyncio.run(_scenario(settings))
    # the state as of the commit (source offsets < 8): B's values for what it reprocessed,
    # A's 8 and 9 gone — they are processed again from offset 8
    assert out["values"] == {"k0": b"B6", "k1": b"B7", "k2": b"B5", "k9": None}
    assert out["source_offset"] == 7
    assert out["rebuilds"] == 1
