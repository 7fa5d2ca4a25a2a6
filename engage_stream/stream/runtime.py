"""Applies one batch of internal `profile-events` records per partition, then checkpoints.

Records are either profile events or clock ticks. The partition clock is the largest
record timestamp seen (set by ingest and the tick timer when they produced), so the clock
is part of the stream: reprocessing the same partition replays the same clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import ConsumerRecord

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.events import ProfileEvent
from engage_stream.profiles.processor import EngineLike, ProcessorSettings, ProfileProcessor
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.transaction import Transaction
from engage_stream.stream.batch_consumer import Batch
from engage_stream.stream.partitions import CLOCK_KEY, PartitionManager
from engage_stream.stream.producing import OutgoingRecord

TICK_KEY = b"\x00tick"

log = logging.getLogger(__name__)

RecordBuilder = Callable[[list[Any], ProfileStore], list[OutgoingRecord]]


def _no_records(changes: list[Any], store: ProfileStore) -> list[OutgoingRecord]:
    return []


class ProfileRuntime:
    def __init__(self, settings: Settings, partitions: PartitionManager) -> None:
        self.settings = settings
        self.partitions = partitions
        self.processor = ProfileProcessor(
            None, ProcessorSettings(history_ms=settings.history_ms, dedup_ms=settings.dedup_ms)
        )
        self.build_records: RecordBuilder = _no_records
        self.definitions_ready = asyncio.Event()
        self._swept: dict[int, str] = {}  # partition -> definitions epoch fully swept
        self._backfill_since: dict[str, int] = {}  # key -> version still being backfilled
        self._cursor: dict[int, str | None] = {}

    def set_engine(
        self, engine: EngineLike | None, versions: Mapping[str, int], build_records: RecordBuilder
    ) -> None:
        """New definitions: every partition re-sweeps its profiles (backfill) from the top."""
        old = self.processor.versions
        self.processor.set_engine(engine, versions)
        self.build_records = build_records
        self._cursor.clear()
        self._backfill_since = {k: v for k, v in versions.items() if old.get(k) != v}
        self.definitions_ready.set()

    def computing(self, owned: set[int]) -> set[str]:
        """Definition keys whose backfill has not finished on every owned partition."""
        if all(self._swept.get(p) == self.processor.epoch for p in owned):
            self._backfill_since.clear()
        return set(self._backfill_since)

    async def handle(self, batch: Batch) -> None:
        """One fetched batch of the profile-events topic, partition by partition."""
        # Never evaluate with a partial definition set: wait for the definitions topic.
        await self.definitions_ready.wait()
        for tp, records in batch.items():
            await self._process_partition(tp.partition, records)

    def _sweep(self, partition: int, store: ProfileStore, clock: int) -> list[OutgoingRecord]:
        """One bounded chunk of the backfill after a definitions change (runs in the batch's
        transaction, so its outputs and state commit together)."""
        result = self.processor.sweep(
            store, clock, self._cursor.get(partition), self.settings.backfill_chunk
        )
        metrics.backfill_profiles.inc(result.profiles)
        if result.cursor is None:
            self._swept[partition] = self.processor.epoch
            self._cursor.pop(partition, None)
            metrics.backfill_pending.labels(str(partition)).set(0)
            log.info(
                "partition %d: definitions %s applied to every profile",
                partition,
                self.processor.epoch,
            )
        else:
            self._cursor[partition] = result.cursor
            metrics.backfill_pending.labels(str(partition)).set(1)
            log.info(
                "partition %d: backfill in progress, at profile %s (%d changes so far in "
                "this chunk)",
                partition,
                result.cursor,
                len(result.changes),
            )
        return self.build_records(result.changes, store) if result.changes else []

    async def _process_partition(self, partition: int, messages: list[ConsumerRecord]) -> None:
        ps = await self.partitions.get(partition)
        applied_up_to = ps.source_offset
        tx = Transaction(ps.store)
        store = ProfileStore(tx)
        outputs: list[OutgoingRecord] = []
        last: int | None = None
        processed = duplicates = skipped = 0
        wall = time.time()
        if self._swept.get(partition) != self.processor.epoch:
            outputs.extend(self._sweep(partition, store, ps.clock))
        for msg in messages:
            if msg.offset <= applied_up_to:
                skipped += 1  # its effects are already in state (recovered or re-delivered)
                continue
            ps.clock = max(ps.clock, msg.timestamp)
            if msg.key == TICK_KEY:
                changes = self.processor.advance(store, ps.clock)
                metrics.timers_fired.inc(len(changes))
            else:
                event = ProfileEvent.from_json(msg.value)
                outcome = self.processor.apply(store, event, ps.clock)
                if outcome.duplicate:
                    duplicates += 1
                else:
                    processed += 1
                    metrics.processing_lag.observe(max(0.0, wall - event.timestamp / 1000))
                changes = outcome.changes
            if changes:
                outputs.extend(self.build_records(changes, store))
            last = msg.offset
        metrics.records_already_applied.inc(skipped)
        if last is None:
            return
        if tx.writes or outputs:
            await self.partitions.checkpoint(ps, tx, last, outputs)
        else:  # only clock ticks with nothing due: no changelog traffic needed
            ps.store.write(
                {CLOCK_KEY: str(ps.clock).encode()}, changelog_offset=None, source_offset=last
            )
        metrics.events_processed.labels(str(partition)).inc(processed)
        metrics.duplicates_dropped.inc(duplicates)
        metrics.batch_records.observe(len(messages))
