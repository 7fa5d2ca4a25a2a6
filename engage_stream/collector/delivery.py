"""Getting a request's records acknowledged by Kafka, or saying why not in time.

A 200 means the records are on the broker: acks=all on an idempotent producer, so the
producer's own retries never write a record twice and nothing is acknowledged before
every in-sync replica has it. Three things bound what the collector holds while Kafka is
slow or gone:

- **In-flight bytes.** Records handed to the producer count until Kafka acknowledges
  them — not until the HTTP answer, since an idempotent producer keeps retrying a batch
  after its request gave up. Past `max_inflight_bytes` a request is answered 429 with
  Retry-After instead of being buffered.
- **Produce timeout.** A request waits `produce_timeout_s` for its acknowledgement, then
  gets 503 with Retry-After; SDKs retry, and the retry's duplicates (if the first copy
  was written after all) carry the same messageId, which the profiles stage drops.
- **Availability.** A metadata probe runs beside the traffic; while it fails (and from a
  produce timeout until it succeeds again) requests get 503 at once rather than joining
  a queue that cannot drain.

Concurrent requests are produced together (group commit): while one group is on its way
to the broker the next collects, so under load each produce round trip carries many
requests and an idle collector still sends at once. The records are placed by the
project's `Sender` (one batch per partition, Kafka's murmur2 of the key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from engage_stream.collector import metrics
from engage_stream.collector.errors import CollectorError
from engage_stream.collector.settings import CollectorSettings
from engage_stream.config import Settings
from engage_stream.stream.producing import OutgoingRecord, Sender

log = logging.getLogger(__name__)

MAX_GROUP_BYTES = 8 * 1024 * 1024  # one produce round trip; the rest waits for the next


class IdempotentSender(Sender):
    """The project's `Sender` on an idempotent acks=all producer."""

    def __init__(self, bootstrap: str, request_timeout_ms: int) -> None:
        super().__init__(bootstrap)
        self.request_timeout_ms = request_timeout_ms

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=1,
            max_batch_size=1024 * 1024,
            max_request_size=2 * 1024 * 1024,  # a 500 KB batch dead-lettered whole fits
            request_timeout_ms=self.request_timeout_ms,
            client_id="engage-stream-collector",
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer


def _future() -> asyncio.Future[None]:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    # A request that timed out no longer awaits its future: retrieve the outcome anyway.
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return fut


@dataclass
class _Pending:
    records: Sequence[OutgoingRecord]
    size: int
    done: asyncio.Future[None] = field(default_factory=_future)


class Delivery:
    def __init__(self, settings: Settings, config: CollectorSettings) -> None:
        self.settings = settings
        self.config = config
        self.sender = IdempotentSender(
            settings.broker, request_timeout_ms=int(max(config.produce_timeout_s, 5) * 2000)
        )
        self.available = False
        self.reason = "connecting to Kafka"
        self.inflight_bytes = 0
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    async def start(self) -> None:
        """Returns at once; connecting (and re-connecting) goes on in the background."""
        self._tasks = [
            asyncio.create_task(self._watch(), name="collector-kafka-watch"),
            asyncio.create_task(self._flush_loop(), name="collector-produce"),
        ]

    async def stop(self) -> None:
        """Produce what was accepted, then close the producer."""
        self._closing = True
        self._wakeup.set()
        deadline = time.monotonic() + self.config.produce_timeout_s
        while (
            (self._queue or self.inflight_bytes) and self.available and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in self._queue:
            if not pending.done.done():
                pending.done.set_exception(
                    CollectorError.unavailable(
                        "The collector is stopping.", self.config.retry_after_s
                    )
                )
        self._queue.clear()
        # An idempotent producer's stop waits until every batch is acknowledged, which is
        # forever while Kafka is away; those batches' requests were answered 503 (or get
        # it now), so their SDKs still hold the events and will send them again.
        try:
            await asyncio.wait_for(self.sender.stop(), self.config.produce_timeout_s)
        except TimeoutError:
            log.warning(
                "stopped without Kafka's acknowledgement of %d bytes (answered 503: retried "
                "by their senders)",
                self.inflight_bytes,
            )

    def _set_available(self, up: bool, reason: str = "") -> None:
        if up != self.available:
            if up:
                log.info("Kafka reachable on %s", self.settings.broker)
            else:
                log.warning("Kafka unavailable (%s): answering 503", reason)
        self.available = up
        self.reason = "" if up else reason
        metrics.kafka_available.set(1 if up else 0)

    async def _watch(self) -> None:
        """Connect, learn the topics' partitions, then keep probing the cluster."""
        topics = (self.settings.topics.mixed, self.settings.topics.dead_letter)
        while not self._closing:
            try:
                async with asyncio.timeout(self.config.produce_timeout_s * 2):
                    if self.sender.producer is None:
                        await self.sender.start()
                    assert self.sender.producer is not None
                    cluster = await self.sender.producer.client.fetch_all_metadata()
                    missing = [t for t in topics if t not in cluster.topics()]
                    if missing:
                        raise LookupError(
                            f"topic {', '.join(missing)} does not exist "
                            "(`engage-stream topics` creates the worker's topics)"
                        )
                    for topic in topics:
                        await self.sender.partition_of(topic, b"")
                self._set_available(True)
                interval = 2.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure to reach the cluster means: not now
                self._set_available(False, _describe(exc))
                interval = 0.5
            await asyncio.sleep(interval)

    def admit(self, size: int) -> None:
        """Refuse now (503 / 429) what cannot be produced soon; checks, holds nothing."""
        retry = self.config.retry_after_s
        if self._closing:
            raise CollectorError.unavailable("The collector is stopping.", retry)
        if not self.available:
            raise CollectorError.unavailable(f"Kafka is unavailable ({self.reason}).", retry)
        if self.inflight_bytes and self.inflight_bytes + size > self.config.max_inflight_bytes:
            metrics.backpressure.inc()
            raise CollectorError.too_many_requests(
                "backpressure",
                "The collector is waiting for Kafka to acknowledge earlier events.",
                retry,
            )

    async def deliver(self, records: Sequence[OutgoingRecord], size: int) -> None:
        """Wait until Kafka acknowledged `records`; CollectorError 503 / 429 if not."""
        self.admit(size)
        pending = _Pending(records, size)
        self.inflight_bytes += size
        metrics.inflight_bytes.set(self.inflight_bytes)
        self._queue.append(pending)
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(pending.done), self.config.produce_timeout_s)
        except TimeoutError:
            self._set_available(
                False, f"no acknowledgement within {self.config.produce_timeout_s:g}s"
            )
            raise CollectorError.unavailable(
                "Kafka did not acknowledge the events in time.", self.config.retry_after_s
            ) from None

    async def _flush_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and self.sender.producer is not None:
                group: list[_Pending] = []
                size = 0
                while self._queue and (not group or size + self._queue[0].size <= MAX_GROUP_BYTES):
                    pending = self._queue.pop(0)
                    group.append(pending)
                    size += pending.size
                await self._produce(group)

    async def _produce(self, group: list[_Pending]) -> None:
        records = [r for pending in group for r in pending.records]
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            await self.sender.send_many(records)
        except asyncio.CancelledError:
            error = CollectorError.unavailable(
                "The collector is stopping.", self.config.retry_after_s
            )
            raise
        except Exception as exc:  # the broker's answer, whatever it is, goes to the requests
            error = exc
            self._set_available(False, _describe(exc))
        finally:
            metrics.produce_seconds.observe(time.perf_counter() - started)
            for pending in group:
                self.inflight_bytes -= pending.size
                if not pending.done.done():
                    if error is None:
                        pending.done.set_result(None)
                    elif isinstance(error, CollectorError):
                        pending.done.set_exception(error)
                    else:
                        pending.done.set_exception(
                            CollectorError.unavailable(
                                f"Kafka did not accept the events ({_describe(error)}).",
                                self.config.retry_after_s,
                            )
                        )
            metrics.inflight_bytes.set(self.inflight_bytes)
        if error is None:
            self._set_available(True)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
