"""Model-level validation: what a definition may say, with errors that name the problem."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition


def audience(conditions: list[dict[str, Any]]) -> AudienceDefinition:
    return AudienceDefinition.model_validate({"key": "a", "conditions": conditions})


def trait(**body: Any) -> ComputedTraitDefinition:
    return ComputedTraitDefinition.model_validate({"key": "t", "event": "E", **body})


def errors(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return "; ".join(str(e["msg"]) for e in exc.value.errors())


@pytest.mark.parametrize(
    "row",
    [
        {"trait": "x", "operator": "=", "value_from": {"parent_property": "p"}},
        {"group": [{"trait": "x", "operator": "=", "value_from": {"parent_property": "p"}}]},
    ],
)
def test_a_trait_row_cannot_reference_a_parent_event(row: dict[str, Any]) -> None:
    """Only a funnel step has a parent event; a trait row compares with a trait."""
    with pytest.raises(ValidationError) as exc:
        audience([row])
    assert "parent_property references are only allowed in funnel steps" in errors(exc)


def test_session_window_shorthand_and_range() -> None:
    t = trait(type="counter", session="30 minutes")
    assert t.session is not None and t.session.ms == 30 * 60_000
    t = trait(type="counter", session={"expires_after": "90 days"})
    assert t.session is not None and t.session.ms == 90 * 86_400_000
    for out_of_range in ("29 minutes", "90.5 days", "13 weeks"):
        with pytest.raises(ValidationError) as exc:
            trait(type="counter", session=out_of_range)
        assert "expires_after must be between 30 minutes and 90 days" in errors(exc)
    with pytest.raises(ValidationError) as exc:
        trait(type="counter", session={"expires_after": "1 hour", "gap": "2 hours"})
    assert "Extra inputs are not permitted" in errors(exc)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"within": "7 days"}, "a session window replaces within / between"),
        ({"between": ["1 day", "2 days"]}, "a session window replaces within / between"),
        (
            {"where": [{"property": "p", "operator": "=", "value_from": {"trait": "x"}}]},
            "a session window takes filters against constants only",
        ),
        (
            {"where": [{"property": "d", "operator": "within_last", "value": "1 day"}]},
            "a session window takes filters against constants only",
        ),
        (
            {"include_history": {"days": 1}, "session": "2 days"},
            "include_history (1 days) is shorter than the session window's expires_after",
        ),
    ],
)
def test_session_window_combinations_that_are_rejected(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        trait(type="counter", **{"session": "1 hour", **body})
    assert message in errors(exc)


def test_session_window_with_constant_filters_and_no_history() -> None:
    t = trait(
        type="sum",
        property="revenue",
        session="1 hour",
        include_history=False,
        where=[{"property": "currency", "operator": "=", "value": "EUR"}],
    )
    assert t.session is not None and t.include_history is None


def test_as_string_only_orders_min_and_max() -> None:
    assert trait(type="min", property="p", as_string=True).as_string
    assert trait(type="max", property="p", as_string=True).as_string
    with pytest.raises(ValidationError) as exc:
        trait(type="sum", property="p", as_string=True)
    assert "as_string orders min / max values; remove it from a sum" in errors(exc)
