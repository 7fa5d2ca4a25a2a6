"""The consumer loop's answer to a batch that failed on infrastructure: apply the same
batch again after a growing pause, then stop loudly; never skip it."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from aiokafka import TopicPartition
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from engage_stream import metrics
from engage_stream.state.checkpoint import Committable
from engage_stream.state.partition_store import StorageError
from engage_stream.stream.batch_consumer import Batch, BatchLoop
from engage_stream.stream.options import RetryOptions

TP = TopicPartition("t", 0)


def _loop(handler, attempts: int = 4) -> BatchLoop:  # type: ignore[no-untyped-def]
    loop = BatchLoop(
        bootstrap="127.0.0.1:1",
        group_id="g",
        topics=["t"],
        handler=handler,
        offsets=Committable(),
        client_id="c",
        commit_interval_s=1,
        max_records=10,
        wait_s=0.01,
        retry=RetryOptions(attempts=attempts, first_backoff_s=0.001, max_backoff_s=0.004),
    )
    loop.assignment = {TP}
    return loop


def test_a_failing_batch_is_applied_again_until_it_succeeds() -> None:
    seen: list[Batch] = []

    async def flaky(batch: Batch) -> None:
        seen.append(batch)
        if len(seen) < 3:
            raise StorageError("disk busy")

    batch: Batch = {TP: []}
    asyncio.run(_loop(flaky)._handle(batch))
    assert seen == [batch, batch, batch], "the same batch, nothing skipped"


def test_a_batch_that_keeps_failing_stops_the_loop_after_the_last_attempt() -> None:
    calls = 0

    async def broken(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        raise StorageError("disk gone")

    with pytest.raises(StorageError):
        asyncio.run(_loop(broken, attempts=3)._handle({TP: []}))
    assert calls == 3


def test_a_batch_revoked_while_waiting_is_left_to_the_new_owner() -> None:
    calls = 0
    loop: BatchLoop

    async def once(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        loop.assignment = set()  # a rebalance took the partition meanwhile
        raise StorageError("broker unreachable")

    loop = _loop(once)
    asyncio.run(loop._handle({TP: []}))
    assert calls == 1


@pytest.mark.broker
def test_the_consumer_lag_in_records_is_exported_per_partition(kafka_broker: str) -> None:
    """100 records waiting on one partition, consumed 10 at a time: while the second batch
    is handled, 90 are not processed yet; at the end none is."""
    topic = f"lag-{time.time_ns()}"
    KafkaAdminClient(bootstrap_servers=kafka_broker).create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1)]
    )
    producer = KafkaProducer(bootstrap_servers=kafka_broker)
    for i in range(100):
        producer.send(topic, value=b"%d" % i, partition=0)
    producer.flush()
    producer.close()
    gauge = metrics.consumer_lag.labels("lagtest", "0")
    during: list[float] = []
    done = asyncio.Event()
    handled = 0

    async def handler(batch: Batch) -> None:
        nonlocal handled
        if handled == 10:
            during.append(gauge._value.get())
        handled += sum(len(r) for r in batch.values())
        if handled >= 100:
            done.set()

    async def main() -> float:
        loop = BatchLoop(
            bootstrap=kafka_broker,
            group_id=f"g-{topic}",
            topics=[topic],
            handler=handler,
            offsets=Committable(),
            client_id="c",
            commit_interval_s=1,
            max_records=10,
            wait_s=0.05,
            stage="lagtest",
        )
        task = asyncio.create_task(loop.run())
        await asyncio.wait_for(done.wait(), 60)
        await asyncio.sleep(0.3)  # one more turn of the loop measures the end
        value = gauge._value.get()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return value

    assert asyncio.run(main()) == 0
    assert during == [90]
