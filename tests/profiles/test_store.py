"""The store's bookkeeping header: prunes that scan only when something can go, exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engage_stream.events import ProfileEvent
from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.store import (
    HISTORY,
    INLINE_SEEN,
    PROFILE,
    SEEN,
    SEP,
    WAKEUP,
    ProfileStore,
    seen_in_header,
)
from engage_stream.state.memory import MemoryKV
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.transaction import Transaction

H = 3_600_000
DAY = 24 * H


class CountingKV(MemoryKV):
    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[bytes] = []

    def range(self, start: bytes, end: bytes, reverse: bool = False) -> Any:
        self.ranges.append(start)
        return super().range(start, end, reverse)


def ev(mid: str, ts: int, pid: str = "user_id:u1", **kw: Any) -> ProfileEvent:
    return ProfileEvent(
        message_id=mid,
        type="track",
        event="E",
        timestamp=ts,
        received_at=ts,
        profile_id=pid,
        user_id=pid.split(":", 1)[1],
        **kw,
    )


def keys(kv: MemoryKV, prefix: bytes) -> list[bytes]:
    return [k for k, _ in kv.range(prefix, prefix + b"\xff")]


def test_steady_events_open_no_iterator_until_something_expires() -> None:
    kv = CountingKV()
    p = ProfileProcessor(None, ProcessorSettings(history_ms=10 * DAY, dedup_ms=DAY))
    s = ProfileStore(kv)
    for i in range(50):
        p.apply(s, ev(f"m{i}", i * H), now_ms=i * H)
    sweeps = [r for r in kv.ranges if r.startswith((HISTORY, SEEN))]
    # Dedup entries (24 h window) are swept once the oldest is 6 h overdue: at hours 31,
    # 38 and 45, seven entries each; history (10 days) never needs a scan.
    assert sweeps == [SEEN + b"user_id:u1\x00"] * 3
    assert len(keys(kv, SEEN)) == 50 - 21


def test_history_is_pruned_exactly_at_the_lookback() -> None:
    kv = CountingKV()
    p = ProfileProcessor(None, ProcessorSettings(history_ms=2 * DAY, dedup_ms=DAY))
    s = ProfileStore(kv)
    for i, ts in enumerate([0, 5 * H, 10 * H, 30 * H]):
        p.apply(s, ev(f"m{i}", ts), now_ms=30 * H)
    assert [e.message_id for e in s.history("user_id:u1")] == ["m0", "m1", "m2", "m3"]
    kv.ranges.clear()
    p.apply(s, ev("m4", 53 * H), now_ms=53 * H)  # cutoff 5 h: only m0 goes
    assert [e.message_id for e in s.history("user_id:u1")] == ["m1", "m2", "m3", "m4"]
    p.apply(s, ev("m5", 54 * H), now_ms=54 * H)  # cutoff 6 h: m1 goes
    p.apply(s, ev("m6", 54 * H + 1), now_ms=54 * H + 1)  # nothing older than 6 h: no scan
    assert [e.message_id for e in s.history("user_id:u1")] == ["m2", "m3", "m4", "m5", "m6"]
    prunes = [r for r in kv.ranges if r == HISTORY + b"user_id:u1\x00"]  # not history reads
    assert len(prunes) == 2


def test_an_out_of_order_old_event_lowers_the_oldest_and_is_pruned_later() -> None:
    p = ProfileProcessor(None, ProcessorSettings(history_ms=2 * DAY, dedup_ms=DAY))
    s = ProfileStore(MemoryKV())
    p.apply(s, ev("new", 40 * H), now_ms=40 * H)
    p.apply(s, ev("late", 1 * H), now_ms=40 * H)  # within the lookback: stored
    p.apply(s, ev("next", 50 * H), now_ms=50 * H)  # cutoff 2 h: "late" goes
    assert [e.message_id for e in s.history("user_id:u1")] == ["new", "next"]


def test_a_duplicate_stays_a_duplicate_across_sweeps_and_expires_after_the_window() -> None:
    p = ProfileProcessor(None, ProcessorSettings(history_ms=90 * DAY, dedup_ms=DAY))
    s = ProfileStore(MemoryKV())
    assert not p.apply(s, ev("a", 0), now_ms=0).duplicate
    accepted_again = []
    for i in range(1, 40):  # sweeps run meanwhile
        p.apply(s, ev(f"x{i}", i * H), now_ms=i * H)
        if not p.apply(s, ev("a", 0), now_ms=i * H).duplicate:
            accepted_again.append(i)
    assert accepted_again == [25], "a duplicate for 24 h, then new (and remembered) again"


def test_a_profile_value_without_its_header_is_refused() -> None:
    """Only this state format is read: a value without the header is not silently misread."""
    kv = CountingKV()
    kv.put(PROFILE + b"user_id:u1", ProfileRecord(profile_id="user_id:u1").dumps())
    with pytest.raises(ValueError, match="header"):
        ProfileStore(kv).get("user_id:u1")


def test_profile_ids_with_a_nul_do_not_break_a_neighbours_prune() -> None:
    p = ProfileProcessor(None, ProcessorSettings(history_ms=DAY, dedup_ms=H))
    s = ProfileStore(MemoryKV())
    p.apply(s, ev("n1", 1, pid="user_id:a\x00b"), now_ms=1)
    p.apply(s, ev("a1", 2, pid="user_id:a"), now_ms=2)
    p.apply(s, ev("a2", 2 * DAY, pid="user_id:a"), now_ms=2 * DAY)  # prunes user_id:a
    history = [e.message_id for e in s.history("user_id:a")]
    # (Reads still see the other profile's keys: ids are not escaped in the layout.)
    assert "a1" not in history and "a2" in history


def test_the_same_state_over_rocksdb_batches_as_over_memory(tmp_path: Path) -> None:
    """Many checkpoints: the header travels in the profile value through RocksDB."""
    events = [
        ev(f"m{i}", i * 5 * H, pid=f"user_id:u{i % 3}")
        for i in range(60)
        for _ in range(1 + (i % 4 == 0))  # every 4th sent twice
    ]
    settings = ProcessorSettings(history_ms=3 * DAY, dedup_ms=DAY)
    mem = ProfileStore(MemoryKV())
    pm = ProfileProcessor(None, settings)
    outcomes_mem = [pm.apply(mem, e, e.timestamp).duplicate for e in events]
    ps = PartitionStore(tmp_path / "p0")
    pr = ProfileProcessor(None, settings)
    outcomes_rocks = []
    for i in range(0, len(events), 7):
        tx = Transaction(ps)
        store = ProfileStore(tx)
        outcomes_rocks += [pr.apply(store, e, e.timestamp).duplicate for e in events[i : i + 7]]
        ps.write(tx.writes, changelog_offset=i, source_offset=i)
    assert outcomes_rocks == outcomes_mem
    assert sum(outcomes_mem) == 15
    final = ProfileStore(Transaction(ps))
    for u in range(3):
        pid = f"user_id:u{u}"
        assert [e.message_id for e in final.history(pid)] == [
            e.message_id for e in mem.history(pid)
        ]
        assert final.get(pid) == mem.get(pid)
    ps.close()


@pytest.mark.parametrize("ts", [-5, 0])
def test_negative_and_zero_timestamps_keep_working(ts: int) -> None:
    p = ProfileProcessor(None, ProcessorSettings(history_ms=DAY, dedup_ms=H))
    s = ProfileStore(MemoryKV())
    p.apply(s, ev("a", ts), now_ms=10)
    p.apply(s, ev("b", 2 * DAY), now_ms=2 * DAY)
    assert [e.message_id for e in s.history("user_id:u1")] == ["b"]
    assert SEP in HISTORY + b"x" + SEP


def test_a_quiet_profile_keeps_its_dedup_window_in_the_header() -> None:
    kv = CountingKV()
    p = ProfileProcessor(None, ProcessorSettings(history_ms=90 * DAY, dedup_ms=DAY))
    s = ProfileStore(kv)
    for i in range(40):  # one event every 2 h: at most 13 in any 24 h
        p.apply(s, ev(f"m{i}", i * 2 * H), now_ms=i * 2 * H)
    assert [r for r in kv.ranges if r.startswith(SEEN)] == [], "no sweeps"
    assert keys(kv, SEEN) == [], "no d: keys, so no lookups or changelog records either"
    inline = seen_in_header(kv.get(PROFILE + b"user_id:u1"))
    assert inline == [f"m{i}" for i in range(27, 40)], "the last 24 h, both ends included"
    assert p.apply(s, ev("m30", 0), now_ms=39 * 2 * H).duplicate


def test_a_busy_profile_spills_to_keys_and_comes_back_when_they_expire() -> None:
    kv = CountingKV()
    p = ProfileProcessor(None, ProcessorSettings(history_ms=90 * DAY, dedup_ms=DAY))
    s = ProfileStore(kv)
    for i in range(INLINE_SEEN):
        p.apply(s, ev(f"m{i}", i), now_ms=i)
    assert keys(kv, SEEN) == []
    p.apply(s, ev("one-more", INLINE_SEEN), now_ms=INLINE_SEEN)
    assert len(keys(kv, SEEN)) == INLINE_SEEN + 1, "spilled: every entry is a d: key now"
    assert seen_in_header(kv.get(PROFILE + b"user_id:u1")) == []
    assert p.apply(s, ev("m3", 0), now_ms=H).duplicate, "found through the d: keys"
    p.apply(s, ev("later", 2 * DAY), now_ms=2 * DAY)  # everything else expired: one sweep
    assert keys(kv, SEEN) == []
    assert seen_in_header(kv.get(PROFILE + b"user_id:u1")) == ["later"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dedup_decisions_match_a_plain_model(tmp_path: Path, seed: int) -> None:
    """Random traffic (quiet and busy profiles, repeats, gaps past the window) over RocksDB
    batches: every duplicate verdict is the plain rule's — seen within the window."""
    import random

    rng = random.Random(seed)
    settings = ProcessorSettings(history_ms=3 * DAY, dedup_ms=DAY)
    proc = ProfileProcessor(None, settings)
    ps = PartitionStore(tmp_path / "p")
    accepted: dict[tuple[str, str], int] = {}
    now = 0
    sent: list[tuple[str, str]] = []
    verdicts, expected = [], []
    for batch in range(60):
        tx = Transaction(ps)
        store = ProfileStore(tx)
        for _ in range(rng.randrange(1, 40)):
            now += rng.choice([0, 1, 60_000, H, 5 * H, 2 * DAY]) if rng.random() < 0.5 else 1
            pid = f"user_id:u{rng.randrange(3)}" if rng.random() < 0.8 else "user_id:busy"
            if sent and rng.random() < 0.3:
                pid, mid = rng.choice(sent)
            else:
                mid = f"m{len(sent)}"
                sent.append((pid, mid))
            seen = accepted.get((pid, mid))
            dup = seen is not None and seen >= now - DAY
            if not dup:
                accepted[(pid, mid)] = now
            expected.append(dup)
            verdicts.append(proc.apply(store, ev(mid, now, pid=pid), now).duplicate)
        ps.write(tx.writes, changelog_offset=batch, source_offset=batch)
    ps.close()
    assert verdicts == expected
    assert 0 < sum(expected) < len(expected)


def _wake(s: ProfileStore, pid: str, at: int | None, previous: int | None) -> None:
    s.put(ProfileRecord(profile_id=pid, next_wakeup=at), previous)


def test_due_seeks_past_fired_wakeups_and_never_skips_a_live_one() -> None:
    """The scan starts at the floor (not over the tombstones of every wake-up fired), and
    whatever is written below it — a wake-up rescheduled into the past — is still found."""
    kv = CountingKV()
    s = ProfileStore(kv)
    _wake(s, "a", 100, None)
    _wake(s, "b", 200, None)
    assert s.due(150) == ["a"] and s.wakeup_floor == 100
    _wake(s, "a", 300, 100)  # fired, next one later
    assert s.due(250) == ["b"] and s.wakeup_floor == 200
    _wake(s, "b", 400, 200)
    assert s.due(260) == [] and s.wakeup_floor == 261
    kv.ranges.clear()
    assert s.due(299) == [] and kv.ranges == [WAKEUP + b"%013d" % 261]
    _wake(s, "c", 50, None)  # written below the floor
    assert s.wakeup_floor == 50
    assert s.due(350) == ["c", "a"]
    # an entry the caller leaves in place (e.g. a profile whose evaluation failed) stays
    # at or after the floor, so it is found again
    assert s.due(350) == ["c", "a"]


def test_the_floor_survives_transactions_and_recovery_resets_it(tmp_path: Path) -> None:
    from engage_stream.state.partition import PartitionState

    ps = PartitionState(0, PartitionStore(tmp_path / "p0"), reported=False)
    tx = ps.begin()
    s = ProfileStore(tx, tx.wakeup_floor)
    _wake(s, "a", 1_000, None)
    assert s.due(5_000) == ["a"]
    _wake(s, "a", 9_000, 1_000)
    assert s.due(5_000) == []
    tx.wakeup_floor = s.wakeup_floor
    tx.prepare()
    ps.finish(tx, changelog_offset=0)
    assert ps.wakeup_floor == 5_001 == ps.begin().wakeup_floor
    # recovery writes the index directly (here an entry below the floor): nothing is known
    ps.apply_changelog({WAKEUP + b"%013d" % 2_000 + SEP + b"b": b""}, up_to=1)
    tx = ps.begin()
    assert tx.wakeup_floor == 0
    assert ProfileStore(tx, tx.wakeup_floor).due(5_000) == ["b"]
    ps.store.close()


def test_a_fingerprint_kept_in_a_rolled_back_record_is_kept_again(tmp_path: Path) -> None:
    """`keep_epoch` writes once per store; a rollback takes the write back, and
    `forget_cached` (what the stage calls then) makes the next record write it again."""
    ps = PartitionStore(tmp_path / "p0")
    try:
        tx = Transaction(ps)
        store = ProfileStore(tx)
        tx.savepoint()
        store.keep_epoch("e1", {"a": 1})
        tx.rollback()
        store.forget_cached()
        assert store.epoch_versions("e1") is None
        store.keep_epoch("e1", {"a": 1})
        assert store.epoch_versions("e1") == {"a": 1}
        tx.prepare()
        tx.commit(0)
        assert ProfileStore(Transaction(ps)).epoch_versions("e1") == {"a": 1}
    finally:
        ps.close()
