"""One partition's buffered changes for one checkpoint, with a lifecycle you can see.

    OPEN ──prepare()──► PREPARED ──commit()──► COMMITTED
      │                    │
      └──────fail()────────┴──────────────────► FAILED

- OPEN: reads see the transaction's own writes first; nothing reaches RocksDB. Several
  writes to one key coalesce into one put and one changelog record. The partition's clock,
  last applied source offset and backfill progress are fields of the transaction too, so
  a batch that fails is discarded whole: nothing outside it was touched, nothing is undone
  by hand.
- PREPARED: sealed. `prepare()` adds the clock and backfill progress to the writes and
  returns them, to be mirrored on the changelog before anything is stored locally.
- COMMITTED: one `WriteBatch` holds the data, the changelog offset and the source offset.
- FAILED: unusable; the partition keeps the state it had before the transaction began.

Every operation checks the status, so a transaction used after its checkpoint (or after a
failure) raises instead of silently writing into a batch that will never be stored.

`savepoint()` / `rollback()` set one record's effects aside when that record cannot be
processed, without re-applying the rest of the batch.

`writes` is a plain dict (insertion order): puts and point reads are the hot path, range
reads are rare (a prune that has something to prune, a history read, the wake-up index).
The sorted view range reads need is built on the first range read and then kept up to date
with `bisect.insort`, so a transaction that never ranges never sorts.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, insort
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from engage_stream.state.keys import CLOCK, END, SWEEP

_DELETED = None
_ABSENT: object = object()


class Store(Protocol):
    """What a transaction reads through and commits to (RocksDB or memory)."""

    def get(self, key: bytes) -> bytes | None: ...

    def range(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def range_reverse(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def write(
        self,
        writes: Mapping[bytes, bytes | None],
        *,
        changelog_offset: int | None,
        source_offset: int | None,
    ) -> None: ...


class Status(enum.Enum):
    OPEN = "open"
    PREPARED = "prepared"
    COMMITTED = "committed"
    FAILED = "failed"


class InvalidTransactionState(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Sweep:
    """Backfill progress of one partition: the definitions epoch being (or fully) applied to
    every stored profile, the last profile visited while it is not done, and `sent`: the
    destinations (per definition key) every profile's current values had reached when the
    last sweep finished — a destination added since gets them in the next sweep; likewise
    `journeys`, the journey versions every profile had been shown (historical entry)."""

    epoch: str | None = None
    cursor: str | None = None
    done: bool = False
    sent: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    journeys: Mapping[str, list[Any]] = field(default_factory=dict)  # key -> [version, status]

    def dumps(self) -> bytes:
        return orjson.dumps([self.epoch, self.cursor, self.done, self.sent, self.journeys])

    @classmethod
    def loads(cls, raw: bytes | None) -> Sweep:
        if raw is None:
            return cls()
        epoch, cursor, done, sent, *rest = orjson.loads(raw)
        journeys = rest[0] if rest else {}
        return cls(epoch, cursor, bool(done), {k: tuple(v) for k, v in sent.items()}, journeys)


def read_clock(store: Store) -> int:
    return int(store.get(CLOCK) or b"0")


def read_sweep(store: Store) -> Sweep:
    return Sweep.loads(store.get(SWEEP))


class Transaction:
    __slots__ = (
        "store",
        "writes",
        "status",
        "clock",
        "source_offset",
        "sweep",
        "wakeup_floor",
        "_sorted",
        "_undo",
        "_opened",
        "_found",
    )

    def __init__(
        self,
        store: Store,
        *,
        clock: int = 0,
        source_offset: int = -1,
        sweep: Sweep | None = None,
        wakeup_floor: int = 0,
    ) -> None:
        self.store = store
        self.writes: dict[bytes, bytes | None] = {}
        self.status = Status.OPEN
        self.clock = clock  # the partition clock: the largest record timestamp applied
        self.source_offset = source_offset  # the last source offset applied
        self.sweep = sweep if sweep is not None else Sweep()
        # no live wake-up index entry is earlier (ProfileStore.wakeup_floor): in memory only,
        # 0 whenever nothing is known (a fresh partition, a recovery)
        self.wakeup_floor = wakeup_floor
        self._opened = (clock, sweep)
        self._sorted: list[bytes] | None = None  # keys of `writes`, once a range read needs it
        self._undo: dict[bytes, object] | None = None  # key -> value before the savepoint
        self._found: dict[bytes, bool] = {}  # key read from the store -> whether it was there

    def _check(self, expected: Status) -> None:
        if self.status is not expected:
            raise InvalidTransactionState(
                f"transaction is {self.status.value}, expected {expected.value}"
            )

    # -- reads and writes (OPEN) ------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        if self.status is not Status.OPEN:
            self._check(Status.OPEN)
        v = self.writes.get(key, _ABSENT)
        if v is _ABSENT:
            stored = self.store.get(key)
            self._found[key] = stored is not None
            return stored
        return v  # type: ignore[return-value]

    def was_stored(self, key: bytes) -> bool | None:
        """Whether the store held `key` when this transaction first read it (None: it did not
        read it) — the store does not change while the transaction is open."""
        return self._found.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._write(key, value)

    def delete(self, key: bytes) -> None:
        self._write(key, _DELETED)

    def _write(self, key: bytes, value: bytes | None) -> None:
        if self.status is not Status.OPEN:
            self._check(Status.OPEN)
        writes = self.writes
        undo = self._undo
        if undo is not None and key not in undo:
            undo[key] = writes.get(key, _ABSENT)
        if self._sorted is not None and key not in writes:
            insort(self._sorted, key)
        writes[key] = value

    def range(
        self, start: bytes, end: bytes, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Merged view of stored and buffered keys in [start, end)."""
        self._check(Status.OPEN)
        keys = self._sorted
        if keys is None:
            keys = self._sorted = sorted(self.writes)
        lo, hi = bisect_left(keys, start), bisect_left(keys, end)
        stored = self.store.range_reverse(start, end) if reverse else self.store.range(start, end)
        if lo == hi:
            yield from stored
            return
        pending = keys[hi - 1 : lo - 1 if lo else None : -1] if reverse else keys[lo:hi]
        yield from _merge(stored, pending, self.writes, reverse)

    def any_under(self, prefix: bytes) -> bool:
        """Whether any key starting with `prefix` exists (stored and not deleted here, or
        written here) — a probe that, unlike `range`, leaves the writes unsorted."""
        self._check(Status.OPEN)
        for k, v in self.writes.items():
            if v is not _DELETED and k.startswith(prefix):
                return True
        for k, _ in self.store.range(prefix, prefix + END):
            if self.writes.get(k, _ABSENT) is not _DELETED:
                return True
        return False

    def __len__(self) -> int:
        return len(self.writes)

    # -- one record's effects ---------------------------------------------------------
    def savepoint(self) -> None:
        """Start recording what the next writes replace, for `rollback`."""
        self._check(Status.OPEN)
        self._undo = {}

    def rollback(self) -> None:
        """Undo every write since `savepoint()` (the record that made them failed)."""
        self._check(Status.OPEN)
        undo, self._undo = self._undo or {}, None
        for key, before in undo.items():
            if before is _ABSENT:
                del self.writes[key]
                if self._sorted is not None:
                    del self._sorted[bisect_left(self._sorted, key)]
            else:
                self.writes[key] = before  # type: ignore[assignment]

    def release(self) -> None:
        """The writes since `savepoint()` stay."""
        self._undo = None

    # -- lifecycle --------------------------------------------------------------------
    @property
    def changed(self) -> bool:
        """Anything to checkpoint: data, or the clock / backfill moved."""
        return bool(self.writes) or (self.clock, self.sweep) != self._opened

    def prepare(self) -> dict[bytes, bytes | None]:
        """Seal: add the partition's clock and backfill progress; return every write (what
        the changelog must hold before the database may)."""
        self._check(Status.OPEN)
        self._undo = None
        self.writes[CLOCK] = str(self.clock).encode()
        if self.sweep != self._opened[1]:
            self.writes[SWEEP] = self.sweep.dumps()
        self.status = Status.PREPARED
        return self.writes

    def commit(self, changelog_offset: int | None) -> None:
        """One atomic local write: data + changelog offset + source offset."""
        self._check(Status.PREPARED)
        self.store.write(
            self.writes, changelog_offset=changelog_offset, source_offset=self.source_offset
        )
        self.status = Status.COMMITTED

    def fail(self) -> None:
        """Discard: nothing of this transaction is stored (from OPEN or PREPARED)."""
        if self.status is Status.COMMITTED:
            raise InvalidTransactionState("a committed transaction cannot fail")
        self.status = Status.FAILED
        self.writes = {}
        self._undo = None


def _merge(
    stored: Iterator[tuple[bytes, bytes]],
    pending: list[bytes],
    writes: dict[bytes, bytes | None],
    reverse: bool,
) -> Iterator[tuple[bytes, bytes]]:
    """Stored entries overlaid with the buffered ones (both already in the read order)."""
    i, n = 0, len(pending)
    for k, v in stored:
        while i < n and (pending[i] < k if not reverse else pending[i] > k):
            pk = pending[i]
            pv = writes[pk]
            if pv is not None:
                yield pk, pv
            i += 1
        if i < n and pending[i] == k:
            pv = writes[k]
            if pv is not None:
                yield k, pv
            i += 1
            continue
        yield k, v
    while i < n:
        pk = pending[i]
        pv = writes[pk]
        if pv is not None:
            yield pk, pv
        i += 1
