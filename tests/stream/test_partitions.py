"""PartitionManager without a broker: readiness, background recovery, revocation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.stream.partitions import PartitionManager, PartitionState


class FakeRecovery(PartitionManager):
    """`_recover` replaced: each partition waits for its gate (or fails if told to)."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(Settings(data_dir=tmp_path))
        self.gates: dict[int, asyncio.Event] = {}
        self.fail: set[int] = set()
        self.started: list[int] = []
        self.running = 0
        self.max_running = 0

    async def _recover(self, ps: PartitionState) -> None:
        self.started.append(ps.partition)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await self.gates.setdefault(ps.partition, asyncio.Event()).wait()
            if ps.partition in self.fail:
                raise ConnectionError("broker gone")
        finally:
            self.running -= 1
        ps.needs_catch_up = False


async def _until(check, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def test_assigned_partitions_recover_concurrently_and_report_status(tmp_path: Path) -> None:
    async def go() -> None:
        pm = FakeRecovery(tmp_path)
        assert pm.status() == {}
        pm.mark_rebalanced([2, 0, 1])
        assert pm.status() == {0: "recovering", 1: "recovering", 2: "recovering"}
        await _until(lambda: pm.running == 3)
        assert pm.max_running == 3, "all three recover at once, not one by one"
        pm.gates[1].set()
        await _until(lambda: pm.status()[1] == "ready")
        assert pm.status() == {0: "recovering", 1: "ready", 2: "recovering"}
        # processing waits for a partition still recovering, then gets the same state
        waiter = asyncio.create_task(pm.get(0))
        await asyncio.sleep(0.02)
        assert not waiter.done()
        pm.gates[0].set()
        ps = await waiter
        assert ps is pm.open[0] and pm.status()[0] == "ready"
        assert sorted(pm.started) == [0, 1, 2], "each recovered once"
        pm.gates[2].set()
        await _until(lambda: pm.status()[2] == "ready")
        pm.close()
        assert pm.status() == {}

    asyncio.run(go())


def test_a_failed_recovery_is_not_taken_for_a_recovered_partition(tmp_path: Path) -> None:
    async def go() -> None:
        pm = FakeRecovery(tmp_path)
        pm.fail.add(0)
        pm.gates[0] = asyncio.Event()
        pm.gates[0].set()
        with pytest.raises(ConnectionError):
            await pm.get(0)
        assert pm.status() == {0: "recovering"}
        pm.fail.clear()
        await pm.get(0)
        assert pm.started == [0, 0] and pm.status() == {0: "ready"}
        pm.close()

    asyncio.run(go())


def test_revocation_cancels_recovery_and_closes_the_store(tmp_path: Path) -> None:
    async def go() -> None:
        pm = FakeRecovery(tmp_path)
        pm.mark_rebalanced([0, 1])
        await _until(lambda: pm.running == 2)
        pm.mark_rebalanced([1])  # partition 0 went to another worker mid-recovery
        await _until(lambda: pm.running == 1)
        assert pm.status() == {1: "recovering"} and 0 not in pm.open
        pm.gates[1].set()
        await _until(lambda: pm.status() == {1: "ready"})
        pm.mark_rebalanced([1])  # a later rebalance: catch up again before use
        assert pm.status() == {1: "recovering"}
        await _until(lambda: pm.status() == {1: "ready"})
        assert pm.started == [0, 1, 1]
        pm.close()

    asyncio.run(go())


def test_outside_the_event_loop_recovery_waits_for_first_use(tmp_path: Path) -> None:
    pm = FakeRecovery(tmp_path)
    pm.mark_rebalanced([3])
    assert pm.started == [] and pm.status() == {3: "recovering"}

    async def go() -> None:
        pm.gates[3] = asyncio.Event()
        pm.gates[3].set()
        await pm.get(3)

    asyncio.run(go())
    assert pm.status() == {3: "ready"}
    pm.close()


def test_the_recovering_gauge_counts_partitions_not_ready_yet(tmp_path: Path) -> None:
    def recovering() -> float | None:
        return metrics.REGISTRY.get_sample_value("engage_partitions_recovering", {"store": "state"})

    async def go() -> None:
        pm = FakeRecovery(tmp_path)
        assert recovering() == 0
        pm.mark_rebalanced([0, 1])
        assert recovering() == 2
        await _until(lambda: pm.running == 2)
        pm.fail.add(1)
        pm.gates[0].set()
        pm.gates[1].set()
        await _until(lambda: pm.running == 0)
        assert recovering() == 1, "a failed recovery still counts as recovering"
        pm.fail.clear()
        await pm.get(1)
        assert recovering() == 0
        pm.close()

    asyncio.run(go())
