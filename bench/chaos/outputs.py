"""Reading what a run produced back from the broker: its change records, the events its
profiles stage received, and `replay` of that stage's input.

The replay takes the run's `profile-events` topic as it is — every tick, every copy a
crashed ingest or identity stage sent twice — one partition at a time through
`Replay.apply_records`, the worker's own profiles stage in memory, in batches of the
worker's size: what a worker that never crashed would have made of the same records.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from bench.chaos.compare import Outputs
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.records import InputRecord
from engage_stream.replay import Replay


def partitions(
    settings: Settings, topic: str, timeout_s: float = 600.0
) -> Iterator[list[ConsumerRecord]]:
    """Each partition's records up to its end now, one partition at a time (a replay
    holds one partition's records, not the topic's)."""
    # check_crcs off: kafka-python checks CRC-32C in pure Python, which made reading the
    # outputs of a 1M-event run take longer than the run itself (the broker is local)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.broker,
        enable_auto_commit=False,
        max_poll_records=10_000,
        check_crcs=False,
    )
    try:
        for p in sorted(consumer.partitions_for_topic(topic) or set()):
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            deadline = time.monotonic() + timeout_s
            recs: list[ConsumerRecord] = []
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic}[{p}] took over {timeout_s:.0f}s")
                for batch in consumer.poll(timeout_ms=500).values():
                    recs.extend(batch)
            yield recs
    finally:
        consumer.close()


def run_outputs(settings: Settings) -> Outputs:
    out = Outputs()
    for recs in partitions(settings, settings.topics.changes):
        for r in recs:
            out.add(r.value)
    return out


def received_events(settings: Settings) -> set[str]:
    """messageIds of the events on `profile-events` (ticks have no value)."""
    ids: set[str] = set()
    for recs in partitions(settings, settings.topics.profile_events):
        ids.update(orjson.loads(r.value)["message_id"] for r in recs if r.value)
    return ids


def replayed_outputs(settings: Settings, catalog: Catalog) -> Outputs:
    out = Outputs()
    for recs in partitions(settings, settings.topics.profile_events):
        replay = Replay(catalog, settings)
        for i in range(0, len(recs), settings.batch_size):
            batch = [
                InputRecord(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)
                for r in recs[i : i + settings.batch_size]
            ]
            for o in replay.apply_records(batch):
                if o.topic == settings.topics.changes and o.value is not None:
                    out.add(o.value)
    return out
