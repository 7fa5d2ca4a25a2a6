"""Changes that cancel out within one instant never reach a destination (issue: a visit
exactly on a window boundary flapped the membership out and back in at the same time)."""

from __future__ import annotations

from typing import Any

import orjson

from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.loader import parse_text
from engage_stream.replay import Replay


def _replay(text: str, events: list[dict[str, Any]], until: int | None = None) -> list[Any]:
    defs, problems = parse_text(text, "t.yaml")
    assert not problems, problems
    replay = Replay(Catalog.from_definitions(d for d, _ in defs))
    lines = [orjson.dumps(e) for e in events]
    return [orjson.loads(r.to_json()) for r in replay.run(lines, until)]


def _track(event: str, ts: str, mid: str, user: str = "u1") -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "timestamp": ts, "messageId": mid}


def _changes(records: list[Any]) -> list[tuple[Any, Any, str]]:
    return [
        (r["value"]["key"], r["value"]["value"], r["value"]["at"])
        for r in records
        if r["topic"] == "engage.changes"
    ]


WEEKLY = """
kind: audience
key: weekly_visitors
conditions:
  - event: Visit
    within: 7 days
destinations: [{name: crm, identify: true, track: true}]
"""


def test_an_event_on_the_window_boundary_keeps_the_membership() -> None:
    out = _replay(
        WEEKLY,
        [
            _track("Visit", "2025-01-01T00:00:00Z", "v1"),
            _track("Visit", "2025-01-08T00:00:00Z", "v2"),
        ],
        until=1736294400000 + 86_400_000,  # 2025-01-09
    )
    assert _changes(out) == [("weekly_visitors", True, "2025-01-01T00:00:00.000Z")]
    crm = [r["value"] for r in out if r["topic"] == "engage.out.crm"]
    assert [c.get("event") or c["traits"]["weekly_visitors"] for c in crm] == [
        True,
        "Audience Entered",
    ]


ABANDONED = """
kind: audience
key: abandoned
conditions:
  - event: Product Added
    within: 30 days
    then_not:
      event: Order Completed
      within: 1 day
destinations: [{name: crm}]
"""


def test_a_child_event_on_the_funnel_deadline_never_flaps() -> None:
    out = _replay(
        ABANDONED,
        [
            _track("Product Added", "2025-01-01T00:00:00Z", "a1"),
            _track("Order Completed", "2025-01-02T00:00:00Z", "o1"),
        ],
        until=1735776000000 + 86_400_000,
    )
    assert [c for c in _changes(out) if c[2] == "2025-01-02T00:00:00.000Z"] == []


EXACTLY_ONE = """
kind: audience
key: one_visit
conditions:
  - event: Visit
    count: "= 1"
    within: 30 days
destinations: [{name: crm}]
"""


def test_two_events_sharing_a_timestamp_do_not_enter_and_exit() -> None:
    out = _replay(
        EXACTLY_ONE,
        [
            _track("Visit", "2025-01-01T00:00:00Z", "v1"),
            _track("Visit", "2025-01-01T00:00:00Z", "v2"),
        ],
    )
    assert _changes(out) == []
    assert [r for r in out if r["topic"] == "engage.out.crm"] == []
