"""The profile stage over in-memory state: dedup, history, traits, ids, metadata, wake-ups."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engage_stream.events import ProfileEvent
from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.keys import EPOCH, PROFILE
from engage_stream.state.memory import MemoryKV

H = 3_600_000
DAY = 24 * H


def ev(mid: str, ts: int, kind: str = "track", **kw: Any) -> ProfileEvent:
    kw.setdefault("user_id", "u1")
    return ProfileEvent(
        message_id=mid,
        type=kind,
        timestamp=ts,
        received_at=ts,
        profile_id="user_id:u1",
        event=kw.pop("event", "E" if kind == "track" else None),
        **kw,
    )


def make(history_days: float = 90, engine: Any = None) -> tuple[ProfileProcessor, ProfileStore]:
    settings = ProcessorSettings(history_ms=int(history_days * DAY), dedup_ms=DAY)
    return ProfileProcessor(engine, settings), ProfileStore(MemoryKV())


def test_duplicate_message_id_within_24h_is_dropped_and_allowed_after() -> None:
    p, s = make()
    assert not p.apply(s, ev("m1", 0), now_ms=0).duplicate
    assert p.apply(s, ev("m1", 0), now_ms=DAY - 1).duplicate
    assert not p.apply(s, ev("m1", 0), now_ms=2 * DAY + 1).duplicate
    assert s.get("user_id:u1").metadata.event_count == 2


def test_traits_last_value_by_event_time_even_out_of_order() -> None:
    p, s = make()
    p.apply(s, ev("a", 2000, "identify", traits={"plan": "pro", "email": "x@y.z"}), now_ms=2000)
    p.apply(s, ev("b", 1000, "identify", traits={"plan": "free", "age": 3}), now_ms=2001)
    r = s.get("user_id:u1")
    assert r.trait("plan") == "pro", "an older identify does not overwrite a newer value"
    assert r.trait("age") == 3, "but it still sets traits nobody set later"
    p.apply(s, ev("c", 3000, "identify", traits={"plan": None}), now_ms=3000)
    assert s.get("user_id:u1").trait("plan") is None, "null removes a trait"


def test_track_context_traits_do_not_update_profile_traits() -> None:
    p, s = make()
    p.apply(s, ev("a", 1, context={"traits": {"plan": "pro"}}), now_ms=1)
    assert s.get("user_id:u1").traits == {}


def test_external_ids_collected_once_each() -> None:
    p, s = make()
    p.apply(s, ev("a", 1, "identify", anonymous_id="anon", traits={"email": "e@x.io"}), now_ms=1)
    p.apply(s, ev("b", 2, "group", group_id="acct", anonymous_id="anon"), now_ms=2)
    ids = [(x.type, x.id, x.collection) for x in s.get("user_id:u1").external_ids]
    assert ids == [
        ("user_id", "u1", "users"),
        ("anonymous_id", "anon", "users"),
        ("email", "e@x.io", "users"),
        ("group_id", "acct", "accounts"),
    ]


def test_metadata_first_and_last() -> None:
    p, s = make()
    p.apply(s, ev("a", 10), now_ms=10)
    p.apply(s, ev("b", 20), now_ms=20)
    md = s.get("user_id:u1").metadata
    assert (md.first_message_id, md.last_message_id, md.created_at, md.updated_at) == (
        "a",
        "b",
        10,
        20,
    )


def test_history_is_time_ordered_and_pruned_to_the_lookback() -> None:
    p, s = make(history_days=2)
    p.apply(s, ev("late", 5 * H), now_ms=6 * H)
    p.apply(s, ev("early", 1 * H), now_ms=6 * H)
    assert [e.message_id for e in s.history("user_id:u1")] == ["early", "late"]
    p.apply(s, ev("next", 3 * DAY), now_ms=3 * DAY)
    assert [e.message_id for e in s.history("user_id:u1")] == ["next"], "older than 2 days pruned"
    p.apply(s, ev("ancient", 0), now_ms=3 * DAY)
    assert [e.message_id for e in s.history("user_id:u1")] == ["next"], "too old to store"


class WindowEngine:
    """A minimal engine: 'member' for 1 s after each event, via the wake-up index."""

    def on_event(self, profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Any]:
        profile.next_wakeup = event.timestamp + 1000
        return [("enter", profile.profile_id)]

    def on_time(self, profile: ProfileRecord, now_ms: int) -> list[Any]:
        profile.next_wakeup = None
        return [("exit", profile.profile_id, now_ms)]

    def recompute(
        self, profile: ProfileRecord, keys: set[str], history: Iterable[ProfileEvent], now_ms: int
    ) -> list[Any]:
        return [("recomputed", profile.profile_id, [e.message_id for e in history])]

    def drop(self, profile: ProfileRecord, keys: set[str]) -> None:
        profile.next_wakeup = None


def test_wakeups_fire_once_when_due_without_new_events() -> None:
    p, s = make(engine=WindowEngine())
    assert p.apply(s, ev("a", 5000), now_ms=5000).changes == [("enter", "user_id:u1")]
    assert p.advance(s, 5999).changes == []
    assert p.advance(s, 6000).changes == [("exit", "user_id:u1", 6000)]
    assert p.advance(s, 99_000).changes == [], "fired once; index entry removed"


def test_a_newer_event_moves_the_wakeup() -> None:
    p, s = make(engine=WindowEngine())
    p.apply(s, ev("a", 5000), now_ms=5000)
    p.apply(s, ev("b", 5500), now_ms=5500)
    assert p.advance(s, 6000).changes == [], "old wake-up replaced"
    assert p.advance(s, 6500).changes == [("exit", "user_id:u1", 6500)]


def test_sweep_backfills_changed_definitions_over_history_resumably() -> None:
    engine = WindowEngine()
    p, s = make(engine=engine)
    for uid in ("a", "b", "c"):
        for i in range(2):
            e = ev(f"{uid}{i}", 1000 + i, user_id=uid)
            e.profile_id = f"user_id:{uid}"
            p.apply(s, e, now_ms=2000)
    p.set_engine(engine, {"k": 1})
    first = p.sweep(s, now_ms=3000, after=None, max_profiles=2)
    assert first.changes == [
        ("recomputed", "user_id:a", ["a0", "a1"]),
        ("recomputed", "user_id:b", ["b0", "b1"]),
    ]
    assert first.cursor == "user_id:b"
    rest = p.sweep(s, now_ms=3000, after=first.cursor, max_profiles=2)
    assert rest.changes == [("recomputed", "user_id:c", ["c0", "c1"])] and rest.cursor is None
    assert p.sweep(s, now_ms=3000, after=None, max_profiles=10).changes == [], "idempotent"


def test_a_stale_profile_is_recomputed_before_its_next_event() -> None:
    engine = WindowEngine()
    p, s = make(engine=engine)
    p.apply(s, ev("a", 1000), now_ms=1000)
    p.set_engine(engine, {"k": 2})
    out = p.apply(s, ev("b", 2000), now_ms=2000).changes
    assert out == [("recomputed", "user_id:u1", ["a"]), ("enter", "user_id:u1")], (
        "history before the new event, then the event itself: counted once"
    )
    stored = s.get("user_id:u1")
    assert stored.def_versions == {}, "the versions are the partition's, by fingerprint"
    assert s.epoch_versions(stored.defs_epoch) == {"k": 2}


def test_stored_profiles_name_their_definitions_by_fingerprint() -> None:
    """One `e:` entry per fingerprint, not the versions map on every profile."""
    engine = WindowEngine()
    p, s = make(engine=engine)
    p.set_engine(engine, {"k": 1})
    for uid in ("a", "b", "c"):
        e = ev("x", 1000)
        e.profile_id = f"user_id:{uid}"
        p.apply(s, e, now_ms=1000)
    assert list(s.kv.range(EPOCH, EPOCH + b"\xff")) == [(EPOCH + p.epoch.encode(), b'{"k":1}')]
    raw = s.kv.get(PROFILE + b"user_id:a")
    assert b'"k":1' not in raw and b'"def_versions":{}' in raw


def test_a_profile_stored_with_its_versions_inline_is_synced_from_them() -> None:
    """Profiles stored before the fingerprint table carry the map itself: it decides what
    is stale, and the next sync replaces it by the fingerprint."""
    engine = WindowEngine()
    p, s = make(engine=engine)
    p.apply(s, ev("a", 1000), now_ms=1000)
    old = s.get("user_id:u1")
    old.def_versions, old.defs_epoch = {"k": 1}, "written-before-the-table"
    s.put(old, old.wakeup)
    p.set_engine(engine, {"k": 1})  # the same versions: nothing stale, nothing recomputed
    out = p.apply(s, ev("b", 2000), now_ms=2000).changes
    assert out == [("enter", "user_id:u1")]
    stored = s.get("user_id:u1")
    assert stored.def_versions == {} and s.epoch_versions(stored.defs_epoch) == {"k": 1}


def test_an_unknown_fingerprint_evaluates_every_definition_again() -> None:
    engine = WindowEngine()
    p, s = make(engine=engine)
    p.set_engine(engine, {"k": 1})
    p.apply(s, ev("a", 1000), now_ms=1000)
    lost = s.get("user_id:u1")
    lost.defs_epoch = "never-kept"
    s.put(lost, lost.wakeup)
    out = p.apply(s, ev("b", 2000), now_ms=2000).changes
    assert out == [("recomputed", "user_id:u1", ["a"]), ("enter", "user_id:u1")]
