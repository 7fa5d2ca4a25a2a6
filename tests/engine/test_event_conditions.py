"""Event conditions: counts, windows, property filters, lookback, history, anonymity."""

from __future__ import annotations

from typing import Any

import pytest

from engage_stream.engine import Engine
from tests.engine.harness import DAY, MIN, T0, H, Harness, audience, summary


def login_within(days: float = 7, **cond: Any) -> Harness:
    return Harness([audience("aud", [{"event": "Login", "within": f"{days} days", **cond}])])


def test_enters_on_event_and_exits_by_time_alone() -> None:
    h = login_within(7)
    assert summary(h.track("Login", T0)) == [("aud", True, T0, "event:m0")]
    assert h.wakeup() == T0 + 7 * DAY, "the event leaves (now - 7d, now] at ts + 7 days"
    assert h.tick(T0 + 7 * DAY - 1) == []
    assert summary(h.tick(T0 + 7 * DAY)) == [("aud", False, T0 + 7 * DAY, f"timer:{T0 + 7 * DAY}")]
    assert h.wakeup() is None
    assert h.tick(T0 + 30 * DAY) == [], "fires once"
    c = h.changes[-1]
    assert (c.kind, c.previous, c.version, c.profile_id) == ("audience", True, 1, "user_id:u1")


def test_a_later_event_moves_the_exit() -> None:
    h = login_within(7)
    h.track("Login", T0)
    assert h.track("Login", T0 + 2 * DAY) == [], "already a member: nothing emitted"
    assert h.wakeup() == T0 + 9 * DAY
    assert h.tick(T0 + 8 * DAY) == []
    assert [c.value for c in h.tick(T0 + 9 * DAY)] == [False]


def test_unrelated_events_do_not_emit() -> None:
    h = login_within(7)
    assert h.track("Other", T0) == []
    assert h.record().engine.get("aud") is None
    assert h.wakeup() is None


@pytest.mark.parametrize(
    ("op", "value", "n", "expected"),
    [
        (">=", 2, 1, False),
        (">=", 2, 2, True),
        (">=", 2, 3, True),
        (">", 2, 2, False),
        (">", 2, 3, True),
        ("=", 2, 2, True),
        ("=", 2, 3, False),
        ("!=", 2, 2, False),
        ("!=", 2, 3, True),
        ("<=", 2, 2, True),
        ("<=", 2, 3, False),
        ("<", 2, 1, True),
        ("<", 2, 2, False),
    ],
)
def test_count_operators(op: str, value: int, n: int, expected: bool) -> None:
    h = login_within(7, count=f"{op} {value}")
    h.track("Other", T0)  # first touch: "< 2" / "!= 2" audiences hold with zero events
    for i in range(n):
        h.track("Login", T0 + i * MIN)
    assert h.member() is expected


def test_count_exits_when_events_age_out_one_by_one() -> None:
    h = login_within(1, count=">= 2")
    h.track("Login", T0)
    h.track("Login", T0 + H)
    h.track("Login", T0 + 2 * H)
    assert h.member()
    assert h.wakeup() == T0 + DAY + H, "the second oldest leaving is the first flip"
    assert h.tick(T0 + DAY + H - 1) == [], "two left in the window"
    assert [c.value for c in h.tick(T0 + DAY + H)] == [False]


def test_exactly_one_leaves_and_enters_with_time() -> None:
    h = login_within(1, count="= 1")
    h.track("Login", T0)
    h.track("Login", T0 + H)
    assert not h.member()
    assert summary(h.tick(T0 + DAY)) == [("aud", True, T0 + DAY, f"timer:{T0 + DAY}")]
    assert summary(h.tick(T0 + DAY + H)) == [("aud", False, T0 + DAY + H, f"timer:{T0 + DAY + H}")]


def test_not_performed_holds_for_a_new_profile_and_returns_after_the_window() -> None:
    h = Harness([audience("aud", [{"event": "Purchase", "performed": False, "within": "7 days"}])])
    assert summary(h.track("Page Viewed", T0)) == [("aud", True, T0, "event:m0")]
    assert summary(h.track("Purchase", T0 + DAY)) == [("aud", False, T0 + DAY, "event:m1")]
    assert summary(h.tick(T0 + 8 * DAY)) == [("aud", True, T0 + 8 * DAY, f"timer:{T0 + 8 * DAY}")]


def test_between_enters_and_exits_by_time_alone() -> None:
    # performed in between 2 and 5 days ago: event time in [now - 5d, now - 2d]
    h = Harness([audience("aud", [{"event": "Login", "between": ["2 days", "5 days"]}])])
    assert h.track("Login", T0) == []
    assert h.wakeup() == T0 + 2 * DAY
    assert h.tick(T0 + 2 * DAY - 1) == []
    assert summary(h.tick(T0 + 2 * DAY)) == [("aud", True, T0 + 2 * DAY, f"timer:{T0 + 2 * DAY}")]
    assert h.wakeup() == T0 + 5 * DAY + 1
    assert h.tick(T0 + 5 * DAY) == [], "inclusive: still 5 days ago"
    assert summary(h.tick(T0 + 5 * DAY + 1)) == [
        ("aud", False, T0 + 5 * DAY + 1, f"timer:{T0 + 5 * DAY + 1}")
    ]


def test_overdue_boundaries_fire_in_time_order_on_the_next_event() -> None:
    """A missed tick does not change the output: the next call fires the overdue exit
    first, at its own instant, then applies the event."""
    h = login_within(1)
    h.track("Login", T0)
    out = h.track("Login", T0 + 3 * DAY)
    assert summary(out) == [
        ("aud", False, T0 + DAY, f"timer:{T0 + DAY}"),
        ("aud", True, T0 + 3 * DAY, "event:m1"),
    ]


def test_minute_windows_are_exact() -> None:
    h = Harness([audience("aud", [{"event": "Login", "within": "30 minutes"}])])
    h.track("Login", T0 + 17_123)
    assert h.wakeup() == T0 + 17_123 + 30 * MIN
    assert h.tick(T0 + 17_122 + 30 * MIN) == []
    assert len(h.tick(T0 + 17_123 + 30 * MIN)) == 1


# -- property filters -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("where", "props", "expected"),
    [
        ([{"property": "plan", "operator": "equals", "value": "pro"}], {"plan": "pro"}, True),
        ([{"property": "plan", "operator": "equals", "value": "pro"}], {"plan": "free"}, False),
        ([{"property": "plan", "operator": "equals", "value": "pro"}], {}, False),
        (
            [{"property": "cart.total", "operator": ">", "value": 100}],
            {"cart": {"total": 150}},
            True,
        ),
        (
            [{"property": "cart.total", "operator": ">", "value": 100}],
            {"cart": {"total": 50}},
            False,
        ),
        ([{"property": "a\\.b", "operator": "=", "value": 1}], {"a.b": 1}, True),
        ([{"property": "a\\.b", "operator": "=", "value": 1}], {"a": {"b": 1}}, False),
        (
            [{"property": "tags", "operator": "contains", "value": "sale"}],
            {"tags": ["new", "on-sale"]},
            True,
        ),
        (
            [
                {"property": "plan", "operator": "equals", "value": "pro"},
                {"property": "price", "operator": ">=", "value": 10},
            ],
            {"plan": "pro", "price": 9},
            False,
        ),
        (
            [{"property": "page_name", "operator": "starts_with", "value": "Home"}],
            {"page_name": "Home page"},
            True,
        ),
        # an array of objects is its JSON text: string operators only (reference §1.1)
        (
            [{"property": "items", "operator": "contains", "value": '"sku":"a1"'}],
            {"items": [{"sku": "a1", "qty": 2}, {"sku": "b2"}]},
            True,
        ),
        (
            [{"property": "items", "operator": "does_not_contain", "value": "c3"}],
            {"items": [{"sku": "a1"}]},
            True,
        ),
        (
            [{"property": "items", "operator": "=", "value": "a1"}],
            {"items": [{"sku": "a1"}]},
            False,
        ),
        (
            [{"property": "items.sku", "operator": "=", "value": "a1"}],
            {"items": [{"sku": "a1"}]},
            False,  # not addressable
        ),
    ],
)
def test_property_filters(
    where: list[dict[str, Any]], props: dict[str, Any], expected: bool
) -> None:
    h = login_within(7, where=where)
    h.track("Login", T0, props)
    assert h.member() is expected


def test_trait_reference_in_a_filter_follows_the_trait() -> None:
    """`price >= trait(avg_spend)`: decided at evaluation, re-evaluated when the trait changes."""
    h = Harness(
        [
            audience(
                "aud",
                [
                    {
                        "event": "Order Completed",
                        "within": "30 days",
                        "where": [
                            {
                                "property": "price",
                                "operator": ">=",
                                "value_from": {"trait": "avg_spend"},
                            }
                        ],
                    }
                ],
            )
        ]
    )
    h.identify({"avg_spend": 100}, T0)
    h.track("Order Completed", T0 + 1, {"price": 80})
    assert not h.member()
    assert summary(h.identify({"avg_spend": 50}, T0 + 2)) == [("aud", True, T0 + 2, "event:m2")]
    assert [c.value for c in h.identify({"avg_spend": None}, T0 + 3)] == [False], (
        "a missing reference never matches"
    )


# -- lookback and history ---------------------------------------------------------------------
def test_lookback_ages_events_out_at_the_end_of_their_hour() -> None:
    h = Harness([audience("aud", [{"event": "Login"}], include_history={"days": 2})])
    h.track("Login", T0 + 10 * H + 30 * MIN)
    assert h.member()
    leave = T0 + 11 * H + 2 * DAY  # lookbacks are precise to the hour (reference §1.1)
    assert h.wakeup() == leave
    assert h.tick(leave - 1) == []
    assert summary(h.tick(leave)) == [("aud", False, leave, f"timer:{leave}")]


def test_lookback_is_the_outer_window_of_a_longer_within() -> None:
    h = Harness(
        [audience("aud", [{"event": "Login", "within": "30 days"}], include_history={"days": 1})]
    )
    h.track("Login", T0)
    assert h.wakeup() == T0 + H + DAY


def test_events_older_than_the_lookback_never_count() -> None:
    h = Harness([audience("aud", [{"event": "Login"}], include_history={"days": 1})])
    h.tick(T0 + 10 * DAY)
    assert h.track("Login", T0, now=T0 + 10 * DAY) == []
    assert h.record().engine.get("aud") is None, "nothing stored for it"


def test_without_history_events_before_applied_at_are_ignored() -> None:
    applied = T0 + DAY
    defs = [audience("aud", [{"event": "Login", "count": ">= 2"}], include_history=False)]
    h = Harness(defs, applied_at={"aud": applied})
    h.track("Login", T0)  # before the definition was applied
    h.track("Login", applied + 1)
    assert not h.member()
    h.track("Login", applied - 1, now=applied + 2)  # late, but still before applied_at
    assert not h.member()
    h.track("Login", applied + 3)
    assert h.member()
    assert h.wakeup() is None, "no window, no lookback: membership never expires"


def test_without_history_what_counts_is_arrival_after_creation() -> None:
    """Segment counts the events *received* after the audience was created (issue: a late
    event, timed before creation but arriving after, was left out; an import timed after
    creation but received before it was counted)."""
    applied = T0 + DAY
    defs = [audience("aud", [{"event": "Login", "count": ">= 2"}], include_history=False)]
    h = Harness(defs, applied_at={"aud": applied})
    h.track("Login", applied - 3600_000, received=applied + 60_000, now=applied + 60_000)
    h.track("Login", applied + 120_000, received=applied - 1, now=applied + 120_000)
    assert not h.member(), "one received after creation, one before"
    h.track("Login", applied - 7200_000, received=applied + 180_000, now=applied + 180_000)
    assert h.member(), "two received after creation, whatever their timestamps"
    windowed = [audience("w", [{"event": "Login", "within": "7 days"}], include_history=False)]
    w = Harness(windowed, applied_at={"w": applied})
    w.track("Login", applied - 10 * DAY, received=applied + 1, now=applied + 1)
    assert not w.member(), "the window still reads the event's own time"


def test_without_history_a_backfill_skips_events_before_applied_at() -> None:
    h = Harness([])
    h.track("Login", T0)
    h.track("Login", T0 + 2 * DAY)
    defs = [audience("aud", [{"event": "Login", "count": ">= 2"}], include_history=False)]
    assert h.redefine(defs, applied_at={"aud": T0 + DAY}, now=T0 + 3 * DAY) == []
    defs = [audience("aud", [{"event": "Login", "count": ">= 2"}], include_history=True)]
    assert [c.value for c in h.redefine(defs, {"aud": 2}, now=T0 + 3 * DAY)] == [True]


# -- anonymous profiles -------------------------------------------------------------------------
def test_anonymous_profiles_are_not_members_until_identified() -> None:
    h = login_within(7)
    pid = "anonymous_id:a1"
    assert h.track("Login", T0, user=None, anon="a1") == []
    assert not h.member(pid=pid)
    assert Engine.state(h.record(pid), "aud"), "its events still count once it is identified"
    out = h.track("Other", T0 + H, user="u9", anon="a1", profile=pid)
    assert summary(out) == [("aud", True, T0 + H, "event:m1")]


def test_an_email_identifies_a_profile() -> None:
    h = login_within(7)
    pid = "anonymous_id:a1"
    h.track("Login", T0, user=None, anon="a1")
    out = h.identify({"email": "x@example.com"}, T0 + 1, user=None, anon="a1")
    assert [c.value for c in out] == [True]
    assert h.member(pid=pid)


def test_include_anonymous_counts_anonymous_profiles() -> None:
    h = Harness([audience("aud", [{"event": "Login", "within": "7 days"}], include_anonymous=True)])
    assert [c.value for c in h.track("Login", T0, user=None, anon="a1")] == [True]
    assert h.wakeup("anonymous_id:a1") == T0 + 7 * DAY


def test_future_events_count_from_their_time() -> None:
    h = login_within(1)
    assert h.track("Login", T0 + H, now=T0) == []
    assert h.wakeup() == T0 + H
    assert summary(h.tick(T0 + H)) == [("aud", True, T0 + H, f"timer:{T0 + H}")]
