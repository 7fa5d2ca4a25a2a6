"""Applies one batch of internal `profile-events` records per partition, then checkpoints.

Records are either profile events or clock ticks. The partition clock is the largest
record timestamp seen (set by ingest and the tick timer when they produced), so the clock
is part of the stream: reprocessing the same partition replays the same clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.events import ProfileEvent
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.profiles.processor import EngineLike, ProcessorSettings, ProfileProcessor
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.transaction import Transaction
from engage_stream.stream.batch_consumer import Batch
from engage_stream.stream.emit import NoRecords, RecordBuilder, forget_members
from engage_stream.stream.partitions import (
    CLOCK_KEY,
    Checkpoint,
    PartitionManager,
    PartitionState,
)
from engage_stream.stream.producing import OutgoingRecord

TICK_KEY = b"\x00tick"

log = logging.getLogger(__name__)


class ProfileRuntime:
    def __init__(self, settings: Settings, partitions: PartitionManager) -> None:
        self.settings = settings
        self.partitions = partitions
        self.processor = ProfileProcessor(
            None, ProcessorSettings(history_ms=settings.history_ms, dedup_ms=settings.dedup_ms)
        )
        self.build_records: RecordBuilder = NoRecords()
        self.processor.on_drop = forget_members
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
        """One fetched batch of the profile-events topic: every partition's records applied,
        then one checkpoint for all of them (one produce round trip, not one per partition:
        at low rates the acknowledgements, not the processing, are the latency)."""
        # Never evaluate with a partial definition set: wait for the definitions topic.
        await self.definitions_ready.wait()
        done: list[tuple[PartitionState, _Applied]] = []
        for tp, records in batch.items():
            ps = await self.partitions.get(tp.partition)
            applied = self._apply_isolated(ps, records)
            metrics.records_already_applied.inc(applied.skipped)
            if applied.last is not None:
                done.append((ps, applied))
        await self.partitions.checkpoint_all(
            [Checkpoint(ps, a.tx, a.last, a.outputs) for ps, a in done if a.tx.writes or a.outputs]  # type: ignore[arg-type]
        )
        for ps, a in done:
            if not (a.tx.writes or a.outputs):  # only clock ticks with nothing due
                ps.store.write(
                    {CLOCK_KEY: str(ps.clock).encode()}, changelog_offset=None, source_offset=a.last
                )
            metrics.events_processed.labels(str(ps.partition)).inc(a.processed)
            metrics.duplicates_dropped.inc(a.duplicates)
            if a.failed:
                metrics.labelled(metrics.dead_lettered, PROCESSING_FAILED).inc(len(a.failed))
        for records in batch.values():
            metrics.batch_records.observe(len(records))

    def _sweep(self, partition: int, store: ProfileStore, clock: int) -> list[OutgoingRecord]:
        """One bounded chunk of the backfill after a definitions change (runs in the batch's
        transaction, so its outputs and state commit together)."""
        result = self.processor.sweep(
            store,
            clock,
            self._cursor.get(partition),
            self.settings.backfill_chunk,
            self._on_profile_error,
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

    def _apply_isolated(self, ps: PartitionState, messages: list[ConsumerRecord]) -> _Applied:
        """`_apply`, with every record it cannot process set aside for the dead-letter topic."""
        failed: dict[int, DeadLetter] = {}
        while True:
            try:
                return self._apply(ps, messages, failed)
            except _RecordFailed as exc:
                # Data the processor cannot handle must not stop the stream (DESIGN §9): the
                # batch's buffered effects are discarded, the record is set aside for the
                # dead-letter topic and the batch is applied again without it.
                log.error(
                    "partition %d offset %d: processing failed, dead-lettered: %s",
                    ps.partition,
                    exc.msg.offset,
                    exc.detail,
                    exc_info=exc.__cause__,
                )
                failed[exc.msg.offset] = DeadLetter(
                    reason=PROCESSING_FAILED,
                    detail=exc.detail,
                    topic=exc.msg.topic,
                    partition=exc.msg.partition,
                    offset=exc.msg.offset,
                    timestamp_ms=exc.msg.timestamp,
                )

    def _apply(
        self, ps: PartitionState, messages: list[ConsumerRecord], failed: dict[int, DeadLetter]
    ) -> _Applied:
        """The batch's effects, buffered in a fresh transaction (nothing is stored yet), so
        a failed record can be taken out by applying the batch again. `failed` records go
        to the dead-letter topic in the same checkpoint."""
        partition = ps.partition
        clock, cursor, swept = ps.clock, self._cursor.get(partition), self._swept.get(partition)
        applied_up_to = ps.source_offset
        tx = Transaction(ps.store)
        store = ProfileStore(tx)
        out = _Applied(tx, failed=failed)
        outputs = out.outputs
        wall = time.time()
        try:
            if self._swept.get(partition) != self.processor.epoch:
                outputs.extend(self._sweep(partition, store, ps.clock))
            dead_letter = self.settings.topics.dead_letter
            for msg in messages:
                if msg.offset <= applied_up_to:
                    out.skipped += 1  # its effects are already in state (recovered or re-delivered)
                    continue
                ps.clock = max(ps.clock, msg.timestamp)
                out.last = msg.offset
                dl = failed.get(msg.offset)
                if dl is not None:
                    outputs.append(
                        OutgoingRecord(dead_letter, msg.key, msg.value or b"", dl.headers())
                    )
                    continue
                try:
                    if msg.key == TICK_KEY:
                        started = time.perf_counter()
                        changes = self.processor.advance(store, ps.clock, self._on_profile_error)
                        metrics.timers_fired.inc(len(changes))
                        metrics.timer_sweep_seconds.observe(time.perf_counter() - started)
                        if changes:
                            outputs.extend(self.build_records(changes, store))
                    else:
                        event = ProfileEvent.from_json(msg.value)
                        outcome = self.processor.apply(store, event, ps.clock)
                        if outcome.duplicate:
                            out.duplicates += 1
                        else:
                            out.processed += 1
                            metrics.processing_lag.observe(max(0.0, wall - event.timestamp / 1000))
                        if outcome.changes:
                            outputs.extend(
                                self.build_records(outcome.changes, store, outcome.record)
                            )
                        if outcome.added_ids:
                            outputs.extend(
                                self.build_records.resync(store, event, outcome, ps.clock)
                            )
                except Exception as exc:
                    raise _RecordFailed(msg, f"{type(exc).__name__}: {exc}"[:1000]) from exc
        except BaseException:
            # undo what this attempt did to the partition's in-memory bookkeeping
            ps.clock = clock
            if cursor is None:
                self._cursor.pop(partition, None)
            else:
                self._cursor[partition] = cursor
            if swept is None:
                self._swept.pop(partition, None)
            else:
                self._swept[partition] = swept
            raise
        return out

    def _on_profile_error(self, profile_id: str, exc: Exception) -> None:
        """A due (or backfilled) profile whose evaluation fails is left as it was — nothing
        of it was written — and retried when next due or touched; the others go on."""
        metrics.labelled(metrics.processing_errors, "profiles").inc()
        log.error("profile %s: evaluation failed: %s", profile_id, exc, exc_info=exc)


PROCESSING_FAILED = "processing_failed"  # dead-letter reason of the profiles stage


class _RecordFailed(Exception):
    def __init__(self, msg: ConsumerRecord, detail: str) -> None:
        super().__init__(detail)
        self.msg, self.detail = msg, detail


@dataclass
class _Applied:
    tx: Transaction
    outputs: list[OutgoingRecord] = field(default_factory=list)
    last: int | None = None
    processed: int = 0
    duplicates: int = 0
    skipped: int = 0
    failed: dict[int, DeadLetter] = field(default_factory=dict)
