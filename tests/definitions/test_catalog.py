"""The catalog built from topic records: deterministic when two kinds share a key."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest

from engage_stream.definitions.catalog import Catalog, audience_references
from engage_stream.definitions.models import AudienceDefinition

AUDIENCE: dict[str, Any] = {"kind": "audience", "key": "vip", "conditions": [{"event": "X"}]}
TRAIT: dict[str, Any] = {"kind": "computed_trait", "key": "vip", "type": "counter", "event": "Y"}


@pytest.mark.parametrize(
    ("audience_created", "trait_created", "kind"),
    [(1, 2, "audience"), (2, 1, "computed_trait"), (1, 1, "audience")],
)
def test_a_key_shared_by_two_kinds_keeps_the_one_created_first_in_any_order(
    caplog: pytest.LogCaptureFixture, audience_created: int, trait_created: int, kind: str
) -> None:
    records = [("vip", 3, audience_created, AUDIENCE), ("vip", 5, trait_created, TRAIT)]
    for order in itertools.permutations(records):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            cat = Catalog.from_records(order)
        got = cat.get("vip")
        assert got is not None and got.kind == kind
        assert cat.versions() == {"vip": 3 if kind == "audience" else 5}
        assert "share the key 'vip'" in caplog.text


def test_audience_references_reads_nested_audience_and_trait_rows() -> None:
    d = AudienceDefinition.model_validate(
        {
            "key": "a",
            "conditions": [
                {"audience": "b"},
                {"group": [{"trait": "c", "operator": "exists"}]},
                {
                    "event": "X",
                    "where": [{"property": "p", "operator": "=", "value_from": {"trait": "d"}}],
                },
            ],
        }
    )
    assert audience_references(d) == {"b", "c"}
