"""Opening, recovering and checkpointing the per-partition RocksDB stores against Kafka.

This is the thin transactional layer DESIGN.md asks for under the Faust app: Faust keeps
the consumer group, agents, topics and web; this module owns state durability so that a
crash at any point loses nothing and applies nothing twice (see `state.recovery`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.profiles.store import PROFILE
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.recovery import SOURCE_HEADER, resume_from, should_apply, tag_of
from engage_stream.state.transaction import Transaction
from engage_stream.stream.producing import OutgoingRecord, Sender

log = logging.getLogger(__name__)

CLOCK_KEY = b"c:clock"


class PartitionState:
    def __init__(self, partition: int, store: PartitionStore) -> None:
        self.partition = partition
        self.store = store
        self.clock = int(store.get(CLOCK_KEY) or b"0")
        self.needs_catch_up = False

    @property
    def source_offset(self) -> int:
        return self.store.source_offset


class PartitionManager:
    def __init__(self, settings: Settings, sender: Sender) -> None:
        self.settings = settings
        self.sender = sender
        self.root = settings.data_dir / settings.app_id / "state"
        self.open: dict[int, PartitionState] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def path(self, partition: int) -> Path:
        return self.root / f"p{partition}"

    async def get(self, partition: int) -> PartitionState:
        """The partition's state, recovered from the changelog first if needed."""
        ps = self.open.get(partition)
        if ps is not None and not ps.needs_catch_up:
            return ps
        lock = self._locks.setdefault(partition, asyncio.Lock())
        async with lock:
            ps = self.open.get(partition)
            if ps is None:
                ps = PartitionState(partition, PartitionStore(self.path(partition)))
                self.open[partition] = ps
                await self._recover(ps)
            elif ps.needs_catch_up:
                await self._recover(ps)
            return ps

    def mark_rebalanced(self, assigned: Iterable[int]) -> None:
        """After a rebalance another worker may have written our partitions: catch up first."""
        keep = set(assigned)
        for p, ps in list(self.open.items()):
            if p in keep:
                ps.needs_catch_up = True
            else:
                ps.store.close()
                del self.open[p]

    async def _committed(self, partition: int) -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.broker)
        await admin.start()
        try:
            tp = TopicPartition(self.settings.topics.profile_events, partition)
            offsets = await admin.list_consumer_group_offsets(self.settings.app_id, partitions=[tp])
            meta = offsets.get(tp)
            return meta.offset if meta is not None and meta.offset >= 0 else None
        finally:
            await admin.close()

    async def _recover(self, ps: PartitionState) -> None:
        started = time.perf_counter()
        committed = await self._committed(ps.partition)
        resume = resume_from(committed, ps.store.source_offset)
        tp = TopicPartition(self.settings.changelog_topic, ps.partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.broker,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_uncommitted",
        )
        await consumer.start()
        applied = skipped = 0
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            start = ps.store.changelog_offset + 1
            if start < end:
                consumer.seek(tp, start)
                last = start - 1
                while last + 1 < end:
                    batches = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                    writes: dict[bytes, bytes | None] = {}
                    for rec in batches.get(tp, []):
                        last = rec.offset
                        if should_apply(tag_of(rec.headers), resume):
                            writes[rec.key] = rec.value
                            applied += 1
                        else:
                            skipped += 1
                    if writes or batches:
                        ps.store.write(writes, changelog_offset=last, source_offset=None)
            ps.store.write(
                {},
                changelog_offset=max(end - 1, ps.store.changelog_offset),
                source_offset=resume - 1,
            )
        finally:
            await consumer.stop()
        ps.clock = max(ps.clock, int(ps.store.get(CLOCK_KEY) or b"0"))
        ps.needs_catch_up = False
        metrics.recovery_records.labels("applied").inc(applied)
        metrics.recovery_records.labels("skipped").inc(skipped)
        metrics.recovery_seconds.observe(time.perf_counter() - started)
        metrics.state_profiles.labels(str(ps.partition)).set(ps.store.count(PROFILE))
        log.warning(
            "partition %d recovered: %d changelog records applied, %d skipped, resume at source offset %d",
            ps.partition,
            applied,
            skipped,
            resume,
        )

    async def checkpoint(
        self,
        ps: PartitionState,
        tx: Transaction,
        source_offset: int,
        outputs: list[OutgoingRecord],
    ) -> None:
        """Outputs and changelog to Kafka, acknowledged; then one local atomic batch."""
        started = time.perf_counter()
        tx.put(CLOCK_KEY, str(ps.clock).encode())
        header = [(SOURCE_HEADER, str(source_offset).encode())]
        changelog_topic = self.settings.changelog_topic
        records = list(outputs)
        records.extend(
            OutgoingRecord(changelog_topic, key, value, header, ps.partition)
            for key, value in tx.writes.items()
        )
        written = await self.sender.send_many(records)
        last = written.get((changelog_topic, ps.partition))
        ps.store.write(tx.writes, changelog_offset=last, source_offset=source_offset)
        for out in outputs:
            metrics.outputs_produced.labels(out.topic).inc()
        metrics.checkpoint_seconds.observe(time.perf_counter() - started)

    def close(self) -> None:
        for ps in self.open.values():
            ps.store.close()
        self.open.clear()

    def wipe(self) -> None:
        """Delete local state (tests and `worker --reset-local-state`)."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
