"""The checkpoint: how one fetched batch's effects become durable, in four steps.

A checkpoint collects, for every partition a batch touched, the partition's transaction
and the output records its records caused, then `commit()`s them all at once (one produce
round trip for the whole batch, not one per partition: at low rates the acknowledgements,
not the processing, are the latency):

1. Prepare: every transaction is sealed; its writes (with the partition clock and backfill
   progress) become changelog records tagged with the last source offset they cover.
2. Produce output records and changelog records; wait until the broker acknowledged all.
3. Store: one RocksDB `WriteBatch` per partition with the data, the last changelog offset
   and the last source offset.
4. Mark the source offsets committable; the consumer loop commits them on its interval.

Why this order is exact (`state.recovery` is the other half):
- after 2, everything the local database will claim is on the broker, so a database lost
  after 3 is rebuilt from the changelog;
- the consumer offset moves only after 3, so a crash anywhere before it re-delivers the
  batch, and recovery skips changelog records tagged at or above the committed offset that
  the local database never confirmed;
- outputs produced in 2 and produced again after a crash carry the same messageIds.

`faults` is an injection point for tests: called after each step, it may raise to simulate
a crash there (`tests/state/test_checkpoint_crash.py`).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from engage_stream import metrics
from engage_stream.records import OutgoingRecord
from engage_stream.state.partition import PartitionState
from engage_stream.state.recovery import SOURCE_HEADER
from engage_stream.state.transaction import Status, Transaction


class Producer(Protocol):
    async def send_many(self, records: list[OutgoingRecord]) -> dict[tuple[str, int], int]:
        """Produce and wait for acknowledgement; the last offset written per partition."""
        ...


class Step(enum.IntEnum):
    PREPARED = 1
    PRODUCED = 2
    STORED = 3
    COMMITTABLE = 4


class CheckpointFailed(Exception):
    """A checkpoint step failed: nothing of the batch counts; it is consumed again."""


class Committable:
    """Source offsets whose batches are checkpointed, waiting for the consumer's commit.

    Only a checkpoint's step 4 adds to it; the consumer loop takes from it. This is the one
    place where "processed" becomes "committable"."""

    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}

    def mark(self, source: Hashable, next_offset: int) -> None:
        self._next[source] = max(next_offset, self._next.get(source, -1))

    def take(self, only: set[Hashable] | None = None) -> dict[Hashable, int]:
        taken = {s: o for s, o in self._next.items() if only is None or s in only}
        for s in taken:
            del self._next[s]
        return taken

    def restore(self, offsets: dict[Hashable, int]) -> None:
        """A commit that failed: keep the offsets for the next attempt."""
        for s, o in offsets.items():
            self.mark(s, o)

    def forget(self, sources: set[Hashable]) -> None:
        for s in sources:
            self._next.pop(s, None)

    def __bool__(self) -> bool:
        return bool(self._next)


@dataclass(slots=True)
class _Part:
    ps: PartitionState
    tx: Transaction


@dataclass
class Checkpoint:
    producer: Producer
    changelog_topic: str
    offsets: Committable
    faults: Callable[[Step], None] | None = None
    outputs: list[OutgoingRecord] = field(default_factory=list)
    _parts: list[_Part] = field(default_factory=list)
    _sources: dict[Hashable, int] = field(default_factory=dict)

    def add_state(self, ps: PartitionState, tx: Transaction) -> None:
        """A partition's transaction; checkpointed only if it changed anything."""
        if tx.changed:
            self._parts.append(_Part(ps, tx))
        else:
            tx.fail()  # nothing to store: closing it keeps it from being used again

    def add_outputs(self, records: list[OutgoingRecord]) -> None:
        self.outputs.extend(records)

    def consumed(self, source: Hashable, last_offset: int) -> None:
        """`source` (a topic-partition) is done up to `last_offset` once this commits."""
        self._sources[source] = last_offset + 1

    async def commit(self) -> None:
        started = time.perf_counter()
        try:
            await self._commit()
        except BaseException:
            for part in self._parts:
                if part.tx.status is not Status.COMMITTED:
                    part.tx.fail()
            raise
        metrics.checkpoint_seconds.observe(time.perf_counter() - started)

    async def _commit(self) -> None:
        # 1. Prepare: seal each transaction; its writes become tagged changelog records.
        records = list(self.outputs)
        for part in self._parts:
            tag = [(SOURCE_HEADER, str(part.tx.source_offset).encode())]
            p = part.ps.partition
            records.extend(
                OutgoingRecord(self.changelog_topic, key, value, tag, p)
                for key, value in part.tx.prepare().items()
            )
        self._fault(Step.PREPARED)

        # 2. Produce outputs + changelog, acknowledged by the broker.
        written = await self.producer.send_many(records) if records else {}
        # Invariant: every write below is on the changelog; every output is on its topic.
        self._fault(Step.PRODUCED)

        # 3. Store: one atomic local batch per partition (data + changelog + source offset).
        for part in self._parts:
            part.ps.finish(part.tx, written.get((self.changelog_topic, part.ps.partition)))
        # Invariant: each database holds its batch and says up to which source offset.
        self._fault(Step.STORED)

        # 4. Only now may the consumer commit past these records.
        for source, next_offset in self._sources.items():
            self.offsets.mark(source, next_offset)
        self._fault(Step.COMMITTABLE)

        per_topic: dict[str, int] = {}
        for out in self.outputs:
            per_topic[out.topic] = per_topic.get(out.topic, 0) + 1
        for topic, n in per_topic.items():
            metrics.labelled(metrics.outputs_produced, topic).inc(n)

    def _fault(self, step: Step) -> None:
        if self.faults is not None:
            self.faults(step)
