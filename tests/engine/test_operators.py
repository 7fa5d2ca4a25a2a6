"""Comparison semantics of every operator, on properties and traits (reference §1.5)."""

from __future__ import annotations

from typing import Any

import pytest

from engage_stream.definitions.models import Duration, Op, PropertyFilter
from engage_stream.engine.operators import (
    as_number,
    compile_dynamic,
    compile_static,
    duration_next_edge,
    get_path,
    split_path,
)

DAY = 86_400_000
NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("a", ("a",)),
        ("a.b.c", ("a", "b", "c")),
        ("a\\.b", ("a.b",)),
        ("a\\.b.c", ("a.b", "c")),
        ("x\\y", ("x\\y",)),
    ],
)
def test_split_path(path: str, parts: tuple[str, ...]) -> None:
    assert split_path(path) == parts


def test_get_path_nested_and_not_into_arrays() -> None:
    obj = {"a": {"b": {"c": 1}}, "a.b": 2, "l": [{"x": 1}]}
    assert get_path(obj, ("a", "b", "c")) == 1
    assert get_path(obj, ("a.b",)) == 2
    assert get_path(obj, ("a", "zz")) is None
    assert get_path(obj, ("l", "x")) is None, "objects inside arrays are not addressable"


def f(op: str, value: Any = None) -> Any:
    """Compile through the real model (aliases, duration parsing, validation)."""
    flt = PropertyFilter.model_validate({"property": "p", "operator": op, "value": value})
    return compile_static(flt.operator, flt.value)


CASES: list[tuple[str, Any, Any, bool]] = [
    # op, operand, actual value, expected
    ("equals", "pro", "pro", True),
    ("equals", "pro", "Pro", False),  # case-sensitive
    ("equals", 5, 5.0, True),
    ("equals", 5, "5", True),
    ("equals", "5", 5, True),
    ("equals", True, True, True),
    ("equals", "true", True, True),  # reference: trait('VIP') = 'true'
    ("equals", True, "TRUE", True),
    ("equals", True, 1, False),
    ("equals", "pro", None, False),
    ("equals", "b", ["a", "b"], True),  # any element of an array
    ("=", 3, 3, True),
    ("not_equals", "pro", "free", True),
    ("not_equals", "pro", "pro", False),
    ("not_equals", "pro", None, False),  # differs: nulls do not match
    ("!=", "b", ["a", "b"], False),
    ("less_than", 10, 9.5, True),
    ("less_than", 10, 10, False),
    ("less_than", 10, "9", True),  # numeric strings compare as numbers
    ("less_than", 10, "abc", False),
    ("less_than", 10, None, False),
    ("less_than", 10, True, False),
    ("greater_than", 10, 11, True),
    ("greater_than", 10, 10, False),
    ("at_most", 10, 10, True),
    ("at_most", 10, 11, False),
    ("at_least", 10, 10, True),
    ("at_least", 10, 9, False),
    (">=", 2, [1, 3], True),
    ("greater_than", "2024-01-01", "2024-06-01T00:00:00Z", True),  # dates
    ("less_than", "2024-01-01", "2023-12-31T23:59:59+00:00", True),
    ("equals_any_of", ["a", "b"], "b", True),
    ("equals_any_of", ["a", "b"], "c", False),
    ("equals_any_of", [1, 2], "2", True),
    ("equals_any_of", ["a", "b"], None, False),
    ("one_of", ["x"], ["y", "x"], True),
    ("none_of", ["a", "b"], "c", True),
    ("none_of", ["a", "b"], "a", False),
    ("none_of", ["a", "b"], None, False),
    ("contains", "shoe", "red shoes", True),
    ("contains", "Shoe", "red shoes", False),
    ("contains", "shoe", ["hat", "snowshoe"], True),  # against any element
    ("contains", "4", 1234, True),
    ("contains", "x", None, False),
    ("contains", "x", {"x": 1}, False),
    ("does_not_contain", "shoe", "red hat", True),
    ("does_not_contain", "shoe", "red shoes", False),
    ("does_not_contain", "shoe", ["hat", "shoe"], False),
    ("does_not_contain", "shoe", None, True),  # omits = NOT contains
    ("contains_any_of", ["x", "sho"], "shoes", True),
    ("contains_any_of", ["x", "y"], "shoes", False),
    ("starts_with", "ab", "abc", True),
    ("starts_with", "bc", "abc", False),
    ("starts_with", "c", ["abc", "cde"], True),
    ("ends_with", "bc", "abc", True),
    ("ends_with", "ab", "abc", False),
    ("exists", None, "", True),
    ("exists", None, 0, True),
    ("exists", None, False, True),
    ("exists", None, None, False),
    ("not_exists", None, None, True),
    ("not_exists", None, "x", False),
    ("before_date", "2024-01-01", "2023-12-31T23:59:59Z", True),
    ("before_date", "2024-01-01", "2024-01-01T00:00:00Z", False),
    ("before_date", "2024-01-01", "2023-12-31T23:59:59", False),  # no zone: not a date
    ("before_date", "2024-01-01", 0, False),
    ("after_date", "2024-01-01", "2024-01-01T00:00:01+01:00", False),  # 23:00:01Z the day before
    ("after_date", "2024-01-01", "2024-01-01T00:00:01Z", True),
    ("within_last", "7 days", iso(NOW - 7 * DAY), True),  # inclusive
    ("within_last", "7 days", iso(NOW - 7 * DAY - 1000), False),
    ("within_last", "7 days", iso(NOW), True),
    ("within_last", "7 days", iso(NOW + 1000), False),
    ("within_next", "7 days", iso(NOW + 7 * DAY), True),
    ("within_next", "7 days", iso(NOW + 7 * DAY + 1000), False),
    ("within_next", "7 days", iso(NOW - 1000), False),
    ("before_last", "7 days", iso(NOW - 7 * DAY), True),
    ("before_last", "7 days", iso(NOW - 6 * DAY), False),
    ("after_next", "7 days", iso(NOW + 7 * DAY), True),
    ("after_next", "7 days", iso(NOW + 6 * DAY), False),
    ("within_last", "1 day", "not a date", False),
    # arrays of objects are flattened to their JSON text: only string operators match
    ("contains", "a1", [{"sku": "a1"}, {"sku": "b2"}], True),
    ("contains", '"sku":"b2"', [{"sku": "a1"}, {"sku": "b2"}], True),
    ("contains", "c3", [{"sku": "a1"}], False),
    ("does_not_contain", "c3", [{"sku": "a1"}], True),
    ("does_not_contain", "a1", [{"sku": "a1"}], False),
    ("contains_any_of", ["x", "a1"], [{"sku": "a1"}], True),
    ("contains", "a1", ["a1x", {"sku": "zz"}], True),  # a mixed array: flattened too
    ("equals", "a1", [{"sku": "a1"}], False),
    ("equals_any_of", ["a1"], [{"sku": "a1"}], False),
    ("greater_than", 0, [{"n": 5}], False),
    ("exists", None, [{"sku": "a1"}], True),
]


@pytest.mark.parametrize(("op", "operand", "x", "expected"), CASES)
def test_static_operator(op: str, operand: Any, x: Any, expected: bool) -> None:
    assert f(op, operand)(x, NOW) is expected


@pytest.mark.parametrize(
    ("x", "number"),
    [
        (5, 5),
        (2.5, 2.5),
        ("5", 5),  # an int when it spells one
        ("-3", -3),
        ("2.5", 2.5),
        ("2.0", 2.0),
        ("12345678901234567891", 12345678901234567891),  # exact, not via a float
        ("123456789012345678901234", 1.2345678901234568e23),  # beyond 64 bits: the float
        # only plain decimal notation (#16): not Python's number syntax
        (" 7 ", None),
        ("1e3", None),
        ("1_000", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits
        ("+5", None),
        (".5", None),
        ("5.", None),
        ("1" + "0" * 5000, None),  # too long for int(): still an answer, not an error
        ("nan", None),
        ("inf", None),
        (float("inf"), None),
        ("abc", None),
        ("", None),
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_as_number(x: Any, number: Any) -> None:
    got = as_number(x)
    assert got == number and type(got) is type(number)


def test_every_operator_is_covered() -> None:
    covered = {
        PropertyFilter.model_validate({"property": "p", "operator": c[0], "value": c[1]}).operator
        for c in CASES
    }
    assert covered == set(Op)


@pytest.mark.parametrize(
    ("op", "x", "ref", "expected"),
    [
        ("equals", "p1", "p1", True),
        ("equals", "p1", "p2", False),
        ("equals", "p1", None, False),  # missing reference: false
        ("not_equals", "p1", "p2", True),
        ("not_equals", "p1", None, False),
        ("at_least", 50, 40.5, True),
        ("at_least", 30, 40.5, False),
        ("less_than", 30, "40", True),
        ("contains", "red shoes", "shoe", True),
        ("does_not_contain", "red shoes", "hat", True),
        ("does_not_contain", "red shoes", None, False),
        ("starts_with", "abc", "a", True),
        ("ends_with", "abc", "c", True),
    ],
)
def test_dynamic_operator(op: str, x: Any, ref: Any, expected: bool) -> None:
    flt = PropertyFilter.model_validate(
        {"property": "p", "operator": op, "value_from": {"trait": "t"}}
    )
    assert compile_dynamic(flt.operator)(x, ref) is expected


@pytest.mark.parametrize(
    ("op", "date_offset", "edge_offset"),
    [
        # within_last 7d is true for now in [d, d + 7d]
        ("within_last", -1 * DAY, 6 * DAY + 1),  # leaves the range just after d + 7 days
        ("within_last", +2 * DAY, 2 * DAY),  # enters when now reaches d
        ("within_next", +10 * DAY, 3 * DAY),  # true from d - 7 days
        ("within_next", +1 * DAY, 1 * DAY + 1),  # false just after d
        ("before_last", -1 * DAY, 6 * DAY),  # true from d + 7 days
        ("after_next", +10 * DAY, 3 * DAY + 1),  # false just after d - 7 days
    ],
)
def test_duration_edges(op: str, date_offset: int, edge_offset: int) -> None:
    d = NOW + date_offset
    edge = duration_next_edge(Op(op), Duration.model_validate("7 days"), iso(d), NOW)
    assert edge == NOW + edge_offset
    pred = f(op, "7 days")
    assert pred(iso(d), edge - 1) != pred(iso(d), edge), "the edge is where the answer flips"


def test_duration_edge_none_without_a_date() -> None:
    assert duration_next_edge(Op.within_last, Duration.model_validate("1 day"), None, NOW) is None
    assert duration_next_edge(Op.within_last, Duration.model_validate("1 day"), "x", NOW) is None
