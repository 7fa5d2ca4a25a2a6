"""One owned partition: its database and what the worker keeps in memory about it."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from engage_stream import metrics
from engage_stream.state.keys import PROFILE
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.transaction import Sweep, Transaction, read_clock, read_sweep


class PartitionState:
    def __init__(self, partition: int, store: PartitionStore, reported: bool = True) -> None:
        self.partition = partition
        self.reported = reported  # exports the engage_state_* gauges of its partition
        self.store = store
        self.clock = read_clock(store)
        self.sweep: Sweep = read_sweep(store)
        self.needs_catch_up = False
        self.wakeup_floor = 0  # Transaction.wakeup_floor as last committed
        # Stored profiles, counted once on first recovery and kept current by `write`:
        # RocksDB's key estimate covers every key kind, and a scan per tick costs too much.
        self.profiles: int | None = None

    @property
    def source_offset(self) -> int:
        return self.store.source_offset

    def begin(self) -> Transaction:
        """A transaction starting from what this partition has committed."""
        return Transaction(
            self.store,
            clock=self.clock,
            source_offset=self.source_offset,
            sweep=self.sweep,
            wakeup_floor=self.wakeup_floor,
        )

    def finish(self, tx: Transaction, changelog_offset: int | None) -> None:
        """Commit a prepared transaction locally; the partition takes its clock and sweep."""
        self._count(tx.writes, tx)
        tx.commit(changelog_offset)
        self.clock, self.sweep, self.wakeup_floor = tx.clock, tx.sweep, tx.wakeup_floor

    def apply_changelog(
        self, writes: Mapping[bytes, bytes | None], up_to: int, resume_at: int | None = None
    ) -> None:
        """Recovery's writes: changelog records up to changelog offset `up_to` (and, once it
        is done, the first source offset not in state), keeping the profile count current."""
        self._count(writes)
        self.wakeup_floor = 0  # the changelog writes wake-ups of its own
        source = resume_at - 1 if resume_at is not None else None
        self.store.write(writes, changelog_offset=up_to, source_offset=source)

    def reload(self) -> None:
        """After recovery wrote the database: what it now says."""
        self.clock = max(self.clock, read_clock(self.store))
        self.sweep = read_sweep(self.store)

    def _count(self, writes: Mapping[bytes, bytes | None], tx: Transaction | None = None) -> None:
        if self.profiles is None:
            return
        self.profiles += _profiles_added(self.store, writes, tx)
        self._report()

    def count_profiles(self) -> None:
        """Count once, after the first recovery; from then on writes keep the count."""
        if self.profiles is None:
            self.profiles = self.store.count(PROFILE)
        self._report()

    def _report(self) -> None:
        if not self.reported:
            return
        metrics.state_profiles.labels(str(self.partition)).set(self.profiles or 0)

    def forget_metrics(self) -> None:
        """A partition that moved to another worker is reported there, not here."""
        if not self.reported:
            return
        for gauge in (metrics.state_profiles, metrics.state_keys, metrics.state_bytes):
            with contextlib.suppress(KeyError):  # never reported
                gauge.remove(str(self.partition))


def _profiles_added(
    store: PartitionStore, writes: Mapping[bytes, bytes | None], tx: Transaction | None = None
) -> int:
    """Profile keys created minus removed. Whether a key existed: as the transaction found
    it when it read it (a profile is read before it is written), else one point read."""
    delta = 0
    for key, value in writes.items():
        if key.startswith(PROFILE):
            existed = tx.was_stored(key) if tx is not None else None
            if existed is None:
                existed = store.get(key) is not None
            if value is None:
                delta -= existed
            elif not existed:
                delta += 1
    return delta
