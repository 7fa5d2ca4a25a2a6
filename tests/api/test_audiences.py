"""Audience statuses and summaries (pure): what GET /v1/audiences answers."""

from __future__ import annotations

import pytest

from engage_stream.api import audiences as api
from engage_stream.api.errors import ApiError
from engage_stream.definitions.catalog import Catalog, definition_body

AUDIENCE = {
    "kind": "audience",
    "key": "buyers",
    "name": "Buyers",
    "conditions": [{"event": "Order Completed"}],
    "destinations": [{"name": "crm"}],
}
DEPENDENT = {
    "kind": "audience",
    "key": "repeat_buyers",
    "conditions": [{"audience": "buyers"}, {"event": "Order Completed", "count": ">= 2"}],
}
TRAIT = {
    "kind": "computed_trait",
    "key": "orders",
    "type": "counter",
    "event": "Order Completed",
}


def catalog(*bodies: dict, broken: bool = False) -> Catalog:
    records = [(b["key"], 3, 1_700_000_000_000, b) for b in bodies]
    if broken:
        records.append(("broken", 1, 0, {"kind": "audience", "key": "broken", "conditions": []}))
    return Catalog.from_records(records)


def test_status_follows_progress() -> None:
    cat = catalog(AUDIENCE, TRAIT)
    active = {d.key for d in cat.active()}
    assert api.status_of("buyers", cat, active, set(), ready=False) == "Preparing"
    assert api.status_of("buyers", cat, active, {"buyers"}, ready=True) == "Computing"
    assert api.status_of("buyers", cat, active, set(), ready=True) == "Live"


def test_disabled_audience_disables_its_dependents_and_bad_bodies_fail() -> None:
    cat = catalog({**AUDIENCE, "enabled": False}, DEPENDENT, broken=True)
    active = {d.key for d in cat.active()}
    assert active == set()
    status = api.statuses(cat, active, set(), ready=True)
    assert status == {"broken": "Failed", "buyers": "Disabled", "repeat_buyers": "Disabled"}
    assert "invalid definition body" in cat.failed["broken"]


def test_merge_statuses_reports_the_least_advanced_worker() -> None:
    merged = api.merge_statuses([{"a": "Live", "b": "Live"}, {"a": "Computing", "b": "Live"}])
    assert merged == {"a": "Computing", "b": "Live"}


def test_list_and_one() -> None:
    cat = catalog(AUDIENCE, TRAIT)
    status = {"buyers": "Live", "orders": "Live"}
    body = api.list_body(cat, status, {"buyers": 7}, "audience")
    assert body["data"] == [
        {
            "key": "buyers",
            "name": "Buyers",
            "description": "",
            "kind": "audience",
            "computation_id": cat.get("buyers").computation_id("aud_"),  # type: ignore[union-attr]
            "version": 3,
            "created_at": 1_700_000_000_000,
            "status": "Live",
            "destinations": ["crm"],
            "size": 7,
        }
    ]
    traits = api.list_body(cat, status, {}, "computed_trait")["data"]
    assert [t["key"] for t in traits] == ["orders"] and "size" not in traits[0]
    assert api.one_body(cat, status, {}, "buyers")["size"] == 0
    with pytest.raises(ApiError) as err:
        api.one_body(cat, status, {}, "nope")
    assert err.value.status == 404


def test_definition_body_round_trips_and_leaves_defaults_out() -> None:
    cat = catalog(AUDIENCE)
    defn = cat.get("buyers")
    assert defn is not None
    body = definition_body(defn)
    assert "include_anonymous" not in body and body["kind"] == "audience"
    assert Catalog.from_records([("buyers", 1, 0, body)]).get("buyers") == defn
