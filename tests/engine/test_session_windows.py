"""Session windows (reference §2): a computed trait over the current session, reset in real
time once the inactivity period passes with no new event (a wake-up, like a window exit)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engage_stream.engine import Engine
from tests.engine.harness import DAY, MIN, T0, H, Harness, event, final_state, summary, trait

GAP = 30 * MIN


def session(type_: str = "counter", expires: str = "30 minutes", **kw: Any) -> Harness:
    if type_ != "counter":
        kw.setdefault("property", "v")
    return Harness([trait("s", type_, "Page Viewed", session=expires, **kw)])


def test_counts_the_current_session_and_resets_when_it_expires() -> None:
    h = session()
    h.track("Page Viewed", T0)
    h.track("Page Viewed", T0 + 10 * MIN)
    h.track("Page Viewed", T0 + 35 * MIN)  # 25 min after the previous one: same session
    assert h.value("s") == 3
    assert h.wakeup() == T0 + 35 * MIN + GAP, "the reset is a wake-up, like a window exit"
    assert h.tick(T0 + 35 * MIN + GAP - 1) == []
    assert summary(h.tick(T0 + 35 * MIN + GAP)) == [
        ("s", 0, T0 + 35 * MIN + GAP, f"timer:{T0 + 35 * MIN + GAP}")
    ]


def test_a_new_session_after_the_inactivity_period() -> None:
    h = session()
    h.track("Page Viewed", T0)
    h.track("Page Viewed", T0 + 10 * MIN)
    # exactly the inactivity period after the last one: that session is over
    out = h.track("Page Viewed", T0 + 10 * MIN + GAP)
    assert [(c.value, c.cause) for c in out] == [
        (0, f"timer:{T0 + 10 * MIN + GAP}"),
        (1, "event:m2"),
    ]
    assert h.value("s") == 1


def test_nothing_before_the_first_event_and_nothing_kept_after_a_session() -> None:
    h = session()
    h.identify({"plan": "pro"}, T0)
    assert h.value("s") is None
    h.track("Page Viewed", T0)
    h.tick(T0 + 3 * H)
    assert h.value("s") == 0, "a counter is 0, not cleared, once the profile had a value"
    assert h.wakeup() is None
    assert Engine.state(h.record(), "s") == T0, "only the first instant it counted is kept"


@pytest.mark.parametrize(
    ("type_", "values", "in_session", "after"),
    [
        ("sum", [5, 2.5, None, "x"], 7.5, 0),
        ("avg", [5, 2, None], 3.5, None),
        ("min", [5, 2, 9], 2, None),
        ("max", [5, 2, 9], 9, None),
        ("min", ["b", "a", "c"], "a", None),  # with as_string below
        ("first", ["b", "a", "c"], "b", None),
        ("last", ["b", "a", "c"], "c", None),
        ("most_frequent", ["b", "a", "b", "a"], "a", None),
        ("unique_list", ["b", "a", "b", 1], ["1", "a", "b"], None),
        ("unique_count", ["b", "a", "b"], 2, 0),
    ],
)
def test_every_type_over_the_current_session_only(
    type_: str, values: list[Any], in_session: Any, after: Any
) -> None:
    kw = {"as_string": True} if values[0] == "b" and type_ == "min" else {}
    h = session(type_, **kw)
    h.track("Page Viewed", T0 - 2 * H, {"v": values[0]})  # an earlier session
    for i, v in enumerate(values):
        h.track("Page Viewed", T0 + i * MIN, {} if v is None else {"v": v})
    assert h.value("s") == in_session
    h.tick(T0 + len(values) * MIN + GAP)
    assert h.value("s") == after


def test_activity_without_the_property_keeps_the_session_going() -> None:
    """Events the trait listens to (name and filters) are the activity; the property only
    decides what they add."""
    h = session("sum")
    h.track("Page Viewed", T0, {"v": 4})
    h.track("Page Viewed", T0 + 25 * MIN)  # no value, still activity
    h.track("Page Viewed", T0 + 50 * MIN, {"v": 1})
    assert h.value("s") == 5


def test_only_events_passing_the_filters_are_activity() -> None:
    h = session(where=[{"property": "section", "operator": "=", "value": "shop"}])
    h.track("Page Viewed", T0, {"section": "shop"})
    h.track("Page Viewed", T0 + 20 * MIN, {"section": "blog"})  # not activity for it
    h.track("Page Viewed", T0 + 40 * MIN, {"section": "shop"})  # 40 min: a new session
    assert h.value("s") == 1


def test_late_events_join_the_current_session_or_are_left_out() -> None:
    h = session()
    h.track("Page Viewed", T0 + 2 * H)
    h.track("Page Viewed", T0 + 2 * H + 20 * MIN)
    h.track("Page Viewed", T0 + 2 * H - 10 * MIN, now=h.now)  # late, joins at the front
    assert h.value("s") == 3
    h.track("Page Viewed", T0 + H, now=h.now)  # late, older than this session: another one
    assert h.value("s") == 3
    assert h.wakeup() == T0 + 2 * H + 20 * MIN + GAP


def test_a_late_event_that_extends_an_expired_session_brings_it_back() -> None:
    """Within one more inactivity period after it expired, a session is still kept: a late
    event that belongs to it gives what processing it in time order gives."""
    h = session()
    h.track("Page Viewed", T0)
    h.track("Page Viewed", T0 + 10 * MIN)
    h.tick(T0 + 45 * MIN)
    assert h.value("s") == 0
    h.track("Page Viewed", T0 + 30 * MIN, now=T0 + 50 * MIN)  # arrived 20 minutes late
    assert h.value("s") == 3
    assert h.wakeup() == T0 + 60 * MIN


def test_events_ahead_of_the_clock_count_from_their_time() -> None:
    h = session()
    h.track("Page Viewed", T0)
    h.track("Page Viewed", T0 + 2 * H, now=T0)  # clock skew: two hours ahead
    assert h.value("s") == 1
    assert h.wakeup() == T0 + GAP
    h.tick(T0 + GAP)
    assert h.value("s") == 0
    h.tick(T0 + 2 * H)
    assert h.value("s") == 1
    assert h.wakeup() == T0 + 2 * H + GAP


def test_include_history_false_counts_from_the_definition_on() -> None:
    d = trait("s", "counter", "Page Viewed", session="1 hour", include_history=False)
    h = Harness([d], applied_at={"s": T0})
    h.track("Page Viewed", T0 - MIN)
    assert h.value("s") is None
    h.track("Page Viewed", T0 + MIN)
    assert h.value("s") == 1


def test_long_sessions_lose_what_leaves_the_lookback() -> None:
    """A session that never pauses for `expires_after` keeps going; events older than the
    hour-precise lookback stop counting, as in every other window."""
    h = Harness(
        [trait("s", "counter", "Page Viewed", session="1 day", include_history={"days": 2})]
    )
    for i in range(5):
        h.track("Page Viewed", T0 + i * 12 * H)  # every 12 hours: one session
    assert h.value("s") == 5
    h.tick(T0 + 2 * DAY + H)  # the first event (hour T0) left at T0 + 1 h + 2 days
    assert h.value("s") == 4


TYPES = ["counter", "sum", "most_frequent", "unique_list", "first", "last", "min", "max"]
SHORT_AND_LONG = (1, 5, 10, 20, 29, 31, 45, 120)  # minutes between events
LONG_SESSIONS = (5, 20, 29, 45)


def _defs(expires: str) -> list[Any]:
    return [
        trait(
            f"s_{t}",
            t,
            "Page Viewed",
            session=expires,
            **({} if t == "counter" else {"property": "v"}),
        )
        for t in TYPES
    ]


def random_session_events(
    rng: random.Random, n: int, steps: tuple[int, ...]
) -> list[tuple[int, dict[str, Any]]]:
    ts, out = T0, []
    for _ in range(n):
        ts += rng.choice(steps) * MIN
        out.append((ts, {"v": rng.choice(["a", "b", "c", 1, 2, None])}))
    return out


@pytest.mark.parametrize("steps", [SHORT_AND_LONG, LONG_SESSIONS], ids=["mixed", "long"])
@pytest.mark.parametrize("seed", range(8))
def test_a_backfill_gives_the_state_of_live_processing(seed: int, steps: tuple[int, ...]) -> None:
    rng = random.Random(seed)
    defs = _defs("30 minutes")
    events = random_session_events(rng, 30, steps)
    live = Harness(defs)
    for i, (ts, props) in enumerate(events):
        live.tick(ts)
        live.send(event("Page Viewed", ts, f"e{i}", props))
    end = events[-1][0] + rng.choice([MIN, 10 * MIN, 31 * MIN, 2 * H])
    live.tick(end)
    backfilled = Harness([])
    for i, (ts, props) in enumerate(events):
        backfilled.send(event("Page Viewed", ts, f"e{i}", props))
    backfilled.redefine(defs, now=end)
    assert final_state(backfilled) == final_state(live)


@pytest.mark.parametrize("seed", range(10))
def test_events_late_by_less_than_the_inactivity_period_count_as_in_time_order(seed: int) -> None:
    """The documented bound: an expired session is kept one more inactivity period, so an
    event arriving up to that late (after the session it belongs to expired) — joining,
    reviving or bridging sessions — gives exactly what time order gives."""
    rng = random.Random(seed)
    defs = _defs("1 hour")
    ts, events = T0, []
    for i in range(25):
        ts += rng.choice([1, 10, 30, 55, 59, 61, 90, 180]) * MIN
        props = {"v": rng.choice(["a", "b", 1, 2, None])}
        events.append((ts + rng.randrange(0, 60) * MIN, event("Page Viewed", ts, f"e{i}", props)))
    end = max(at for at, _ in events) + rng.choice([0, 30 * MIN, 2 * H])
    ordered, late = Harness(defs), Harness(defs)
    for _, e in events:
        ordered.send(e, now=e.timestamp)
    for at, e in sorted(events, key=lambda x: x[0]):
        late.send(e, now=at)
    ordered.tick(end)
    late.tick(end)
    assert final_state(late) == final_state(ordered)


@pytest.mark.parametrize("seed", range(6))
def test_with_allowed_lateness_any_accepted_arrival_order_counts_as_time_order(seed: int) -> None:
    from engage_stream.engine import EngineSettings

    rng = random.Random(seed)
    defs = _defs("30 minutes")
    ts, events = T0, []
    for i in range(20):
        ts += rng.choice([1, 10, 29, 31, 45]) * MIN
        events.append(event("Page Viewed", ts, f"e{i}", {"v": rng.choice(["a", "b", 1, None])}))
    last = events[-1].timestamp
    lateness = EngineSettings(allowed_lateness_ms=DAY)
    ordered, shuffled = Harness(defs, settings=lateness), Harness(defs, settings=lateness)
    for e in events:
        ordered.send(e, now=e.timestamp)
    for e in rng.sample(events, len(events)):
        shuffled.send(e, now=last)
    for t in (last, last + 20 * MIN, last + 2 * H):
        ordered.tick(t)
        shuffled.tick(t)
        assert final_state(shuffled) == final_state(ordered)


def test_a_backfill_keeps_a_long_current_session_whole() -> None:
    """Recomputing reads the history in time order at today's clock: a session that
    started long ago and is still going must come out whole, not from the point where its
    events stop looking old."""
    defs = [trait("s", "counter", "Page Viewed", session="30 minutes")]
    live, backfilled = Harness(defs), Harness([])
    for i in range(31):  # one every 20 minutes for 10 hours: one session
        ts = T0 + i * 20 * MIN
        live.send(event("Page Viewed", ts, f"e{i}"))
        backfilled.send(event("Page Viewed", ts, f"e{i}"))
    end = T0 + 600 * MIN + MIN
    live.tick(end)
    backfilled.redefine(defs, now=end)
    assert live.value("s") == 31
    assert final_state(backfilled) == final_state(live)
