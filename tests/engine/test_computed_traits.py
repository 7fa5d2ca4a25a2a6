"""Computed traits (reference §2): every type, filters, windows, emission on change only."""

from __future__ import annotations

from typing import Any

import pytest

from engage_stream.engine import Engine
from tests.engine.harness import DAY, MIN, T0, H, Harness, audience, exit_at, summary, trait

PRICES: list[Any] = [10, 2.5, "x", True, None, 7]


@pytest.mark.parametrize(
    ("type_", "values", "extra", "expected"),
    [
        ("counter", PRICES, {}, 6),
        ("sum", PRICES, {}, 19.5),  # strings, booleans and missing values are ignored
        ("sum", [1, 2, 3], {}, 6),
        ("sum", [1, "2", " 3 ", "1e3", "1_000"], {}, 3),  # plain decimal strings only
        ("sum", ["2.5", 1, "nan", "inf", "1e400", "", False], {}, 3.5),
        ("sum", ["12345678901234567891", 1], {}, 12345678901234567892),  # exact
        ("avg", ["10", 20, "x"], {}, 15.0),
        ("min", ["3", 4, "-1.5", "abc"], {}, -1.5),
        ("max", ["30", 4, "x"], {}, 30),
        ("max", ["9", "10"], {}, 10),  # numerically, not as text
        ("avg", [10, 20, "x"], {}, 15.0),
        ("min", PRICES, {}, 2.5),
        ("max", PRICES, {}, 10),
        ("most_frequent", ["b", "a", "b", "a", "c"], {}, "a"),  # tie → alphabetical first
        ("most_frequent", ["b", "b", "a"], {}, "b"),
        ("most_frequent", ["a", "b", "c"], {}, None),  # nothing tracked twice
        ("most_frequent", ["a", "b", "c"], {"min_frequency": 1}, "a"),
        ("most_frequent", [1, 1, "1"], {}, "1"),  # compared as strings
        ("first", ["x", "y", "z"], {}, "x"),
        ("last", ["x", "y", None], {}, "y"),  # events without the property do not count
        ("unique_list", ["b", "a", "b", 1, True], {}, ["1", "a", "b", "true"]),
        ("unique_count", ["b", "a", "b", 1], {}, 3),
    ],
)
def test_trait_types(type_: str, values: list[Any], extra: dict[str, Any], expected: Any) -> None:
    prop = {} if type_ == "counter" else {"property": "v"}
    h = Harness([trait("t", type_, "E", **prop, **extra)])
    for i, v in enumerate(values):
        h.track("E", T0 + i * MIN, {} if v is None else {"v": v})
    got = h.value("t")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "v", [7, 2.5, "4", " 6 ", "1e2", "0x10", "nan", "inf", "", "abc", True, None, {"a": 1}]
)
def test_aggregations_read_numbers_as_the_operators_do(v: Any) -> None:
    """A value counts in sum/min/max exactly when `>=` compares it as a number."""
    h = Harness(
        [
            trait("s", "sum", "E", property="v"),
            audience(
                "numeric",
                [{"event": "E", "where": [{"property": "v", "operator": ">=", "value": -1e300}]}],
            ),
        ]
    )
    h.track("E", T0, {"v": v})
    assert (h.value("s") is not None) is h.member("numeric")


def test_first_and_last_go_by_event_time_not_arrival() -> None:
    h = Harness([trait("f", "first", "E", property="v"), trait("l", "last", "E", property="v")])
    h.track("E", T0 + 2 * MIN, {"v": "middle"})
    h.track("E", T0 + 3 * MIN, {"v": "newest"})
    h.track("E", T0 + 1 * MIN, {"v": "oldest"}, now=T0 + 4 * MIN)
    assert (h.value("f"), h.value("l")) == ("oldest", "newest")


def test_emitted_only_when_the_value_changes() -> None:
    h = Harness([trait("top", "max", "Order", property="total")])
    assert summary(h.track("Order", T0, {"total": 50})) == [("top", 50, T0, "event:m0")]
    assert h.track("Order", T0 + 1, {"total": 20}) == []
    out = h.track("Order", T0 + 2, {"total": 80})
    assert [(c.value, c.previous, c.kind) for c in out] == [(80, 50, "computed_trait")]
    tv = h.record().computed_traits["top"]
    assert (tv.value, tv.ts) == (80, T0 + 2)
    assert tv.message_id == "", "stored values carry no message id: it doubled the record"


def test_where_filters() -> None:
    h = Harness(
        [
            trait(
                "shoe_spend",
                "sum",
                "Order",
                property="total",
                where=[{"property": "category", "operator": "=", "value": "shoes"}],
            )
        ]
    )
    h.track("Order", T0, {"total": 10, "category": "shoes"})
    h.track("Order", T0 + 1, {"total": 99, "category": "hats"})
    h.track("Order", T0 + 2, {"total": 5, "category": "shoes"})
    assert h.value("shoe_spend") == 15


def test_within_window_updates_and_drops_to_zero_by_time() -> None:
    h = Harness([trait("n", "counter", "Login", within="1 day")])
    h.track("Login", T0)
    h.track("Login", T0 + H)
    assert h.value("n") == 2
    first, second = exit_at(T0, DAY), exit_at(T0 + H, DAY)
    assert T0 + DAY < first <= T0 + DAY + DAY // 1000, "late by at most 0.1 %, never early"
    assert h.tick(first - 1) == []
    assert summary(h.tick(first)) == [("n", 1, first, f"timer:{first}")]
    out = h.tick(second)
    assert summary(out) == [("n", 0, second, f"timer:{second}")]
    assert out[0].previous == 1
    assert h.record().computed_traits["n"].value == 0, "an empty window counts 0, not null"
    assert Engine.state(h.record(), "n") == T0, "only the first instant it counted is kept"
    assert h.wakeup() is None


def test_between_window() -> None:
    h = Harness([trait("n", "counter", "Login", between=["1 day", "2 days"])])
    h.track("Login", T0)
    assert h.value("n") is None
    assert [c.value for c in h.tick(T0 + DAY)] == [1]
    assert [c.value for c in h.tick(T0 + 2 * DAY + 1)] == [0]


def test_last_within_window_falls_back_to_nothing_not_to_older_values() -> None:
    h = Harness([trait("l", "last", "E", property="v", within="1 day")])
    h.track("E", T0, {"v": "a"})
    h.track("E", T0 + H, {"v": "b"})
    assert h.value("l") == "b"
    assert len(Engine.state(h.record(), "l")[0]) == 1, "older entries can never be the answer again"
    assert [c.value for c in h.tick(exit_at(T0 + H, DAY))] == [None]


def test_first_within_window_moves_to_the_next_oldest() -> None:
    h = Harness([trait("f", "first", "E", property="v", within="1 day")])
    h.track("E", T0, {"v": "a"})
    h.track("E", T0 + H, {"v": "b"})
    assert [c.value for c in h.tick(exit_at(T0, DAY))] == ["b"]


def test_lookback_counter_keeps_hour_buckets() -> None:
    h = Harness([trait("n", "counter", "E", include_history={"days": 1})])
    for i in range(60):
        h.track("E", T0 + i * MIN)  # all in the first hour
    h.track("E", T0 + H + 5 * MIN)
    main, pending, total, first = Engine.state(h.record(), "n")
    assert main == [[T0, 60], [T0 + H, 1]] and pending == [] and total == 61 and first == T0
    assert h.value("n") == 61
    assert h.wakeup() == T0 + H + DAY, "the first hour leaves at its end + 1 day"
    assert [c.value for c in h.tick(T0 + H + DAY)] == [1]
    assert [c.value for c in h.tick(T0 + 2 * H + DAY)] == [0]


def test_no_history_no_window_keeps_one_aggregate() -> None:
    h = Harness(
        [trait("n", "sum", "E", property="v", include_history=False)],
        applied_at={"n": T0},
    )
    h.track("E", T0 - 1, {"v": 100}, now=T0)
    for i in range(50):
        h.track("E", T0 + i * DAY, {"v": 2})
    assert h.value("n") == 100
    assert Engine.state(h.record(), "n") == [
        [[0, [100, [], 50, 0]]],
        [],
        [100, [], 50, 0],
        T0,
    ], "T0 - 1 is before the definition: it never counted"
    assert h.wakeup() is None


def test_trait_reference_in_where_is_re_decided_when_the_trait_changes() -> None:
    h = Harness(
        [
            trait(
                "fav_spend",
                "sum",
                "Order",
                property="total",
                within="30 days",
                where=[{"property": "category", "operator": "=", "value_from": {"trait": "fav"}}],
            )
        ]
    )
    h.identify({"fav": "shoes"}, T0)
    h.track("Order", T0 + 1, {"total": 10, "category": "shoes"})
    h.track("Order", T0 + 2, {"total": 7, "category": "hats"})
    assert h.value("fav_spend") == 10
    assert [c.value for c in h.identify({"fav": "hats"}, T0 + 3)] == [7]


def test_anonymous_profiles_get_no_trait_until_identified() -> None:
    h = Harness([trait("n", "counter", "E")])
    pid = "anonymous_id:a1"
    assert h.track("E", T0, user=None, anon="a1") == []
    out = h.identify({"email": "a@b.c"}, T0 + 1, user=None, anon="a1")
    assert [(c.key, c.value) for c in out] == [("n", 1)]
    assert h.value("n", pid) == 1


def test_float_sums_are_exact_and_order_free() -> None:
    h = Harness([trait("s", "sum", "E", property="v"), trait("a", "avg", "E", property="v")])
    for i, v in enumerate([0.1, 0.2, 0.3, 1e16, -1e16]):
        h.track("E", T0 + i, {"v": v})
    assert h.value("s") == 0.6  # math.fsum, not 0.6000000000000001 or 0.0
    assert h.value("a") == pytest.approx(0.12)


ORDER_WINDOWS: list[dict[str, Any]] = [
    {},  # one aggregate (no lookback)
    {"include_history": {"days": 30}},  # hour buckets
    {"within": "30 days"},  # one entry per event
    {"where": [{"property": "v", "operator": "!=", "value_from": {"trait": "nope"}}]},
]


@pytest.mark.parametrize("window", ORDER_WINDOWS, ids=["all", "lookback", "within", "dynamic"])
def test_unique_list_order_is_alphabetical_ignoring_case_with_numbers_numerically(
    window: dict[str, Any],
) -> None:
    """Reference §2: unique lists are alphabetical (README "ordering rule"): numbers first,
    by value; then text by its case-folded form, ties (same letters, other case) by code point."""
    h = Harness([trait("u", "unique_list", "E", property="v", **window)])
    if "where" in window:
        h.identify({"nope": "-"}, T0 - MIN)
    for i, v in enumerate(["shoes", "Hats", "10", "9", 9, "apple", "Banana", "hats", 2.5, "-1"]):
        h.track("E", T0 + i * MIN, {"v": v})
    assert h.value("u") == ["-1", "2.5", "9", "10", "apple", "Banana", "Hats", "hats", "shoes"]


@pytest.mark.parametrize("window", ORDER_WINDOWS, ids=["all", "lookback", "within", "dynamic"])
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["hats", "Shoes", "hats", "Shoes"], "hats"),  # not "Shoes" (code point order)
        (["10", "9", "10", "9"], "9"),  # numerically: 9 < 10
        ([10, "9", 10, 9], "9"),
        (["b", "B", "b", "B"], "B"),  # same letters: code point order decides
    ],
)
def test_most_frequent_tie_takes_the_first_in_the_ordering_rule(
    window: dict[str, Any], values: list[Any], expected: str
) -> None:
    h = Harness([trait("m", "most_frequent", "E", property="v", **window)])
    if "where" in window:
        h.identify({"nope": "-"}, T0 - MIN)
    for i, v in enumerate(values):
        h.track("E", T0 + i * MIN, {"v": v})
    assert h.value("m") == expected


@pytest.mark.parametrize("window", ORDER_WINDOWS, ids=["all", "lookback", "within", "dynamic"])
@pytest.mark.parametrize(
    ("type_", "as_string", "expected"),
    [
        ("min", False, -1),  # numbers (numeric strings included); text is ignored
        ("max", False, 10),
        ("min", True, "-1"),  # as text, by code point: "-" < "1" < "2" < "9" < "B" < "a"
        ("max", True, "apple"),
    ],
)
def test_min_max_as_string_compare_lexicographically(
    window: dict[str, Any], type_: str, as_string: bool, expected: Any
) -> None:
    """Reference §2: min / max order numerically; `as string`, lexicographically."""
    h = Harness([trait("m", type_, "E", property="v", as_string=as_string, **window)])
    if "where" in window:
        h.identify({"nope": "-"}, T0 - MIN)
    for i, v in enumerate(["9", 10, "apple", "Banana", 2.5, "-1", {"a": 1}, ["x"]]):
        h.track("E", T0 + i * MIN, {"v": v})
    got = h.value("m")
    assert got == expected and type(got) is type(expected)


def test_min_as_string_falls_back_to_the_next_value_when_the_best_leaves() -> None:
    h = Harness([trait("m", "min", "E", property="v", as_string=True, within="2 days")])
    h.track("E", T0, {"v": "a"})
    h.track("E", T0 + DAY, {"v": "c"})
    h.track("E", T0 + DAY + 1, {"v": "b"})
    assert h.value("m") == "a"
    t = exit_at(T0, 2 * DAY)
    assert summary(h.tick(t)) == [("m", "b", t, f"timer:{t}")]


def test_sums_beyond_64_bits_and_the_float_range_never_fail_the_event() -> None:
    """#16: two u64-max or 1e308 revenues on one user used to fail the second event for
    every definition (`Integer exceeds 64-bit range`, `-inf + inf in fsum`)."""
    u64 = 2**64 - 1
    h = Harness(
        [
            trait("revenue", "sum", "Order Completed", property="revenue"),
            trait("avg_revenue", "avg", "Order Completed", property="revenue"),
            trait("orders", "counter", "Order Completed"),
            trait("revenue_7d", "sum", "Order Completed", property="revenue", within="7 days"),
        ]
    )
    h.track("Order Completed", T0, {"revenue": u64})
    h.track("Order Completed", T0 + MIN, {"revenue": u64})
    assert h.value("orders") == 2
    assert h.value("revenue") == float(2 * u64) and type(h.value("revenue")) is float
    assert h.value("avg_revenue") == float(u64)
    assert h.value("revenue_7d") == float(2 * u64)
    # exact again once the window holds one of them (the big int part is kept exactly)
    h.track("Order Completed", T0 + 4 * DAY, {"revenue": 3})
    h.tick(exit_at(T0 + MIN, 7 * DAY))
    assert h.value("revenue_7d") == 3 and h.value("orders") == 3
    # floats beyond MAX_FLOAT_TERM do not count for a sum (the event still counts)
    g = Harness([trait("s", "sum", "E", property="v"), trait("n", "counter", "E")])
    for i, v in enumerate([1e308, 1e308, -1e308, 5]):
        g.track("E", T0 + i * MIN, {"v": v})
    assert (g.value("s"), g.value("n")) == (5, 4)
