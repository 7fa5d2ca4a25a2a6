"""Profile state laid out on an ordered key-value store.

Key layout (all in one partition database, so one batch covers them atomically):
- `p:<profile>`                          → `ProfileRecord`
- `h:<profile>\\0<event ms, 13 digits>\\0<messageId>` → the event (history, time-ordered)
- `t:<due ms, 13 digits>\\0<profile>`    → wake-up index for time-driven changes
- `d:<profile>\\0<messageId>` → arrival ms, and `e:<profile>\\0<arrival ms>\\0<messageId>`:
  the messageId dedup window as point lookups plus an expiry order, so the cost per event
  does not grow with how many events a profile sent recently

The wake-up index is what makes window exits fire with no new input: it is persisted with
the profile in the same batch and rebuilt from the changelog like any other key.
"""

from __future__ import annotations

from collections.abc import Iterator

from engage_stream.events import ProfileEvent
from engage_stream.profiles.record import ProfileRecord
from engage_stream.state.kv import KV

PROFILE = b"p:"
HISTORY = b"h:"
WAKEUP = b"t:"
SEEN = b"d:"
SEEN_ORDER = b"e:"
SEP = b"\x00"
_END = b"\xff"


def _ts(ms: int) -> bytes:
    return b"%013d" % max(0, ms)


class ProfileStore:
    def __init__(self, kv: KV) -> None:
        self.kv = kv

    # -- profiles -------------------------------------------------------------------
    def get(self, profile_id: str) -> ProfileRecord | None:
        raw = self.kv.get(PROFILE + profile_id.encode())
        return ProfileRecord.loads(raw) if raw is not None else None

    def put(self, record: ProfileRecord, previous_wakeup: int | None) -> None:
        pid = record.profile_id.encode()
        self.kv.put(PROFILE + pid, record.dumps())
        if previous_wakeup != record.next_wakeup:
            if previous_wakeup is not None:
                self.kv.delete(WAKEUP + _ts(previous_wakeup) + SEP + pid)
            if record.next_wakeup is not None:
                self.kv.put(WAKEUP + _ts(record.next_wakeup) + SEP + pid, b"")

    def profile_ids(self, after: str | None = None) -> Iterator[str]:
        """Stored profile ids in key order, optionally only those after `after`."""
        start = PROFILE + after.encode() + b"\x00" if after is not None else PROFILE
        for k, _ in self.kv.range(start, PROFILE + _END):
            yield k[len(PROFILE) :].decode()

    # -- history --------------------------------------------------------------------
    def append_history(self, event: ProfileEvent) -> None:
        key = HISTORY + event.profile_id.encode() + SEP + _ts(event.timestamp) + SEP
        self.kv.put(key + event.message_id.encode(), event.to_json())

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
        prefix = HISTORY + profile_id.encode() + SEP
        old = [k for k, _ in self.kv.range(prefix, prefix + _ts(before_ms))]
        for k in old:
            self.kv.delete(k)
        return len(old)

    # -- dedup window ---------------------------------------------------------------
    def seen_at(self, profile_id: str, message_id: str) -> int | None:
        raw = self.kv.get(SEEN + profile_id.encode() + SEP + message_id.encode())
        return int(raw) if raw is not None else None

    def remember(self, profile_id: str, message_id: str, now_ms: int, previous: int | None) -> None:
        pid, mid = profile_id.encode(), message_id.encode()
        if previous is not None:
            self.kv.delete(SEEN_ORDER + pid + SEP + _ts(previous) + SEP + mid)
        self.kv.put(SEEN + pid + SEP + mid, _ts(now_ms))
        self.kv.put(SEEN_ORDER + pid + SEP + _ts(now_ms) + SEP + mid, b"")

    def forget_seen_before(self, profile_id: str, horizon_ms: int) -> None:
        pid = profile_id.encode()
        prefix = SEEN_ORDER + pid + SEP
        old = [k for k, _ in self.kv.range(prefix, prefix + _ts(horizon_ms))]
        for k in old:
            self.kv.delete(k)
            self.kv.delete(SEEN + pid + SEP + k.rsplit(SEP, 1)[1])

    # -- wake-ups -------------------------------------------------------------------
    def due(self, now_ms: int) -> list[str]:
        """Profiles whose next time-driven change is due at or before now, earliest first."""
        end = WAKEUP + _ts(now_ms + 1)
        return [k.split(SEP, 1)[1].decode() for k, _ in self.kv.range(WAKEUP, end)]
