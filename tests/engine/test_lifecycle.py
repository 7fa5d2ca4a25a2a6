"""Definitions over time: added after events (backfill), edited, dropped; lateness;
next_wakeup after every call."""

from __future__ import annotations

from engage_stream.engine import Change, Engine, EngineSettings
from engage_stream.profiles.record import ExternalId, ProfileRecord
from tests.engine.harness import DAY, MIN, T0, H, Harness, audience, event, summary, trait

LOGIN_7D = audience("aud", [{"event": "Login", "within": "7 days"}])


def test_definition_added_after_events_is_evaluated_over_history() -> None:
    h = Harness([])
    h.track("Login", T0)
    h.track("Purchase", T0 + H, {"total": 5})
    h.track("Purchase", T0 + 2 * H, {"total": 7})
    out = h.redefine([LOGIN_7D, trait("spend", "sum", "Purchase", property="total")], now=T0 + DAY)
    assert summary(out) == [
        ("spend", 12, T0 + DAY, Change.definition_cause(1)),
        ("aud", True, T0 + DAY, Change.definition_cause(1)),
    ]
    assert h.wakeup() == T0 + 7 * DAY, "the backfilled state drives exits like live state"
    assert [c.value for c in h.tick(T0 + 7 * DAY)] == [False]


def test_backfill_then_live_event_counts_each_event_once() -> None:
    h = Harness([])
    h.track("Login", T0)
    h.engine = Engine([audience("aud", [{"event": "Login", "count": "= 2"}])])
    h.proc.set_engine(h.engine, h.engine.versions)
    out = h.track("Login", T0 + MIN)  # recompute before the event, then the event
    assert summary(out) == [("aud", True, T0 + MIN, "event:m1")]


def test_edit_recomputes_with_the_new_version() -> None:
    h = Harness([LOGIN_7D])
    h.track("Login", T0)
    h.track("Login", T0 + H)
    assert h.member()
    edited = audience("aud", [{"event": "Login", "within": "7 days", "count": ">= 3"}])
    out = h.redefine([edited], {"aud": 2}, now=T0 + 2 * H)
    assert summary(out) == [("aud", False, T0 + 2 * H, "definition:2")]
    assert out[0].version == 2
    assert h.store.epoch_versions(h.record().defs_epoch) == {"aud": 2}
    assert h.wakeup() is None, "a non-member with nothing to gain by time has no wake-up"


def test_edit_that_changes_nothing_emits_nothing() -> None:
    h = Harness([LOGIN_7D])
    h.track("Login", T0)
    same_result = audience("aud", [{"event": "Login", "within": "8 days"}])
    assert h.redefine([same_result], {"aud": 2}, now=T0 + H) == []
    assert h.member()
    assert h.wakeup() == T0 + 8 * DAY


def test_recompute_of_a_dependency_re_evaluates_its_dependents() -> None:
    dep = audience("vip", [{"audience": "aud"}])
    h = Harness([LOGIN_7D, dep])
    h.track("Login", T0)
    assert h.member("vip")
    edited = audience("aud", [{"event": "Login", "within": "7 days", "count": ">= 2"}])
    out = h.redefine([edited, dep], {"aud": 2, "vip": 1}, now=T0 + H)
    assert [(c.key, c.value, c.cause) for c in out] == [
        ("aud", False, "definition:2"),
        ("vip", False, "definition:2"),
    ]


def test_drop_leaves_the_last_value_as_a_custom_trait() -> None:
    h = Harness([LOGIN_7D, trait("n", "counter", "Login", within="1 day")])
    h.track("Login", T0)
    assert h.redefine([], now=T0 + H) == []
    r = h.record()
    assert r.audiences == {} and r.computed_traits == {}
    assert r.traits["aud"].value is True and r.traits["n"].value == 1
    assert r.engine == {"$i": 1} and r.next_wakeup is None
    assert h.tick(T0 + 30 * DAY) == [], "no timer left behind"


def test_drop_directly() -> None:
    engine = Engine([LOGIN_7D])
    p = ProfileRecord("user_id:u1", external_ids=[ExternalId("user_id", "u1")])
    engine.on_event(p, event("Login", T0, "m1"), T0)
    assert p.next_wakeup == T0 + 7 * DAY
    engine.drop(p, {"aud", "unknown"})
    assert p.next_wakeup is None and "aud" not in p.engine and p.trait("aud") is True


def test_lateness_limit_ignores_too_late_events() -> None:
    h = Harness([LOGIN_7D], settings=EngineSettings(allowed_lateness_ms=H))
    h.track("Other", T0 + 2 * H)
    assert h.track("Login", T0 + H - 1, now=T0 + 2 * H) == []
    assert h.engine.late_events == 1
    assert [c.value for c in h.track("Login", T0 + H, now=T0 + 2 * H)] == [True]
    assert h.engine.late_events == 1


def test_lateness_still_applies_trait_changes() -> None:
    h = Harness(
        [audience("aud", [{"trait": "plan", "operator": "=", "value": "pro"}])],
        settings=EngineSettings(allowed_lateness_ms=H),
    )
    h.track("Other", T0 + 5 * H)
    assert [c.value for c in h.identify({"plan": "pro"}, T0, now=T0 + 5 * H)] == [True]


def test_next_wakeup_is_always_in_the_future() -> None:
    engine = Engine(
        [
            audience("a", [{"event": "E", "within": "1 hour"}]),
            audience("b", [{"event": "E", "between": ["1 hour", "2 hours"]}]),
            trait("n", "counter", "E", within="90 minutes"),
        ]
    )
    p = ProfileRecord("user_id:u1", external_ids=[ExternalId("user_id", "u1")])
    now = T0
    for i in range(20):
        now += 7 * MIN
        engine.on_event(p, event("E", now - (i % 3) * 13 * MIN, f"m{i}"), now)
        assert p.next_wakeup is None or p.next_wakeup > now
        probe = now + 11 * MIN
        if p.next_wakeup is not None and p.next_wakeup <= probe:
            engine.on_time(p, probe)
            now = probe
            assert p.next_wakeup is None or p.next_wakeup > now
    engine.on_time(p, now + 5 * H)
    assert p.next_wakeup is None, "everything left every window"
    assert set(p.engine) == {"$i", "n"}, "and no state is left but the counter's first"
    assert Engine.state(p, "n") == T0 - 5 * MIN, "the oldest event (the 3rd, 26 minutes late)"


def test_wakeup_is_the_earliest_definition_due() -> None:
    h = Harness(
        [
            audience("short", [{"event": "E", "within": "1 hour"}]),
            audience("long", [{"event": "E", "within": "1 day"}]),
        ]
    )
    h.track("E", T0)
    assert h.wakeup() == T0 + H
    assert h.record().engine["$d"] == {"short": T0 + H, "long": T0 + DAY}
    assert [c.key for c in h.tick(T0 + H)] == ["short"]
    assert h.wakeup() == T0 + DAY


def test_a_long_pause_catches_up_in_bounded_steps() -> None:
    """After max_timer_steps boundaries in one call the rest is evaluated at `now` at
    once; the final value is the same and the wake-up moves past now."""
    defs = [trait("n", "counter", "E", within="1 hour")]
    slow = Harness(defs, settings=EngineSettings(max_timer_steps=3))
    fast = Harness(defs)
    for h in (slow, fast):
        for i in range(10):
            h.track("E", T0 + i * MIN)
    out = slow.tick(T0 + 5 * H)
    assert [c.value for c in out] == [9, 8, 7, 0]
    assert [c.cause for c in out][-1] == f"timer:{T0 + 5 * H}"
    assert [c.value for c in fast.tick(T0 + 5 * H)] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert slow.wakeup() is None and fast.wakeup() is None


def test_state_is_stored_as_compact_json_strings() -> None:
    h = Harness([LOGIN_7D, trait("n", "counter", "Login", within="1 day")])
    h.track("Login", T0)
    est = h.record().engine
    assert est["aud"] == f"[[{T0}]]" and isinstance(est["n"], str)
    assert Engine.state(h.record(), "n") == [[T0], None, 1, 1, [1], T0], (
        "times, no values, total, k, events per entry (a grained window), first"
    )
