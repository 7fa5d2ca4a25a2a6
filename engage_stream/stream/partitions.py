"""Opening and recovering the per-partition RocksDB stores against the changelog.

Part of the thin transactional layer DESIGN.md asks for under the Faust app: this module
opens the partitions a worker owns and brings each up to date from the changelog topic
(`state.recovery` decides which records apply); `state.checkpoint` writes them.
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
from aiokafka.errors import KafkaError

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.state.partition import PartitionState
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.recovery import must_rebuild, resume_from, should_apply, tag_of

log = logging.getLogger(__name__)


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

    def __init__(
        self,
        settings: Settings,
        recover_on_assign: bool = True,
        *,
        source_topic: str | None = None,
        changelog_topic: str | None = None,
        group_id: str | None = None,
        name: str = "state",
    ) -> None:
        """Defaults: the profiles stage's (`profile-events`, its changelog, the app's
        group); the identity stage passes its own."""
        self.settings = settings
        self.source_topic = source_topic or settings.topics.profile_events
        self.changelog_topic = changelog_topic or settings.changelog_topic
        self.group_id = group_id or settings.app_id
        self.root = settings.data_dir / settings.app_id / name
        # the per-partition state gauges describe profile-events partitions only
        self.reported = self.source_topic == settings.topics.profile_events
        self.open: dict[int, PartitionState] = {}
        self.recover_on_assign = recover_on_assign
        self._owned: set[int] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self._warming: dict[int, asyncio.Task[None]] = {}
        metrics.partitions_recovering.labels(name).set_function(self._recovering)

    def _recovering(self) -> int:
        """Read from `status()` when scraped, so the gauge says what `/health` says and
        cannot be left behind by a recovery that failed or was cancelled."""
        return sum(st == RECOVERING for st in self.status().values())

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
                store = PartitionStore(self.path(partition), self.settings.rocksdb)
                ps = PartitionState(partition, store, reported=self.reported)
                ps.needs_catch_up = True  # until `_recover` completes, even if it fails
                self.open[partition] = ps
            if ps.needs_catch_up:
                ps = await self._recover(ps)
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
                ps.forget_metrics()
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
        """The group's committed offset for the partition (retrying while the broker is
        still electing the group coordinator, as on a fresh cluster)."""
        tp = TopicPartition(self.source_topic, partition)
        for attempt in range(20):
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.broker)
            await admin.start()
            try:
                offsets = await admin.list_consumer_group_offsets(self.group_id, partitions=[tp])
            except KafkaError as exc:
                if not exc.retriable or attempt == 19:
                    raise
                await asyncio.sleep(0.5)
                continue
            finally:
                await admin.close()
            meta = offsets.get(tp)
            return meta.offset if meta is not None and meta.offset >= 0 else None
        return None

    def _rebuilt(self, ps: PartitionState) -> PartitionState:
        """The partition's database deleted and opened again empty (recovery.must_rebuild)."""
        ps.store.close()
        shutil.rmtree(self.path(ps.partition), ignore_errors=True)
        store = PartitionStore(self.path(ps.partition), self.settings.rocksdb)
        fresh = PartitionState(ps.partition, store, reported=self.reported)
        fresh.needs_catch_up = True
        self.open[ps.partition] = fresh
        metrics.recovery_rebuilds.inc()
        return fresh

    async def _recover(self, ps: PartitionState) -> PartitionState:
        """Bring `ps` up to date from the changelog; returns the state to use (a new one
        when its database had to be rebuilt)."""
        started = time.perf_counter()
        committed = await self._committed(ps.partition)
        tp = TopicPartition(self.changelog_topic, ps.partition)
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
            if must_rebuild(committed, ps.store.source_offset, ps.store.changelog_offset, end):
                log.warning(
                    "partition %d: the local state holds source offsets up to %d beyond the "
                    "committed %s, and another worker has written the changelog since: "
                    "rebuilding it from the changelog",
                    ps.partition,
                    ps.store.source_offset,
                    committed,
                )
                ps = self._rebuilt(ps)
            resume = resume_from(committed, ps.store.source_offset)
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
                        ps.apply_changelog(writes, last)
            ps.apply_changelog({}, max(end - 1, ps.store.changelog_offset), resume_at=resume)
        finally:
            await consumer.stop()
        ps.reload()
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
        return ps

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
