"""What a computed trait is when its window empties: a counter, sum or unique count that
has had a value is 0 (so `orders_30d = 0`, `< 2`, `at_most` hold), every other type is
cleared; a profile that never had a qualifying event has no value at all."""

from __future__ import annotations

from typing import Any

import pytest

from engage_stream.engine import Engine
from tests.engine.harness import DAY, MIN, T0, H, Harness, audience, exit_at, summary, trait

WINDOWS: list[dict[str, Any]] = [
    {"within": "1 day"},  # exact
    {"between": ["1 hour", "1 day"]},  # exact, enters later
    {"include_history": {"days": 1}},  # bucketed (hour-precise lookback)
    {
        "within": "1 day",  # dynamic: a trait reference in the filter
        "where": [{"property": "v", "operator": ">", "value_from": {"trait": "floor"}}],
    },
]


@pytest.mark.parametrize("window", WINDOWS, ids=["within", "between", "lookback", "trait-ref"])
@pytest.mark.parametrize(
    ("type_", "empty"),
    [
        ("counter", 0),
        ("sum", 0),
        ("unique_count", 0),
        ("avg", None),
        ("min", None),
        ("max", None),
        ("first", None),
        ("last", None),
        ("most_frequent", None),
        ("unique_list", None),
    ],
)
def test_value_when_the_window_empties(type_: str, empty: Any, window: dict[str, Any]) -> None:
    prop = {} if type_ == "counter" else {"property": "v"}
    extra = {"min_frequency": 1} if type_ == "most_frequent" else {}
    h = Harness([trait("t", type_, "E", **prop, **extra, **window)])
    h.identify({"floor": 0}, T0 - 1)
    h.track("E", T0, {"v": 4})
    h.tick(T0 + 2 * H)
    assert h.value("t") is not None
    out = h.tick(T0 + 3 * DAY)
    assert [c.value for c in out] == [empty]
    assert "t" in h.record().computed_traits if empty is not None else h.value("t") is None
    assert type(h.value("t")) is type(empty), "an int 0, as an empty sum of ints"
    assert h.wakeup() is None
    assert h.tick(T0 + 30 * DAY) == [], "0 stays"


@pytest.mark.parametrize("type_", ["counter", "sum", "unique_count"])
def test_no_value_without_a_qualifying_event(type_: str) -> None:
    prop = {} if type_ == "counter" else {"property": "v"}
    where = [{"property": "ok", "operator": "=", "value": True}]
    h = Harness([trait("t", type_, "E", within="1 day", where=where, **prop)])
    h.track("Other", T0)
    h.track("E", T0 + 1, {"ok": False, "v": 3})  # filtered out
    if type_ != "counter":
        h.track("E", T0 + 2, {"ok": True})  # no property: does not count either
    h.tick(T0 + 5 * DAY)
    assert h.value("t") is None and "t" not in h.record().computed_traits
    assert h.record().engine.get("t") is None, "nothing kept"


def test_a_between_count_is_absent_until_the_first_event_enters() -> None:
    h = Harness([trait("n", "counter", "E", between=["1 day", "2 days"])])
    assert h.track("E", T0) == []
    assert h.value("n") is None
    assert [(c.at, c.value) for c in h.tick(T0 + 5 * DAY)] == [
        (T0 + DAY, 1),
        (T0 + 2 * DAY + 1, 0),
    ]


def test_an_identify_with_zero_goes_out_when_the_count_drops_to_zero() -> None:
    h = Harness([trait("orders_30d", "counter", "Order", within="30 days")])
    h.track("Order", T0)
    t = exit_at(T0, 30 * DAY)
    out = h.tick(t)
    assert summary(out) == [("orders_30d", 0, t, f"timer:{t}")]
    assert out[0].previous == 1


@pytest.mark.parametrize(
    ("cond", "member_after"),
    [
        ({"operator": "<", "value": 2}, True),
        ({"operator": "=", "value": 0}, True),
        ({"operator": "at_most", "value": 0}, True),
        ({"operator": "exists"}, True),
        ({"operator": ">=", "value": 1}, False),
    ],
)
def test_audiences_on_a_count_see_zero(cond: dict[str, Any], member_after: bool) -> None:
    h = Harness(
        [
            trait("logins_7d", "counter", "Login", within="7 days"),
            audience("aud", [{"trait": "logins_7d", **cond}]),
        ]
    )
    h.track("Login", T0)
    before = h.member()
    h.tick(exit_at(T0, 7 * DAY))
    assert h.value("logins_7d") == 0
    assert h.member() is member_after
    if before and member_after:
        assert [c for c in h.changes if c.key == "aud"][-1].value is True, "never exited"


def test_a_late_event_already_out_of_its_window_gives_the_in_order_value() -> None:
    live = Harness([trait("n", "counter", "E", within="1 day")])
    live.track("E", T0)
    live.tick(T0 + 3 * DAY)
    late = Harness([trait("n", "counter", "E", within="1 day")])
    assert [c.value for c in late.track("E", T0, now=T0 + 3 * DAY)] == [0]
    assert late.value("n") == live.value("n") == 0
    assert Engine.state(late.record(), "n") == Engine.state(live.record(), "n") == T0


def test_a_backfill_gives_the_live_value() -> None:
    h = Harness([])
    h.track("E", T0, {"v": 2})
    h.track("E", T0 + MIN, {"v": "3"})
    h.tick(T0 + 5 * DAY)
    defs = [
        trait("n", "counter", "E", within="1 day"),
        trait("s", "sum", "E", property="v", include_history={"days": 1}),
        trait("a", "avg", "E", property="v", within="1 day"),
    ]
    out = h.redefine(defs, now=T0 + 5 * DAY)
    assert sorted((c.key, c.value) for c in out) == [("n", 0), ("s", 0)]
    live = Harness(defs)
    live.track("E", T0, {"v": 2})
    live.track("E", T0 + MIN, {"v": "3"})
    live.tick(T0 + 5 * DAY)
    assert {k: live.value(k) for k in "nsa"} == {k: h.value(k) for k in "nsa"}
