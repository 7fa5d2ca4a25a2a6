"""Drives a stateful stage over fetched batches, one checkpoint each.

The Kafka side of `profiles.stage` and `identity.stage`: for every partition in a fetched
batch, a transaction from the partition's committed state, the stage applied to its
records, and one checkpoint (`state.checkpoint`) for the whole batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from engage_stream.records import OutgoingRecord, SourceRecord
from engage_stream.state.checkpoint import Checkpoint, Committable, Producer, Step
from engage_stream.state.transaction import Status, Transaction
from engage_stream.stream.batch_consumer import Batch
from engage_stream.stream.originals import Originals
from engage_stream.stream.partitions import PartitionManager


class Result(Protocol):
    @property
    def outputs(self) -> list[OutgoingRecord]: ...


class Stage(Protocol):
    def apply(self, tx: Transaction, records: Sequence[SourceRecord]) -> Any: ...


class StageBatches:
    def __init__(
        self,
        stage: Stage,
        partitions: PartitionManager,
        producer: Producer,
        offsets: Committable,
        count: Callable[[int, Any], None] | None = None,
        faults: Callable[[Step], None] | None = None,
        originals: Originals | None = None,
    ) -> None:
        self.stage = stage
        self.partitions = partitions
        self.producer = producer
        self.offsets = offsets
        self.count = count  # metrics of one partition's result, once its checkpoint is durable
        self.faults = faults  # tests: a crash injected after a checkpoint step
        self.originals = originals  # dead letters get their input record's bytes back
        self.ready = asyncio.Event()  # set when the stage may run (its definitions, ...)

    async def handle(self, batch: Batch) -> None:
        await self.ready.wait()
        checkpoint = Checkpoint(
            self.producer, self.partitions.changelog_topic, self.offsets, self.faults
        )
        opened: list[Transaction] = []
        results: list[tuple[int, Any]] = []
        try:
            for tp, records in batch.items():
                ps = await self.partitions.get(tp.partition)
                tx = ps.begin()
                opened.append(tx)
                result = self.stage.apply(tx, records)
                if self.originals is not None:
                    await self.originals.restore(result.outputs)
                checkpoint.add_state(ps, tx)
                checkpoint.add_outputs(result.outputs)
                checkpoint.consumed(tp, records[-1].offset)
                results.append((tp.partition, result))
            await checkpoint.commit()
        except BaseException:
            for tx in opened:
                if tx.status in (Status.OPEN, Status.PREPARED):
                    tx.fail()
            raise
        if self.count is not None:
            for partition, result in results:
                self.count(partition, result)
