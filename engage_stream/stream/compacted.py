"""Following a compacted topic from its beginning, forever: the definitions and the
identity map are both state every worker rebuilds this way."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as SyncTopicPartition

from engage_stream.config import Settings

log = logging.getLogger(__name__)

OnRecord = Callable[[bytes | None, bytes | None], None]


async def follow(
    settings: Settings,
    topic: str,
    on_record: OnRecord,
    ready: asyncio.Event,
    on_caught_up: Callable[[], Awaitable[None] | None] | None = None,
    on_changed: Callable[[], Awaitable[None] | None] | None = None,
) -> None:
    """Apply every record of `topic` (all partitions) with `on_record`; once everything
    that existed at start is applied, call `on_caught_up` and set `ready`; after that,
    `on_changed` after every poll that applied something. A record `on_record` rejects
    (ValueError) is logged and skipped: bad state on a topic never stops a worker."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.broker, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        parts = None
        while not parts:
            # `consumer.topics()` fetches metadata but does not keep it: ask the client
            cluster = await consumer._client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(topic)
            if not parts:
                log.warning("waiting for topic %s to exist", topic)
                await asyncio.sleep(0.5)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        caught_up = all(e == 0 for e in ends.values())
        if caught_up:
            await _call(on_caught_up)
            ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            changed = False
            for batch in batches.values():
                for rec in batch:
                    try:
                        on_record(rec.key, rec.value)
                        changed = True
                    except ValueError as exc:
                        log.error("%s: ignoring invalid record %r: %s", topic, rec.key, exc)
            if not caught_up and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                caught_up = True
                await _call(on_caught_up)
                ready.set()
            elif caught_up and changed:
                await _call(on_changed)
    finally:
        await consumer.stop()


async def _call(fn: Callable[[], Awaitable[None] | None] | None) -> None:
    if fn is not None:
        result = fn()
        if result is not None:
            await result


def read_all(
    settings: Settings, topic: str, timeout_s: float = 10.0
) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Every record of `topic` from the beginning to its end at the time of the call, in
    order per partition (for commands: one read, no consumer group); nothing if the topic
    does not exist."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.broker,
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    try:
        tps = [SyncTopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out reading {topic}")
            for batch in consumer.poll(timeout_ms=500).values():
                for rec in batch:
                    yield rec.key, rec.value
    finally:
        consumer.close()
