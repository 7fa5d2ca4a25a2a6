"""A consumer-group member that hands whole fetched batches to a handler, then commits.

Why not a Faust agent: Faust's stream delivers one event at a time through several layers
of Python (measured here: ~1.2k events/s end to end for this worker; the reference measured
~3.3k/s for a trivial agent, against ~117k/s for aiokafka `getmany` + orjson). The product
needs tens of thousands per second per process, and it needs offsets committed only after
the handler's state checkpoint, which Faust's ack/commit cycle does not let us order.
So the data path is this loop (plain aiokafka, batched); Faust stays the application
framework around it: lifecycle, web server, timers, CLI.

Offsets: committed every `commit_interval_s` and on revoke/stop, always for batches the
handler has finished. A crash between handler and commit re-delivers the batch; handlers
are written to make that harmless (see `state.recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.structs import OffsetAndMetadata

from engage_stream import metrics

log = logging.getLogger(__name__)

Batch = dict[TopicPartition, list[ConsumerRecord]]
Handler = Callable[[Batch], Awaitable[None]]
PartitionsCallback = Callable[[set[TopicPartition]], Awaitable[None] | None]


class BatchLoop:
    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        topics: Iterable[str],
        handler: Handler,
        client_id: str,
        commit_interval_s: float,
        max_records: int,
        wait_s: float,
        on_assigned: PartitionsCallback | None = None,
        on_revoked: PartitionsCallback | None = None,
        stage: str = "",
    ) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = list(topics)
        self.handler = handler
        self.client_id = client_id
        self.commit_interval_s = commit_interval_s
        self.max_records = max_records
        self.wait_ms = max(1, int(wait_s * 1000))
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.assignment: set[TopicPartition] = set()
        self.consumer: AIOKafkaConsumer | None = None
        self._pending: dict[TopicPartition, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_commit = time.monotonic()
        self.started = asyncio.Event()
        self._batch_seconds = metrics.batch_seconds.labels(stage)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=300_000,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self.consumer = consumer
        consumer.subscribe(topics=self.topics, listener=_Listener(self))
        await consumer.start()
        self.started.set()
        try:
            while True:
                batch = await consumer.getmany(
                    timeout_ms=self.wait_ms, max_records=self.max_records
                )
                batch = {tp: recs for tp, recs in batch.items() if recs and tp in self.assignment}
                if batch:
                    self._idle.clear()
                    started = time.perf_counter()
                    try:
                        await self.handler(batch)
                        for tp, recs in batch.items():
                            self._pending[tp] = recs[-1].offset + 1
                    finally:
                        self._idle.set()
                    self._batch_seconds.observe(time.perf_counter() - started)
                if self._pending and time.monotonic() - self._last_commit >= self.commit_interval_s:
                    await self.commit()
        finally:
            with contextlib.suppress(Exception):
                if self._idle.is_set():
                    await self.commit()
            await consumer.stop()

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        if self.consumer is None:
            return
        offsets = {
            tp: OffsetAndMetadata(off, "")
            for tp, off in self._pending.items()
            if (only is None or tp in only) and tp in self.assignment
        }
        self._last_commit = time.monotonic()
        if not offsets:
            return
        await self.consumer.commit(offsets)
        for tp in offsets:
            self._pending.pop(tp, None)

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        # The rebalance runs beside the loop: let the batch in hand finish and commit it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=60)
        try:
            await self.commit(only=revoked)
        except Exception as exc:  # the group moved on; the new owner re-processes
            log.warning("%s: commit on revoke failed: %r", self.group_id, exc)
        for tp in revoked:
            self._pending.pop(tp, None)
        self.assignment -= revoked
        if self.on_revoked:
            await _maybe_await(self.on_revoked(revoked))

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        self.assignment = set(assigned)
        if self.on_assigned:
            await _maybe_await(self.on_assigned(set(assigned)))

    def owned(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.assignment if tp.topic == topic}


class _Listener(ConsumerRebalanceListener):
    def __init__(self, loop: BatchLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.loop._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.loop._assigned(set(assigned))


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result
