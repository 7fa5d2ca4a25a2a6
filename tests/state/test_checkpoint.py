"""The checkpoint on the real broker: a crash after any of its steps loses nothing and
applies nothing twice.

Each run drives the worker's own profiles path in process — `StageBatches` (stage +
checkpoint) over RocksDB, the real producer, recovery from the real changelog topic, and the
consumer group's committed offset — over the same `profile-events` records. A crash is
injected after a numbered checkpoint step (`Checkpoint.faults`); the "restarted worker"
(a new `PartitionManager`, with or without its local database) recovers and is handed the
records again from the committed offset, as a rebalance would. Its final profiles and
audience sizes must equal those of an uninterrupted run, every change of that run must be
on its output topic, and a change seen twice must carry the same messageId and bytes.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.loader import parse_text
from engage_stream.events import ProfileEvent
from engage_stream.profiles import sizes
from engage_stream.profiles.stage import TICK_KEY, ProfileStage
from engage_stream.profiles.store import ProfileStore
from engage_stream.records import OutgoingRecord
from engage_stream.state.checkpoint import Committable, Step
from engage_stream.state.keys import PROFILE
from engage_stream.state.transaction import Transaction
from engage_stream.stream.partitions import PartitionManager
from engage_stream.stream.producing import Sender
from engage_stream.stream.stage_batches import StageBatches
from engage_stream.stream.topics import ensure_topics

pytestmark = pytest.mark.broker

T0 = 1_760_000_000_000  # in the past: the broker refuses record timestamps far ahead
BATCH = 7

DEFINITIONS = """
- kind: audience
  key: repeat_viewers
  conditions:
    - event: Product Viewed
      count: ">= 2"
      within: 1 hours
  destinations: [{name: crm}]
- kind: computed_trait
  key: views
  type: counter
  event: Product Viewed
"""


class Crash(Exception):
    pass


def _catalog() -> Catalog:
    defs, problems = parse_text(DEFINITIONS, "c.yaml")
    assert not problems
    return Catalog.from_definitions(d for d, _ in defs)


def _inputs(topic: str) -> list[tuple[OutgoingRecord, int]]:
    """Events for a few users, 5 minutes apart (a 1-hour window fills and empties), with a
    tick a minute after every fourth; each with its record timestamp (the partition clock)."""
    out: list[tuple[OutgoingRecord, int]] = []
    for i in range(40):
        user = f"u{i % 5}"
        ts = T0 + i * 300_000
        ev = ProfileEvent(
            message_id=f"m{i}",
            type="track",
            event="Product Viewed",
            timestamp=ts,
            received_at=ts,
            profile_id=f"user_id:{user}",
            user_id=user,
        )
        out.append((OutgoingRecord(topic, ev.profile_id.encode(), ev.to_json(), None, 0), ts))
        if i % 4 == 3:
            out.append((OutgoingRecord(topic, TICK_KEY, b"", None, 0), ts + 60_000))
    return out


async def _produce_inputs(settings: Settings) -> list[ConsumerRecord]:
    topic = settings.topics.profile_events
    sender = Sender(settings.broker)
    await sender.start()
    try:
        inputs = _inputs(topic)
        for rec, ts in inputs:
            await sender.producer.send_and_wait(  # type: ignore[union-attr]
                topic, rec.value, key=rec.key, partition=0, timestamp_ms=ts
            )
    finally:
        await sender.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got: list[ConsumerRecord] = []
        while len(got) < len(inputs):
            got.extend((await consumer.getmany(tp, timeout_ms=2000)).get(tp, []))
        return got
    finally:
        await consumer.stop()


def _run_settings(base: Settings, name: str, tmp: Path) -> Settings:
    topics = base.topics.model_copy(
        update={
            "changes": f"{base.topics.changes}-{name}",
            "output_prefix": f"{base.topics.output_prefix.rstrip('.')}-{name}.",
            "dead_letter": f"{base.topics.dead_letter}-{name}",
        }
    )
    return base.model_copy(
        update={"app_id": f"{base.app_id}-{name}", "topics": topics, "data_dir": tmp / name}
    )


async def _commit(settings: Settings, offsets: Committable) -> None:
    """What the consumer loop does with a checkpoint's committable offsets."""
    taken = offsets.take()
    if not taken:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.broker, group_id=settings.app_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(taken))  # type: ignore[arg-type]
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in taken.items()})  # type: ignore[misc]
    finally:
        await consumer.stop()


async def _committed(settings: Settings) -> int:
    pm = PartitionManager(settings)
    return await pm._committed(0) or 0


async def _run(
    settings: Settings,
    records: list[ConsumerRecord],
    crash_after: Step | None = None,
    crash_at_batch: int = 2,
    wipe: bool = False,
) -> dict[str, Any]:
    """Process `records` in batches; optionally crash once, restart, and finish."""
    catalog = _catalog()
    ensure_topics(settings, catalog.destinations())
    sender = Sender(settings.broker)
    await sender.start()
    tp = TopicPartition(settings.topics.profile_events, 0)
    batch_no = 0

    def faults(step: Step) -> None:
        if crash_after is not None and batch_no == crash_at_batch and step == crash_after:
            raise Crash(f"crash after step {step.name}")

    def worker() -> tuple[PartitionManager, StageBatches, Committable]:
        pm = PartitionManager(settings)
        offsets = Committable()
        stage = ProfileStage(settings, catalog)
        batches = StageBatches(stage, pm, sender, offsets, faults=faults)
        batches.ready.set()
        return pm, batches, offsets

    try:
        pm, batches, offsets = worker()
        start = 0
        crashed = False
        while start < len(records):
            chunk = records[start : start + BATCH]
            try:
                await batches.handle({tp: chunk})
            except Crash:
                crashed = True
                # as the consumer loop does on its way out: commit what is committable
                await _commit(settings, offsets)
                pm.close()  # the process dies: nothing in memory survives
                if wipe:
                    shutil.rmtree(pm.root, ignore_errors=True)
                pm, batches, offsets = worker()
                start = await _committed(settings)  # re-delivered from the committed offset
                batch_no += 1
                continue
            await _commit(settings, offsets)
            start += len(chunk)
            batch_no += 1
        assert crashed == (crash_after is not None)
        ps = await pm.get(0)
        store = ProfileStore(Transaction(ps.store))
        profiles = {
            pid: (r.audiences, r.computed_traits, r.metadata.event_count, r.next_wakeup)
            for pid in store.profile_ids()
            if (r := store.get(pid)) is not None
        }
        result = {
            "profiles": profiles,
            "sizes": sizes.read(ps.store),
            "profile_keys": ps.store.count(PROFILE),
        }
        pm.close()
    finally:
        await sender.stop()
    result["changes"] = await _read_all(settings, settings.topics.changes)
    return result


async def _read_all(settings: Settings, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client._wait_on_metadata(topic)  # noqa: SLF001
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        out: list[bytes] = []
        for tp in tps:
            await consumer.seek_to_beginning(tp)

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            for recs in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(r.value for r in recs)
        return out
    finally:
        await consumer.stop()


def _by_message_id(changes: list[bytes]) -> dict[str, bytes]:
    seen: dict[str, bytes] = {}
    for value in changes:
        mid = orjson.loads(value)["message_id"]
        assert seen.setdefault(mid, value) == value, f"{mid} sent twice with different bodies"
    return seen


@pytest.fixture(scope="module")
def baseline(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("checkpoint")
    base = Settings(
        broker=kafka_broker,
        app_id=f"t-checkpoint-{tmp.name}",
        partitions=8,
        topics=Settings().topics.with_suffix(f"-checkpoint-{tmp.name}"),
    )
    ensure_topics(base)
    records = asyncio.run(_produce_inputs(base))
    return {
        "base": base,
        "tmp": tmp,
        "records": records,
        "result": asyncio.run(_run(_run_settings(base, "straight", tmp), records)),
    }


@pytest.mark.parametrize("wipe", [False, True], ids=["local-state-kept", "local-state-lost"])
@pytest.mark.parametrize("step", list(Step), ids=lambda s: f"after-{s.name.lower()}")
def test_a_crash_after_any_checkpoint_step_loses_nothing_and_applies_nothing_twice(
    baseline: dict[str, Any], step: Step, wipe: bool
) -> None:
    name = f"{step.name.lower()}-{'wiped' if wipe else 'kept'}"
    settings = _run_settings(baseline["base"], name, baseline["tmp"])
    got = asyncio.run(_run(settings, baseline["records"], crash_after=step, wipe=wipe))
    want = baseline["result"]
    assert got["profiles"] == want["profiles"], "final state differs from an uninterrupted run"
    assert got["sizes"] == want["sizes"] and want["sizes"], "audience sizes differ"
    assert got["profile_keys"] == want["profile_keys"]
    straight = _by_message_id(want["changes"])
    crashed = _by_message_id(got["changes"])
    assert crashed == straight, "a change lost, or one that an uninterrupted run does not make"
    assert len(got["changes"]) >= len(want["changes"])  # duplicates allowed, identical ones


def _profiles_gauge(partition: int) -> float | None:
    from engage_stream import metrics

    return metrics.REGISTRY.get_sample_value("engage_state_profiles", {"partition": str(partition)})


def test_the_profiles_gauge_follows_every_checkpoint(
    baseline: dict[str, Any], tmp_path: Path
) -> None:
    """A fresh worker reports its profiles as they are created, not only after a recovery."""
    from engage_stream.state.checkpoint import Checkpoint
    from engage_stream.state.partition import PartitionState
    from engage_stream.state.partition_store import PartitionStore

    settings = _run_settings(baseline["base"], "gauge", tmp_path)
    ensure_topics(settings)

    async def go() -> None:
        sender = Sender(settings.broker)
        await sender.start()
        pm = PartitionManager(settings)
        ps = PartitionState(7, PartitionStore(pm.path(7)))
        pm.open[7] = ps
        ps.count_profiles()  # what recovery ends with: an empty store
        assert _profiles_gauge(7) == 0

        async def checkpoint(offset: int, writes: dict[bytes, bytes | None]) -> None:
            tx = ps.begin()
            for key, value in writes.items():
                if value is None:
                    tx.delete(key)
                else:
                    tx.put(key, value)
            tx.source_offset = offset
            cp = Checkpoint(sender, settings.changelog_topic, Committable())
            cp.add_state(ps, tx)
            await cp.commit()

        try:
            await checkpoint(0, {b"p:a": b"1", b"p:b": b"1", b"h:a": b"e", b"t:1": b""})
            assert _profiles_gauge(7) == 2, "history / index keys are not profiles"
            await checkpoint(1, {b"p:a": b"2", b"p:c": b"1", b"d:a": b"9"})
            assert _profiles_gauge(7) == 3, "rewriting a stored profile does not count it again"
            await checkpoint(2, {b"p:b": None, b"p:zz": None})
            assert _profiles_gauge(7) == 2, "a removed profile is uncounted, a missing one not"
            assert ps.profiles == ps.store.count(PROFILE) == 2

            ps.profiles = None  # a reopened store counts once, then follows writes again
            ps.count_profiles()
            assert _profiles_gauge(7) == 2
            pm.mark_rebalanced([])  # moved to another worker: not reported here any more
            assert _profiles_gauge(7) is None
        finally:
            await sender.stop()
            pm.close()

    asyncio.run(go())
