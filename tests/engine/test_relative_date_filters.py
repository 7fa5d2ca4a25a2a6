"""Relative-date operators in event filters (reference §1.5: inclusive, "today" = the
evaluation time): an event counts while the clock is where its filter holds, inside its
time window, and the boundaries are wake-ups — members enter and exit with no new input."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engage_stream.engine import Engine
from engage_stream.events import ProfileEvent
from tests.engine import harness
from tests.engine.harness import DAY, MIN, T0, H, Harness, audience, event, final_state, trait
from tests.engine.test_operators import iso


def when(op: str, value: str, prop: str = "at") -> dict[str, Any]:
    return {"property": prop, "operator": op, "value": value}


def one_row(**row: Any) -> Harness:
    return Harness([audience("aud", [row])])


def orders(*where: dict[str, Any], **row: Any) -> Harness:
    return one_row(event="Order", within="30 days", where=list(where), **row)


def dates(x: Any) -> Any:
    """Offsets from T0 as ISO timestamps (lists element-wise; strings as they are)."""
    if isinstance(x, list):
        return [dates(e) for e in x]
    return iso(T0 + x) if isinstance(x, int) else x


@pytest.mark.parametrize(
    ("op", "value", "date", "flips"),
    [
        # (op, duration, property date - T0, [(instant - T0, member from then on)])
        ("within_next", "3 days", 5 * DAY, [(2 * DAY, True), (5 * DAY + 1, False)]),
        ("within_next", "3 days", DAY, [(0, True), (DAY + 1, False)]),
        ("within_next", "3 days", -1, []),  # already past
        ("within_next", "3 days", 40 * DAY, []),  # due only after the event left its window
        ("within_last", "1 day", 2 * DAY, [(2 * DAY, True), (3 * DAY + 1, False)]),
        ("within_last", "2 days", -DAY, [(0, True), (DAY + 1, False)]),
        ("within_last", "1 day", -DAY - 1, []),
        ("before_last", "2 days", 0, [(2 * DAY, True), (30 * DAY, False)]),  # window ends it
        ("before_last", "2 days", -5 * DAY, [(0, True), (30 * DAY, False)]),
        ("after_next", "1 day", 3 * DAY, [(0, True), (2 * DAY + 1, False)]),
        ("after_next", "1 day", DAY - 1, []),
        (
            "within_next",
            "1 day",
            [10 * DAY, 20 * DAY],  # any element: two separate spells
            [(9 * DAY, True), (10 * DAY + 1, False), (19 * DAY, True), (20 * DAY + 1, False)],
        ),
        ("within_next", "1 day", "not a date", []),
        ("within_next", "1 day", "2023-11-20T00:00:00", []),  # no zone: not a date
    ],
)
def test_enters_and_exits_at_the_inclusive_boundaries_by_time_alone(
    op: str, value: str, date: Any, flips: list[tuple[int, bool]]
) -> None:
    h = orders(when(op, value))
    out = h.track("Order", T0, {"at": dates(date)})
    expected_now = [True] if flips and flips[0][0] == 0 else []
    assert [c.value for c in out] == expected_now
    timed = [(T0 + d, m) for d, m in flips if d > 0]
    if not flips:
        assert Engine.state(h.record(), "aud") is None, "an event that never counts is not kept"
    for at, member in timed:
        assert h.wakeup() == at
        assert h.tick(at - 1) == [], "inclusive: the last instant before the flip"
        assert [(c.value, c.cause) for c in h.tick(at)] == [(member, f"timer:{at}")]
    assert h.wakeup() is None
    assert Engine.state(h.record(), "aud") is None


def test_counts_only_the_orders_due_at_the_same_time() -> None:
    h = orders(when("within_next", "3 days"), count=">= 2")
    h.track("Order", T0, {"at": iso(T0 + 5 * DAY)})  # counts in [T0 + 2d, T0 + 5d]
    h.track("Order", T0 + H, {"at": iso(T0 + 7 * DAY)})  # counts in [T0 + 4d, T0 + 7d]
    h.track("Order", T0 + 2 * H, {})  # no date: never counts
    assert [(c.at, c.value) for c in h.tick(T0 + 9 * DAY)] == [
        (T0 + 4 * DAY, True),
        (T0 + 5 * DAY + 1, False),
    ]


def test_mixed_with_constant_and_trait_filters() -> None:
    h = orders(
        when("within_next", "2 days"),
        {"property": "status", "operator": "=", "value": "shipped"},
        {"property": "total", "operator": ">", "value_from": {"trait": "budget"}},
    )
    h.identify({"budget": 50}, T0)
    h.track("Order", T0 + 1, {"at": iso(T0 + DAY), "status": "shipped", "total": 40})
    h.track("Order", T0 + 2, {"at": iso(T0 + DAY), "status": "pending", "total": 90})
    assert not h.member()
    assert [c.value for c in h.identify({"budget": 10}, T0 + 3)] == [True]
    assert [(c.at, c.value) for c in h.tick(T0 + 3 * DAY)] == [(T0 + DAY + 1, False)]


def test_not_performed_returns_when_the_date_passes() -> None:
    h = orders(when("within_next", "1 day"), performed=False)
    assert [c.value for c in h.track("Other", T0)] == [True]
    assert [c.value for c in h.track("Order", T0 + H, {"at": iso(T0 + 3 * DAY)})] == []
    assert [(c.at, c.value) for c in h.tick(T0 + 5 * DAY)] == [
        (T0 + 2 * DAY, False),
        (T0 + 3 * DAY + 1, True),
    ]


def test_funnel_parent_filter_follows_the_clock() -> None:
    """Added with an offer ending in at most 2 days, then no order within 1 hour."""
    h = one_row(
        event="Added",
        within="7 days",
        where=[when("within_next", "2 days", "offer_ends")],
        then_not={"event": "Order", "within": "1 hour"},
    )
    h.track("Added", T0, {"offer_ends": iso(T0 + 3 * DAY)})
    assert [(c.at, c.value) for c in h.tick(T0 + 8 * DAY)] == [
        (T0 + DAY, True),
        (T0 + 3 * DAY + 1, False),
    ]


def test_funnel_child_filter_follows_the_clock() -> None:
    """Added, then an order whose delivery is due within a day (while it is)."""
    child = {"event": "Order", "within": "1 hour"}
    h = one_row(
        event="Added",
        within="7 days",
        then={**child, "where": [when("within_next", "1 day", "delivery_at")]},
    )
    h.track("Added", T0)
    h.track("Order", T0 + MIN, {"delivery_at": iso(T0 + 2 * DAY)})
    h.track("Order", T0 + 2 * H, {"delivery_at": iso(T0 + DAY)})  # too late for the parent
    assert not h.member()
    assert [(c.at, c.value) for c in h.tick(T0 + 8 * DAY)] == [
        (T0 + DAY, True),
        (T0 + 2 * DAY + 1, False),
    ]


@pytest.mark.parametrize(
    ("type_", "values", "timeline"),
    [
        # orders at T0 (due T0 + 5d, v 10) and T0 + 1h (due T0 + 4d, v 5), within_next 3d:
        # counting in [T0 + 2d, T0 + 5d] and [T0 + 1d, T0 + 4d]
        ("counter", {}, [(DAY, 1), (2 * DAY, 2), (4 * DAY + 1, 1), (5 * DAY + 1, 0)]),
        ("sum", {"property": "v"}, [(DAY, 5), (2 * DAY, 15), (4 * DAY + 1, 10), (5 * DAY + 1, 0)]),
        ("max", {"property": "v"}, [(DAY, 5), (2 * DAY, 10), (5 * DAY + 1, None)]),
        ("last", {"property": "v"}, [(DAY, 5), (4 * DAY + 1, 10), (5 * DAY + 1, None)]),
    ],
)
def test_computed_trait_where_follows_the_clock(
    type_: str, values: dict[str, Any], timeline: list[tuple[int, Any]]
) -> None:
    h = Harness(
        [
            trait(
                "t",
                type_,
                "Order",
                within="30 days",
                where=[when("within_next", "3 days")],
                **values,
            )
        ]
    )
    assert h.track("Order", T0, {"at": iso(T0 + 5 * DAY), "v": 10}) == []
    assert h.track("Order", T0 + H, {"at": iso(T0 + 4 * DAY), "v": 5}) == []
    assert [(c.at - T0, c.value) for c in h.tick(T0 + 40 * DAY)] == timeline
    assert h.wakeup() is None


def test_an_order_whose_date_passed_before_it_arrived_still_gives_a_zero_count() -> None:
    h = Harness([trait("n", "counter", "Order", where=[when("within_next", "1 day")])])
    out = h.track("Order", T0, {"at": iso(T0 + DAY)}, now=T0 + 3 * DAY)
    assert [c.value for c in out] == [0], "it counted from T0 to T0 + 1 day: the count is 0"
    h2 = Harness([trait("n", "counter", "Order", where=[when("within_next", "1 day")])])
    h2.track("Order", T0, {"at": iso(T0 + DAY)})
    assert [c.value for c in h2.tick(T0 + 3 * DAY)] == [0]


def definitions() -> list[Any]:
    due = when("within_next", "2 days")
    return [
        audience("soon", [{"event": "Order", "within": "5 days", "where": [due]}]),
        audience(
            "two_soon",
            [{"event": "Order", "between": ["1 hour", "4 days"], "where": [due], "count": "= 2"}],
        ),
        audience(
            "recent",
            [{"event": "Order", "where": [when("within_last", "1 day")], "performed": False}],
        ),
        trait("n_soon", "counter", "Order", within="3 days", where=[due]),
        trait("v_soon", "sum", "Order", property="v", where=[due], include_history={"days": 4}),
    ]


def workload(seed: int) -> list[ProfileEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(40):
        ts = T0 + rng.randrange(0, 6 * DAY // MIN) * MIN
        at = [iso(ts + rng.randrange(-3 * DAY, 4 * DAY)) for _ in range(rng.choice([1, 1, 2]))]
        props = {"at": at if len(at) > 1 else at[0], "v": rng.choice([1, 2.5, "3"])}
        out.append(event("Order", ts, f"s{seed}-{i}", props, user=rng.choice(["u1", "u2"])))
    return out


END = T0 + 12 * DAY
PIDS = ("user_id:u1", "user_id:u2")


def run(events: list[ProfileEvent], ticks: bool) -> Harness:
    return harness.replay(definitions(), events, ticks, END)


@pytest.mark.parametrize("seed", range(12))
def test_replay_determinism_and_arrival_order(seed: int) -> None:
    events = workload(seed)
    in_order = sorted(events, key=lambda e: (e.timestamp, e.message_id))
    a, b = run(in_order, ticks=True), run(in_order, ticks=True)
    assert a.changes and a.changes == b.changes, "same input, same changes and message ids"
    coarse = run(in_order, ticks=False)
    for pid in PIDS:  # when ticks come does not change what comes out
        mine = [c for c in a.changes if c.profile_id == pid]
        assert mine == [c for c in coarse.changes if c.profile_id == pid]
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    assert final_state(run(shuffled, ticks=False), PIDS) == final_state(a, PIDS)


def test_a_backfill_gives_the_final_state_of_live_processing() -> None:
    events = sorted(workload(99), key=lambda e: (e.timestamp, e.message_id))
    live = run(events, ticks=True)
    h = Harness([])
    for ev in events:
        h.send(ev, now=max(h.now, ev.timestamp))
    h.redefine(definitions(), now=END)
    assert final_state(h, PIDS) == final_state(live, PIDS)
