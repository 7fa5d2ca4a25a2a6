"""Joins (AND before OR), NOT groups, trait conditions, audience references, dependencies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engage_stream.engine import Engine
from tests.engine.harness import DAY, T0, H, Harness, audience, exit_at, summary, trait


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def did(name: str, **kw: Any) -> dict[str, Any]:
    return {"event": name, **kw}


@pytest.mark.parametrize(
    ("performed", "expected"),
    [
        ("", False),
        ("A", True),
        ("B", False),
        ("C", False),
        ("BC", True),
        ("AB", True),
        ("ABC", True),
    ],
)
def test_and_binds_tighter_than_or(performed: str, expected: bool) -> None:
    # A or B and C  ==  A or (B and C)
    h = Harness([audience("aud", [did("A"), did("B", join="or"), did("C", join="and")])])
    h.track("X", T0)
    for i, name in enumerate(performed):
        h.track(name, T0 + i + 1)
    assert h.member() is expected


@pytest.mark.parametrize(
    ("performed", "expected"),
    [("", False), ("A", True), ("AB", False), ("AC", False), ("ABC", False), ("BC", False)],
)
def test_negated_group(performed: str, expected: bool) -> None:
    # A and not (B or C)
    rows = [did("A"), {"group": [did("B"), did("C", join="or")], "negate": True}]
    h = Harness([audience("aud", rows)])
    h.track("X", T0)
    for i, name in enumerate(performed):
        h.track(name, T0 + i + 1)
    assert h.member() is expected


@pytest.mark.parametrize(
    ("performed", "expected"),
    [("", False), ("A", False), ("AB", True), ("AC", True), ("C", False)],
)
def test_group_as_parentheses(performed: str, expected: bool) -> None:
    # A and (B or C)
    h = Harness([audience("aud", [did("A"), {"group": [did("B"), did("C", join="or")]}])])
    h.track("X", T0)
    for i, name in enumerate(performed):
        h.track(name, T0 + i + 1)
    assert h.member() is expected


# -- trait conditions ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cond", "traits", "expected"),
    [
        ({"operator": "equals", "value": "pro"}, {"plan": "pro"}, True),
        ({"operator": "equals", "value": "pro"}, {"plan": "free"}, False),
        ({"operator": "not_equals", "value": "pro"}, {"plan": "free"}, True),
        ({"operator": "not_equals", "value": "pro"}, {}, False),  # differs needs a value
        ({"operator": "exists"}, {"plan": "x"}, True),
        ({"operator": "not_exists"}, {}, True),
        ({"operator": "not_exists"}, {"plan": None}, True),  # null removes
        ({"operator": "equals_any_of", "value": ["a", "pro"]}, {"plan": "pro"}, True),
        ({"operator": "contains", "value": "ro"}, {"plan": "pro"}, True),
        ({"operator": "starts_with", "value": "p"}, {"plan": "pro"}, True),
        ({"operator": "ends_with", "value": "p"}, {"plan": "pro"}, False),
        ({"operator": ">=", "value": 3}, {"plan": 3}, True),
        (
            {"operator": "before_date", "value": "2024-01-01"},
            {"plan": "2023-05-01T00:00:00Z"},
            True,
        ),
    ],
)
def test_trait_operators(cond: dict[str, Any], traits: dict[str, Any], expected: bool) -> None:
    h = Harness([audience("aud", [{"trait": "plan", **cond}])])
    h.identify(traits, T0)
    assert h.member() is expected


def test_nested_trait_paths() -> None:
    h = Harness(
        [
            audience("aud", [{"trait": "address.city", "operator": "=", "value": "Paris"}]),
            audience("dot", [{"trait": "a\\.b", "operator": "=", "value": 1}]),
        ]
    )
    h.identify({"address": {"city": "Paris"}, "a.b": 1}, T0)
    assert h.member("aud") and h.member("dot")
    h.identify({"address": {"city": "Lyon"}}, T0 + 1)
    assert not h.member("aud")


def test_trait_conditions_follow_identify_changes_and_ignore_older_values() -> None:
    h = Harness([audience("aud", [{"trait": "plan", "operator": "equals", "value": "pro"}])])
    assert summary(h.identify({"plan": "pro"}, T0 + 10)) == [("aud", True, T0 + 10, "event:m0")]
    assert h.identify({"plan": "free"}, T0 + 5) == [], "older than the current value"
    assert [c.value for c in h.identify({"plan": "free"}, T0 + 20)] == [False]


def test_trait_value_reference() -> None:
    h = Harness(
        [audience("aud", [{"trait": "spent", "operator": ">", "value_from": {"trait": "budget"}}])]
    )
    h.identify({"spent": 10, "budget": 20}, T0)
    assert not h.member()
    h.identify({"budget": 5}, T0 + 1)
    assert h.member()


def test_within_next_enters_and_exits_by_time_alone() -> None:
    renewal = T0 + 10 * DAY
    h = Harness(
        [audience("aud", [{"trait": "renews_at", "operator": "within_next", "value": "3 days"}])]
    )
    assert h.identify({"renews_at": iso(renewal)}, T0) == []
    assert h.wakeup() == renewal - 3 * DAY
    assert summary(h.tick(renewal - 3 * DAY)) == [
        ("aud", True, renewal - 3 * DAY, f"timer:{renewal - 3 * DAY}")
    ]
    assert h.wakeup() == renewal + 1
    assert [c.value for c in h.tick(renewal + 1)] == [False]
    assert h.wakeup() is None


def test_within_last_on_a_trait_date() -> None:
    signup = T0
    h = Harness(
        [audience("aud", [{"trait": "signed_up", "operator": "within_last", "value": "7 days"}])]
    )
    assert [c.value for c in h.identify({"signed_up": iso(signup)}, T0)] == [True]
    assert h.wakeup() == signup + 7 * DAY + 1
    assert [c.value for c in h.tick(signup + 7 * DAY + 1)] == [False]


def test_trait_without_zone_is_not_a_date() -> None:
    h = Harness([audience("aud", [{"trait": "d", "operator": "within_last", "value": "7 days"}])])
    h.identify({"d": "2023-11-14T00:00:00"}, T0)
    assert not h.member() and h.wakeup() is None


def test_trait_sources() -> None:
    defs = [
        trait("plan", "last", "Subscribed", property="plan"),
        audience("any", [{"trait": "plan", "operator": "=", "value": "gold"}]),
        audience(
            "custom", [{"trait": "plan", "source": "custom", "operator": "=", "value": "gold"}]
        ),
        audience(
            "computed", [{"trait": "plan", "source": "computed", "operator": "=", "value": "gold"}]
        ),
    ]
    h = Harness(defs)
    h.identify({"plan": "gold"}, T0)
    assert (h.member("any"), h.member("custom"), h.member("computed")) == (True, True, False)
    h.track("Subscribed", T0 + 1, {"plan": "silver"})
    assert (h.member("any"), h.member("custom"), h.member("computed")) == (False, True, False), (
        "a computed trait shadows the custom one for source any"
    )
    h.track("Subscribed", T0 + 2, {"plan": "gold"})
    assert (h.member("any"), h.member("custom"), h.member("computed")) == (True, True, True)


# -- dependencies -----------------------------------------------------------------------------------
def test_computed_trait_feeds_an_audience_in_the_same_evaluation() -> None:
    defs = [
        audience("big_spender", [{"trait": "orders", "operator": ">=", "value": 3}]),
        trait("orders", "counter", "Order Completed", within="30 days"),
    ]
    h = Harness(defs)
    h.track("Order Completed", T0)
    h.track("Order Completed", T0 + H)
    out = h.track("Order Completed", T0 + 2 * H)
    assert summary(out) == [
        ("orders", 3, T0 + 2 * H, "event:m2"),
        ("big_spender", True, T0 + 2 * H, "event:m2"),
    ], "the trait is evaluated before the audience that reads it"
    t = exit_at(T0, 30 * DAY)
    out = h.tick(t)
    assert summary(out) == [
        ("orders", 2, t, f"timer:{t}"),
        ("big_spender", False, t, f"timer:{t}"),
    ]


def test_audience_of_audience_sees_the_new_value() -> None:
    defs = [
        audience(
            "engaged_pro",
            [{"audience": "active"}, {"trait": "plan", "operator": "=", "value": "pro"}],
        ),
        audience("dormant", [{"audience": "active", "member": False}]),
        audience("active", [{"event": "Login", "within": "1 day"}]),
        audience("active_flag", [{"trait": "active", "operator": "=", "value": True}]),
    ]
    h = Harness(defs)
    out = h.identify({"plan": "pro"}, T0)
    assert summary(out) == [("dormant", True, T0, "event:m0")], "a new profile is not active"
    out = h.track("Login", T0 + H)
    assert [(c.key, c.value) for c in out] == [
        ("active", True),
        ("engaged_pro", True),
        ("dormant", False),
        ("active_flag", True),
    ]
    out = h.tick(T0 + H + DAY)
    assert [(c.key, c.value, c.cause) for c in out] == [
        ("active", False, f"timer:{T0 + H + DAY}"),
        ("engaged_pro", False, f"timer:{T0 + H + DAY}"),
        ("dormant", True, f"timer:{T0 + H + DAY}"),
        ("active_flag", False, f"timer:{T0 + H + DAY}"),
    ]


def test_cycles_are_rejected() -> None:
    with pytest.raises(ValueError, match="cycle"):
        Engine([audience("a", [{"audience": "b"}]), audience("b", [{"audience": "a"}])])


def test_disabled_definitions_are_not_evaluated() -> None:
    h = Harness([audience("aud", [{"event": "Login"}], enabled=False)])
    assert h.track("Login", T0) == []
