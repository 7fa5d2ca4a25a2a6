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


# -- disabling is not a deletion (issue #9 item 4) ----------------------------------------
# Driven through the profiles stage as the workers and replay use a catalog
# (`ProfileStage.use`: `build_engine` over `active()`, the processor synced to
# `versions(<active keys>)`), every stored profile brought to a new catalog by a sweep.

DAY = 86_400_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % DAY
VISITORS: dict[str, Any] = {
    "kind": "audience",
    "key": "visitors",
    "conditions": [{"event": "Visit", "within": "7 days"}],
    "destinations": [{"name": "crm", "track": True}],
}
BUYING_VISITORS: dict[str, Any] = {
    "kind": "audience",
    "key": "buying_visitors",
    "conditions": [{"audience": "visitors"}, {"event": "Buy"}],
}
VISITS: dict[str, Any] = {
    "kind": "computed_trait",
    "key": "visits",
    "type": "counter",
    "event": "Visit",
}


class Worker:
    def __init__(self) -> None:
        from engage_stream.config import Settings
        from engage_stream.profiles.stage import ProfileStage
        from engage_stream.profiles.store import ProfileStore
        from engage_stream.state.memory import MemoryKV

        self.stage = ProfileStage(Settings())
        self.proc = self.stage.processor
        self.store = ProfileStore(MemoryKV())
        self.n = 0

    def use(self, records: list[tuple[str, int, int, dict[str, Any]]], now: int) -> list[Any]:
        self.stage.use(Catalog.from_records(records))
        return self.proc.sweep(self.store, now, None, 1000).changes

    def track(self, name: str, ts: int, user: str = "u1") -> list[Any]:
        from engage_stream.events import ProfileEvent

        self.n += 1
        event = ProfileEvent(
            message_id=f"m{self.n}",
            type="track",
            timestamp=ts,
            received_at=ts,
            profile_id=f"user_id:{user}",
            event=name,
            user_id=user,
        )
        return self.proc.apply(self.store, event, ts).changes

    def member(self, key: str, user: str = "u1") -> bool:
        r = self.store.get(f"user_id:{user}")
        tv = r.audiences.get(key) if r is not None else None
        return tv is not None and tv.value is True


def _set(enabled: bool, version: int) -> list[tuple[str, int, int, dict[str, Any]]]:
    return [
        ("visitors", version, T0, {**VISITORS, "enabled": enabled}),
        ("buying_visitors", 1, T0, BUYING_VISITORS),
        ("visits", 1, T0, VISITS),
    ]


def test_disable_then_enable_keeps_members_and_sends_no_second_entry() -> None:
    w = Worker()
    w.use(_set(True, 1), T0)
    w.track("Visit", T0 + 1)
    entered = w.track("Buy", T0 + 2)
    assert [(c.key, c.value) for c in entered] == [("buying_visitors", True)]
    assert w.member("visitors") and w.member("buying_visitors")

    assert w.use(_set(False, 2), T0 + DAY) == []  # disabled: nothing is sent
    assert w.member("visitors"), "a disabled audience keeps its stored memberships"
    assert w.member("buying_visitors"), "so does an audience reading it (taken out with it)"
    record = w.store.get("user_id:u1")
    assert record is not None and "visitors" not in record.traits  # not a deletion
    out = w.track("Visit", T0 + DAY + 1)
    assert [c.key for c in out] == ["visits"], "a disabled audience is not evaluated"

    assert w.use(_set(True, 3), T0 + 2 * DAY) == []  # re-enabled: members stay members
    assert w.member("visitors") and w.member("buying_visitors")
    # ... and time-driven exits are back: the last visit (seen while disabled, counted
    # from history on re-enabling) leaves the 7-day window
    out = w.track("Other", T0 + DAY + 1 + 7 * DAY)
    assert [(c.key, c.value, c.at) for c in out] == [
        ("visitors", False, T0 + DAY + 1 + 7 * DAY),
        ("buying_visitors", False, T0 + DAY + 1 + 7 * DAY),
    ]


def test_re_enabling_sends_what_changed_while_disabled() -> None:
    w = Worker()
    w.use(_set(True, 1), T0)
    w.track("Visit", T0, user="stayed")
    w.track("Visit", T0, user="left")
    w.use(_set(False, 2), T0 + DAY)
    w.track("Visit", T0 + DAY, user="new")  # qualifies while disabled
    w.track("Visit", T0 + 6 * DAY, user="stayed")
    out = w.use(_set(True, 3), T0 + 7 * DAY + 1)  # "left" is out of the window by now
    got = sorted((c.profile_id, c.key, c.value, c.cause) for c in out if c.key == "visitors")
    assert got == [
        ("user_id:left", "visitors", False, "definition:3"),
        ("user_id:new", "visitors", True, "definition:3"),
    ]


def test_deleting_still_drops_and_an_unusable_body_keeps_values() -> None:
    w = Worker()
    w.use(_set(True, 1), T0)
    w.track("Visit", T0 + 1)
    broken = {**VISITORS, "conditions": []}  # a body this worker cannot use: Failed
    assert w.use([("visitors", 2, T0, broken), *_set(True, 1)[1:]], T0 + DAY) == []
    assert w.member("visitors")
    assert w.use(_set(True, 3), T0 + DAY) == []
    assert w.member("visitors")
    w.use(_set(True, 3)[1:], T0 + DAY)  # deleted: its last value stays as a custom trait
    record = w.store.get("user_id:u1")
    assert record is not None and "visitors" not in record.audiences
    assert record.traits["visitors"].value is True


def test_versions_list_inactive_definitions_apart() -> None:
    cat = Catalog.from_records(_set(False, 4))
    active = {d.key for d in cat.active()}
    assert active == {"visits"}
    assert cat.versions(active) == {"visits": 1, "visitors": -4, "buying_visitors": -1}
    assert cat.versions() == cat.versions(active)
