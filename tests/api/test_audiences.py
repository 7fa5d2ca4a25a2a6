"""Audience statuses and summaries (pure): what GET /v1/audiences answers."""

from __future__ import annotations

import hashlib

import pytest

from engage_stream.api import audiences as api
from engage_stream.api.errors import ApiError
from engage_stream.definitions.catalog import Catalog, definition_body
from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition
from engage_stream.profiles.record import ExternalId, ProfileRecord, TraitValue

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


def _export_catalog() -> Catalog:
    return Catalog.from_definitions(
        [
            AudienceDefinition.model_validate({"key": "vip", "conditions": [{"event": "X"}]}),
            ComputedTraitDefinition.model_validate({"key": "n", "type": "counter", "event": "X"}),
        ]
    )


def _profile(pid: str, email: str) -> ProfileRecord:
    p = ProfileRecord(profile_id=pid, external_ids=[ExternalId("email", email)])
    p.audiences["vip"] = TraitValue(True, 1)
    p.computed_traits["n"] = TraitValue(3, 1)
    return p


def test_members_export_single_column_hashed_and_trait_csv() -> None:
    catalog = _export_catalog()
    one = api.members_export(catalog, "vip", {"format": "single_column", "id_type": "email"})
    body = api.members_csv(one, [_profile("use_2", "b@x.io"), _profile("use_1", "a@x.io")])
    lines = body.decode().splitlines()
    assert lines[0] == "email"
    assert lines[1:] == [
        hashlib.sha256(e.encode()).hexdigest().upper() for e in ("a@x.io", "b@x.io")
    ]
    raw = api.members_export(
        catalog, "vip", {"format": "single_column", "id_type": "email", "hashed": "false"}
    )
    assert api.members_csv(raw, [_profile("use_1", "a@x.io")]).decode().splitlines()[1] == (
        "a@x.io"
    )
    trait = api.members_export(catalog, "n", {})
    rows = api.members_csv(trait, [_profile("use_1", "a@x.io")]).decode().splitlines()
    assert rows[0].startswith("key,value") and rows[1].startswith("use_1,3")
    for key, params in (
        ("vip", {"format": "single_column"}),
        ("vip", {"format": "formatted_rows"}),
        ("n", {"format": "single_column"}),
    ):
        with pytest.raises(ApiError) as exc:
            api.members_export(catalog, key, params)
        assert exc.value.status == 400
