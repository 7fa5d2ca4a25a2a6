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
