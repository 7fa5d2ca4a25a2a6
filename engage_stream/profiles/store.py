"""Profile state laid out on an ordered key-value store (keys: `state.keys`).

The wake-up index (`t:`) is what makes window exits fire with no new input: it is persisted
with the profile in the same batch and rebuilt from the changelog like any other key.

The header. Opening two RocksDB iterators per event (history lookback, dedup window) when
there is almost never anything to remove, and a `d:` key per messageId (a changelog record,
and later its tombstone), would dominate the cost of an event. So the profile value starts
with a small header, written in the same put as the record, so it costs no key, read or
changelog record of its own: `[oldest history ms, oldest d: arrival ms, inline]`.
- History is pruned exactly to the lookback, but only scanned when the oldest stored event
  is older than the cutoff; the scan that removes entries finds the new oldest.
- The dedup window of a quiet profile (at most `INLINE_SEEN` messageIds in the window) is
  `inline` — messageId → arrival ms in the header itself: no `d:` keys, no lookups, no
  scans. One more and the profile spills to `d:` keys (`inline` becomes null); those are
  swept lazily, once the oldest is `slack_ms` past the horizon, everything past the horizon
  in one scan (`seen_at` compares arrival times itself, so an entry kept a little longer
  never makes a duplicate; a quarter-window slack bounds the amortised scan to a few
  entries per event whatever the rate). A sweep that leaves nothing goes back to inline.

Decoded profiles between events (`RecordCache`). Decoding a stored profile (the header and
the record, ~25 trait values) is a tenth of a worker's time, and an active profile's next
event usually comes within a few batches. A profile put through a store with a cache is
kept decoded beside the bytes it was stored as; the next `get` returns it — without decoding
— only if the bytes read now are exactly those (a rollback, a failed batch, a recovery, a
merge or any other writer makes them differ: it is decoded again). `get` hands the object
over and `put` hands it back, so one that was read and changed but never stored (a failed
evaluation) cannot be returned: the cache only ever holds what `loads` of its bytes gives.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import orjson

from engage_stream.events import ProfileEvent
from engage_stream.profiles.record import ProfileRecord
from engage_stream.state.keys import END as _END
from engage_stream.state.keys import EPOCH, HISTORY, PROFILE, SEEN, SEP, WAKEUP
from engage_stream.state.keys import ts13 as _ts
from engage_stream.state.kv import KV

__all__ = ["HISTORY", "INLINE_SEEN", "PROFILE", "SEEN", "WAKEUP", "ProfileStore", "RecordCache"]

INLINE_SEEN = 16  # messageIds a profile's dedup window keeps in its header before spilling

# The profile value: marker byte (JSON never starts with it), header length, header, body.
_MARK = b"\x01"
_LEN = struct.Struct(">I")
_AT = len(_MARK) + _LEN.size
NONE = 2**63 - 1  # nothing stored: nothing can be old enough to prune


class _Books:
    """Per-profile bookkeeping carried in the profile value's header."""

    __slots__ = ("oldest_history", "oldest_seen", "inline")

    def __init__(
        self,
        oldest_history: int = NONE,
        oldest_seen: int = NONE,
        inline: dict[str, int] | None = None,
    ) -> None:
        self.oldest_history = oldest_history
        self.oldest_seen = oldest_seen  # of the `d:` keys (spilled profiles)
        self.inline = inline  # messageId -> arrival ms, or None once spilled to `d:` keys

    def header(self) -> bytes:
        h = orjson.dumps([self.oldest_history, self.oldest_seen, self.inline])
        return _MARK + _LEN.pack(len(h)) + h


def _new_books() -> _Books:
    return _Books(NONE, NONE, {})


class RecordCache:
    """Profiles of one partition, decoded, each with the bytes it was stored as, up to
    `capacity_bytes` of those bytes (decoded, a profile takes ~2.5× its stored size); the
    least recently stored go first. `verify`: every hit is checked against a fresh decode of
    its bytes (tests; it costs what the cache saves)."""

    __slots__ = ("capacity_bytes", "verify", "hits", "misses", "_entries", "_bytes")

    def __init__(self, capacity_bytes: int, verify: bool = False) -> None:
        self.capacity_bytes = capacity_bytes
        self.verify = verify
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[bytes, _Books, ProfileRecord]] = OrderedDict()
        self._bytes = 0  # stored bytes of the entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def take(self, profile_id: str, raw: bytes) -> tuple[_Books, ProfileRecord] | None:
        """The decoded profile, if `raw` (as read now) is what it was stored as; it leaves
        the cache either way (the caller owns it until it puts it back)."""
        entry = self._entries.pop(profile_id, None)
        if entry is not None:
            self._bytes -= len(entry[0])
        if entry is None or entry[0] != raw:
            self.misses += 1
            return None
        self.hits += 1
        _, books, record = entry
        if self.verify:
            fresh_books, body = _split(raw)
            fresh = ProfileRecord.loads(body)  # type: ignore[arg-type]
            if fresh != record or fresh_books.header() != books.header():
                raise AssertionError(f"record cache: {profile_id} differs from its bytes")
        return books, record

    def keep(self, profile_id: str, raw: bytes, books: _Books, record: ProfileRecord) -> None:
        entries = self._entries
        old = entries.pop(profile_id, None)
        if old is not None:
            self._bytes -= len(old[0])
        entries[profile_id] = (raw, books, record)
        self._bytes += len(raw)
        while self._bytes > self.capacity_bytes and entries:
            _, (gone, _, _) = entries.popitem(last=False)
            self._bytes -= len(gone)

    def discard(self, profile_id: str) -> None:
        entry = self._entries.pop(profile_id, None)
        if entry is not None:
            self._bytes -= len(entry[0])

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


def _split(raw: bytes) -> tuple[_Books, memoryview]:
    if raw[:1] != _MARK:
        raise ValueError("a stored profile value without its header (not this state format)")
    (n,) = _LEN.unpack_from(raw, 1)
    view = memoryview(raw)
    h, s, inline = orjson.loads(view[_AT : _AT + n])
    return _Books(h, s, inline), view[_AT + n :]


def seen_in_header(value: bytes) -> list[str]:
    """The messageIds a stored profile value keeps inline (for tools reading the changelog)."""
    books, _ = _split(value)
    return list(books.inline or ())


class ProfileStore:
    def __init__(self, kv: KV, wakeup_floor: int = 0, cache: RecordCache | None = None) -> None:
        self.kv = kv
        self.cache = cache if cache is not None and cache.capacity_bytes > 0 else None
        # No live wake-up index entry is earlier than this. Fired entries are deleted, and
        # RocksDB keeps their tombstones until a compaction: a scan from the index's start
        # would step over every wake-up ever fired in the partition (1.5 ms per tick after
        # 5,000 in bench/journey_bench.py, and growing), so `due` seeks here instead. The
        # partition carries it from one transaction to the next (`Transaction.wakeup_floor`).
        self.wakeup_floor = wakeup_floor
        # Bookkeeping of profiles read or changed through this store and not yet put back.
        # Every write path goes through the store, so an entry is never older than the kv.
        self._books: dict[str, _Books] = {}
        self._epochs: set[str] = set()  # fingerprints known to be stored (`keep_epoch`)

    def _books_for(self, profile_id: str) -> _Books:
        books = self._books.get(profile_id)
        if books is None:
            raw = self.kv.get(PROFILE + profile_id.encode())
            books = _split(raw)[0] if raw is not None else _new_books()
            self._books[profile_id] = books
        return books

    def forget_cached(self) -> None:
        """Drop the bookkeeping read so far: the writes it was read from were rolled back."""
        self._books.clear()
        self._epochs.clear()
        if self.cache is not None:  # (their bytes differ now anyway; nothing to gain)
            self.cache.clear()

    # -- definition versions --------------------------------------------------------
    def keep_epoch(self, epoch: str, versions: Mapping[str, int]) -> None:
        """Make the fingerprint `epoch` of `versions` resolvable in this partition.

        Why a table rather than the map on each profile: every profile brought to the same
        definitions carries the same versions (70 definitions: a third of a stored profile,
        read and written with every event), and a fingerprint names its map for good (it is
        a hash of it), so one entry per fingerprint serves them all. Entries are never
        removed: a profile skipped by a backfill may still name an older one."""
        if epoch in self._epochs:
            return
        key = EPOCH + epoch.encode()
        if self.kv.get(key) is None:
            self.kv.put(key, orjson.dumps(dict(sorted(versions.items()))))
        self._epochs.add(epoch)

    def epoch_versions(self, epoch: str) -> dict[str, int] | None:
        """The definition versions `epoch` stands for (None: never kept here)."""
        raw = self.kv.get(EPOCH + epoch.encode())
        return orjson.loads(raw) if raw is not None else None

    # -- profiles -------------------------------------------------------------------
    def get(self, profile_id: str) -> ProfileRecord | None:
        raw = self.kv.get(PROFILE + profile_id.encode())
        if raw is None:
            self._books.setdefault(profile_id, _new_books())
            return None
        if self.cache is not None:
            hit = self.cache.take(profile_id, raw)
            if hit is not None:
                self._books.setdefault(profile_id, hit[0])
                return hit[1]
        books, body = _split(raw)
        self._books.setdefault(profile_id, books)
        return ProfileRecord.loads(body)  # type: ignore[arg-type]

    def put(self, record: ProfileRecord, previous_wakeup: int | None) -> None:
        """Store the record; `previous_wakeup`: its `wakeup` as loaded (the index entry)."""
        pid_s = record.profile_id
        pid = pid_s.encode()
        books = self._books.pop(pid_s, None)
        if books is None:
            raw = self.kv.get(PROFILE + pid)
            books = _split(raw)[0] if raw is not None else _new_books()
        value = books.header() + record.dumps()
        self.kv.put(PROFILE + pid, value)
        if self.cache is not None:
            self.cache.keep(pid_s, value, books, record)
        wakeup = record.wakeup
        if previous_wakeup != wakeup:
            if previous_wakeup is not None:
                self.kv.delete(WAKEUP + _ts(previous_wakeup) + SEP + pid)
            if wakeup is not None:
                self.kv.put(WAKEUP + _ts(wakeup) + SEP + pid, b"")
                if wakeup < self.wakeup_floor:
                    self.wakeup_floor = max(0, wakeup)

    def profile_ids(self, after: str | None = None) -> Iterator[str]:
        """Stored profile ids in key order, optionally only those after `after`."""
        start = PROFILE + after.encode() + b"\x00" if after is not None else PROFILE
        for k, _ in self.kv.range(start, PROFILE + _END):
            yield k[len(PROFILE) :].decode()

    # -- history --------------------------------------------------------------------
    def append_history(self, event: ProfileEvent, raw: bytes | None = None) -> None:
        """`raw`: the event's JSON as it arrived (`ProfileEvent.from_json(raw)` is `event`),
        stored as it is rather than written again."""
        ts = max(0, event.timestamp)
        key = HISTORY + event.profile_id.encode() + SEP + b"%013d" % ts + SEP
        self.kv.put(key + event.message_id.encode(), raw if raw is not None else event.to_json())
        books = self._books_for(event.profile_id)
        if ts < books.oldest_history:
            books.oldest_history = ts

    def history(
        self,
        profile_id: str,
        start_ms: int = 0,
        end_ms: int | None = None,
        reverse: bool = False,
    ) -> Iterator[ProfileEvent]:
        """Stored events with start_ms <= timestamp < end_ms, by event time."""
        prefix = HISTORY + profile_id.encode() + SEP
        end = prefix + (_ts(end_ms) if end_ms is not None else _END)
        for _, v in self.kv.range(prefix + _ts(start_ms), end, reverse=reverse):
            yield ProfileEvent.from_json(v)

    def prune_history(self, profile_id: str, before_ms: int) -> int:
        """Drop stored events with timestamp < before_ms; a no-op read when none can be."""
        books = self._books_for(profile_id)
        before = max(0, before_ms)
        if books.oldest_history >= before:
            return 0
        prefix = HISTORY + profile_id.encode() + SEP
        cut = len(prefix)
        old: list[bytes] = []
        oldest = NONE
        for k, _ in self.kv.range(prefix, prefix + _END):
            digits = k[cut : cut + 13]
            if not digits.isdigit():
                continue  # another profile's key: its id continues this one past a NUL
            ts = int(digits)
            if ts >= before:
                oldest = ts
                break
            old.append(k)
        for k in old:
            self.kv.delete(k)
        books.oldest_history = oldest
        return len(old)

    # -- dedup window ---------------------------------------------------------------
    def seen_at(self, profile_id: str, message_id: str) -> int | None:
        books = self._books_for(profile_id)
        if books.inline is not None:
            return books.inline.get(message_id)
        if books.oldest_seen == NONE:
            return None  # nothing in `d:` keys: no read
        raw = self.kv.get(SEEN + profile_id.encode() + SEP + message_id.encode())
        return int(raw) if raw is not None else None

    def remember(self, profile_id: str, message_id: str, now_ms: int, previous: int | None) -> None:
        """Record a messageId's arrival (`previous`: its earlier, expired arrival, if any)."""
        books = self._books_for(profile_id)
        inline = books.inline
        if inline is not None:
            inline.pop(message_id, None)
            inline[message_id] = now_ms
            if len(inline) <= INLINE_SEEN:
                return
            # A busy profile: its window moves to `d:` keys (point lookups, lazy sweeps).
            pid = profile_id.encode()
            for mid, arrived in inline.items():
                self.kv.put(SEEN + pid + SEP + mid.encode(), _ts(arrived))
            books.oldest_seen = min(books.oldest_seen, *inline.values())
            books.inline = None
            return
        self.kv.put(SEEN + profile_id.encode() + SEP + message_id.encode(), _ts(now_ms))
        if now_ms < books.oldest_seen:
            books.oldest_seen = now_ms

    def forget_seen_before(self, profile_id: str, horizon_ms: int, slack_ms: int = 0) -> int:
        """Drop dedup entries that arrived before `horizon_ms` — inline ones at once, `d:`
        keys once the oldest is at least `slack_ms` older than that (entries past the
        horizon never count as seen anyway)."""
        books = self._books_for(profile_id)
        inline = books.inline
        if inline is not None:
            old = [mid for mid, arrived in inline.items() if arrived < horizon_ms]
            for mid in old:
                del inline[mid]
            return len(old)
        if books.oldest_seen >= horizon_ms - slack_ms:
            return 0
        pid = profile_id.encode()
        prefix = SEEN + pid + SEP
        gone: list[bytes] = []
        oldest = NONE
        for k, v in self.kv.range(prefix, prefix + _END):
            arrived = int(v)
            if arrived < horizon_ms:
                gone.append(k)
            elif arrived < oldest:
                oldest = arrived
        for k in gone:
            self.kv.delete(k)
        books.oldest_seen = oldest
        if oldest == NONE:
            books.inline = {}  # nothing left in `d:` keys: quiet again
        return len(gone)

    def seen_entries(self, profile_id: str) -> dict[str, int]:
        """The whole dedup window of a profile: messageId -> arrival ms."""
        books = self._books_for(profile_id)
        if books.inline is not None:
            return dict(books.inline)
        prefix = SEEN + profile_id.encode() + SEP
        return {k[len(prefix) :].decode(): int(v) for k, v in self.kv.range(prefix, prefix + _END)}

    def remove(self, record: ProfileRecord) -> None:
        """Delete a profile with everything stored under it (a merge moved it elsewhere)."""
        pid = record.profile_id.encode()
        for prefix in (HISTORY + pid + SEP, SEEN + pid + SEP):
            for k in [k for k, _ in self.kv.range(prefix, prefix + _END)]:
                self.kv.delete(k)
        if record.wakeup is not None:
            self.kv.delete(WAKEUP + _ts(record.wakeup) + SEP + pid)
        self.kv.delete(PROFILE + pid)
        self._books.pop(record.profile_id, None)
        if self.cache is not None:
            self.cache.discard(record.profile_id)

    # -- wake-ups -------------------------------------------------------------------
    def due(self, now_ms: int) -> list[str]:
        """Profiles whose next time-driven change is due at or before now, earliest first."""
        end = WAKEUP + _ts(now_ms + 1)
        keys = [k for k, _ in self.kv.range(WAKEUP + _ts(self.wakeup_floor), end)]
        # The invariant holds with the floor raised to the earliest entry found (or past
        # `now` when none is due): whatever the caller does with them, entries it leaves are
        # no earlier than that, and every entry it writes lowers the floor in `put`.
        self.wakeup_floor = (
            int(keys[0][len(WAKEUP) : len(WAKEUP) + 13])
            if keys
            else max(self.wakeup_floor, now_ms + 1)
        )
        return [k.split(SEP, 1)[1].decode() for k in keys]
