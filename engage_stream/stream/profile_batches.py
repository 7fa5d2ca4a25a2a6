"""Drives the profiles stage over fetched batches of `profile-events`, one checkpoint each.

The Kafka side of `profiles.stage`: for every partition in a fetched batch, a transaction
from the partition's committed state, the stage applied to its records, and one checkpoint
(`state.checkpoint`) for the whole batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.profiles.stage import PROCESSING_FAILED, ProfileStage
from engage_stream.state.checkpoint import Checkpoint, Committable, Producer, Step
from engage_stream.state.transaction import Status, Transaction
from engage_stream.stream.batch_consumer import Batch
from engage_stream.stream.partitions import PartitionManager


class ProfileBatches:
    def __init__(
        self,
        settings: Settings,
        stage: ProfileStage,
        partitions: PartitionManager,
        producer: Producer,
        offsets: Committable,
        faults: Callable[[Step], None] | None = None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.partitions = partitions
        self.producer = producer
        self.offsets = offsets
        self.faults = faults  # tests: a crash injected after a checkpoint step
        self.definitions_ready = asyncio.Event()

    async def handle(self, batch: Batch) -> None:
        # Never evaluate with a partial definition set: wait for the definitions topic.
        await self.definitions_ready.wait()
        checkpoint = Checkpoint(
            self.producer, self.settings.changelog_topic, self.offsets, self.faults
        )
        opened: list[Transaction] = []
        counts: list[tuple[int, int, int, int, int]] = []
        try:
            for tp, records in batch.items():
                ps = await self.partitions.get(tp.partition)
                tx = ps.begin()
                opened.append(tx)
                result = self.stage.apply(tx, records)
                checkpoint.add_state(ps, tx)
                checkpoint.add_outputs(result.outputs)
                checkpoint.consumed(tp, records[-1].offset)
                counts.append(
                    (
                        tp.partition,
                        result.processed,
                        result.duplicates,
                        result.skipped,
                        result.failed,
                    )
                )
                metrics.timers_fired.inc(result.timers_fired)
            await checkpoint.commit()
        except BaseException:
            for tx in opened:
                if tx.status in (Status.OPEN, Status.PREPARED):
                    tx.fail()
            raise
        # Counted once the checkpoint is durable (a failed batch is applied again).
        for partition, processed, duplicates, skipped, failed in counts:
            metrics.events_processed.labels(str(partition)).inc(processed)
            metrics.duplicates_dropped.inc(duplicates)
            metrics.records_already_applied.inc(skipped)
            if failed:
                metrics.labelled(metrics.dead_lettered, PROCESSING_FAILED).inc(failed)
        for records in batch.values():
            metrics.batch_records.observe(len(records))
