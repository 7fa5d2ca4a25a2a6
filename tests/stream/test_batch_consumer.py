"""The consumer loop's answer to a batch that failed on infrastructure: apply the same
batch again after a growing pause, then stop loudly; never skip it."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

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
