"""Opening, recovering and checkpointing the per-partition RocksDB stores against Kafka.

This is the thin transactional layer DESIGN.md asks for under the Faust app: Faust keeps
the consumer group, agents, topics and web; this module owns state durability so that a
crash at any point loses nothing and applies nothing twice (see `state.recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One partition's share of a checkpoint: its buffered writes, the last source offset
    they cover, and the output records they caused."""

    ps: PartitionState
    tx: Transaction
    source_offset: int
    outputs: list[OutgoingRecord]


class PartitionState:
    def __init__(self, partition: int, store: PartitionStore) -> None:
        self.partition = partition
        self.store = store
        self.clock = int(store.get(CLOCK_KEY) or b"0")
        self.needs_catch_up = False
        # Stored profiles, counted once on first recovery and kept current by `write`:
        # RocksDB's key estimate covers every key kind, and a scan per tick costs too much.
        self.profiles: int | None = None

    @property
    def source_offset(self) -> int:
        return self.store.source_offset

    def write(
        self,
        writes: Mapping[bytes, bytes | None],
        *,
        changelog_offset: int | None,
        source_offset: int | None,
    ) -> None:
        """`store.write`, keeping the stored-profile count and its gauge current."""
        counted = self.profiles is not None
        added = _profiles_added(self.store, writes) if counted else 0
        self.store.write(writes, changelog_offset=changelog_offset, source_offset=source_offset)
        if counted:
            self.profiles = (self.profiles or 0) + added
            self._report()

    def count_profiles(self) -> None:
        """Count once, after the first recovery; from then on `write` keeps the count."""
        if self.profiles is None:
            self.profiles = self.store.count(PROFILE)
        self._report()

    def _report(self) -> None:
        metrics.state_profiles.labels(str(self.partition)).set(self.profiles or 0)


def _profiles_added(store: PartitionStore, writes: Mapping[bytes, bytes | None]) -> int:
    """Profile keys created minus removed: one point read per profile the batch wrote (it was
    read moments ago while processing, so it is in the memtable or block cache)."""
    delta = 0
    for key, value in writes.items():
        if key.startswith(PROFILE):
            existed = store.get(key) is not None
            if value is None:
                delta -= existed
            elif not existed:
                delta += 1
    return delta


def _forget_metrics(partition: int) -> None:
    """A partition that moved to another worker is reported there, not here."""
    for gauge in (metrics.state_profiles, metrics.state_keys, metrics.state_bytes):
        with contextlib.suppress(KeyError):  # never reported
            gauge.remove(str(partition))


RECOVERING = "recovering"
READY = "ready"


class PartitionManager:
    """Owns the open partition stores; `status()` says which are usable yet.

    `mark_rebalanced(partitions)` is told the partitions this worker owns after each
    assignment or revocation. Stores of partitions it no longer owns are closed; those it
    owns are brought up to date from the changelog in the background, all at once (one
    task each, so their Kafka round trips overlap), instead of one by one as each
    partition's first batch arrives. `get()` waits for that recovery, or runs it itself
    when nothing started it (tests, the Profile API before the first rebalance).
    """

    def __init__(self, settings: Settings, sender: Sender, recover_on_assign: bool = True) -> None:
        self.settings = settings
        self.sender = sender
        self.root = settings.data_dir / settings.app_id / "state"
        self.open: dict[int, PartitionState] = {}
        self.recover_on_assign = recover_on_assign
        self._owned: set[int] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self._warming: dict[int, asyncio.Task[None]] = {}

    def path(self, partition: int) -> Path:
        return self.root / f"p{partition}"

    def status(self) -> dict[int, str]:
        """Each owned (or open) partition: "recovering" until its state has caught up with
        the changelog — reads and processing wait for that — then "ready"."""
        parts = self._owned | self.open.keys()
        return {
            p: READY if p in self.open and not self.open[p].needs_catch_up else RECOVERING
            for p in sorted(parts)
        }

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
                ps.needs_catch_up = True  # until `_recover` completes, even if it fails
                self.open[partition] = ps
            if ps.needs_catch_up:
                await self._recover(ps)
            return ps

    def mark_rebalanced(self, assigned: Iterable[int]) -> None:
        """After a rebalance another worker may have written our partitions: catch up first."""
        keep = set(assigned)
        self._owned = keep
        for p in list(self._warming):
            if p not in keep:
                self._warming.pop(p).cancel()  # its store is closed below
        for p, ps in list(self.open.items()):
            if p in keep:
                ps.needs_catch_up = True
            else:
                ps.store.close()
                del self.open[p]
                _forget_metrics(p)
        if self.recover_on_assign:
            self._warm(keep)

    def _warm(self, partitions: set[int]) -> None:
        """Start recovering these partitions now, concurrently (needs a running loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside the event loop: `get()` recovers on first use
        for p in sorted(partitions):
            task = self._warming.get(p)
            if task is None or task.done():
                self._warming[p] = loop.create_task(self._warm_one(p), name=f"recover-p{p}")

    async def _warm_one(self, partition: int) -> None:
        try:
            await self.get(partition)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # `get()` on the processing path retries and raises
            log.warning("partition %d: background recovery failed: %r", partition, exc)
        finally:
            if self._warming.get(partition) is asyncio.current_task():
                del self._warming[partition]

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
                        ps.write(writes, changelog_offset=last, source_offset=None)
            ps.write(
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
        ps.count_profiles()
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
        await self.checkpoint_all([Checkpoint(ps, tx, source_offset, outputs)])

    async def checkpoint_all(self, parts: list[Checkpoint]) -> None:
        """Every partition's outputs and changelog to Kafka in one send, acknowledged; then
        one local atomic batch per partition (each with its own changelog and source
        offsets, so recovery is per partition as before)."""
        if not parts:
            return
        started = time.perf_counter()
        changelog_topic = self.settings.changelog_topic
        records: list[OutgoingRecord] = []
        per_topic: dict[str, int] = {}
        for cp in parts:
            cp.tx.put(CLOCK_KEY, str(cp.ps.clock).encode())
            header = [(SOURCE_HEADER, str(cp.source_offset).encode())]
            records.extend(cp.outputs)
            p = cp.ps.partition
            records.extend(
                OutgoingRecord(changelog_topic, key, value, header, p)
                for key, value in cp.tx.writes.items()
            )
            for out in cp.outputs:
                per_topic[out.topic] = per_topic.get(out.topic, 0) + 1
        written = await self.sender.send_many(records)
        for cp in parts:
            last = written.get((changelog_topic, cp.ps.partition))
            cp.ps.write(cp.tx.writes, changelog_offset=last, source_offset=cp.source_offset)
        for topic, n in per_topic.items():
            metrics.labelled(metrics.outputs_produced, topic).inc(n)
        metrics.checkpoint_seconds.observe(time.perf_counter() - started)

    def close(self) -> None:
        for task in self._warming.values():
            task.cancel()
        self._warming.clear()
        for ps in self.open.values():
            ps.store.close()
        self.open.clear()
        self._owned = set()

    def wipe(self) -> None:
        """Delete local state (tests and `worker --reset-local-state`)."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
