"""Audiences on the real broker: definitions applied to a running worker, entries and window
exits with no further input on the destination topic in Segment's exact payload shape,
backfill over stored history, edits, deletes, and the audiences API."""

from __future__ import annotations

import base64
import time
import urllib.request
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from engage_stream.commands import apply_definitions
from engage_stream.config import Settings
from engage_stream.definitions.loader import parse_text
from engage_stream.worker_process import WorkerProcess
from tests.stream.helpers import identify, now_iso, processed, produce, track, wait_for

pytestmark = pytest.mark.broker

WINDOW_S = 12


def definitions(yaml_text: str) -> list[Any]:
    defs, problems = parse_text(yaml_text, "test.yaml")
    assert not problems, problems
    return [d for d, _ in defs]


SHORT_WINDOW = f"""
kind: audience
key: recent_buyers
name: Recent buyers
conditions:
  - event: Order Completed
    within: {{minutes: {WINDOW_S / 60}}}
destinations:
  - name: crm
    identify: true
    track: true
"""


class Tail:
    """Reads a topic from the beginning, keeping every record value."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=settings.broker,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.values: list[dict[str, Any]] = []
        self.times: list[float] = []

    def poll(self) -> list[dict[str, Any]]:
        for batch in self.consumer.poll(timeout_ms=200).values():
            for rec in batch:
                self.values.append(orjson.loads(rec.value))
                self.times.append(time.time())
        return self.values

    def close(self) -> None:
        self.consumer.close()


def test_short_window_audience_enters_then_exits_with_no_further_input(
    worker: WorkerProcess,
) -> None:
    s = worker.settings
    apply_definitions(s, definitions(SHORT_WINDOW))
    out = Tail(s, s.topics.output("crm"))
    changes = Tail(s, s.topics.changes)
    try:
        event_time = time.time()
        produce(
            s,
            [
                identify("b1", now_iso(-5), "b1-id", email="b1@example.com"),
                track("b1", "Order Completed", now_iso(), "b1-order", revenue=20.0),
            ],
        )
        wait_for(lambda: len(out.poll()) >= 2, timeout=30, what="entry records")
        entered_at = time.time()
        wait_for(lambda: len(out.poll()) >= 4, timeout=WINDOW_S + 30, what="exit records")
        exit_seen = out.times[2]
        records = out.values
        wait_for(lambda: len(changes.poll()) >= 2, timeout=10, what="all-changes records")
    finally:
        out.close()
        changes.close()
    # entered within seconds of the event; exited within seconds of the window boundary,
    # and not before it, with nothing else produced in between
    assert entered_at - event_time < WINDOW_S
    assert exit_seen - event_time >= WINDOW_S - 1
    assert processed(worker) == 2

    by_kind = {
        (r["type"], r.get("event"), r.get("traits", {}).get("recent_buyers")): r for r in records
    }
    enter_identify = by_kind[("identify", None, True)]
    enter_track = by_kind[("track", "Audience Entered", None)]
    exit_identify = by_kind[("identify", None, False)]
    exit_track = by_kind[("track", "Audience Exited", None)]

    personas = {
        "computation_class": "audience",
        "computation_key": "recent_buyers",
        "namespace": s.space_id,
        "space_id": s.space_id,
    }
    for r in records:
        assert r["userId"] == "b1"
        assert r["context"]["personas"].items() >= personas.items()
        assert r["context"]["personas"]["computation_id"].startswith("aud_")
        assert r["integrations"] == {"All": False, "crm": True}
        assert r["messageId"]
    assert enter_identify["traits"] == {"recent_buyers": True, "email": "b1@example.com"}
    assert exit_identify["traits"] == {"recent_buyers": False, "email": "b1@example.com"}
    assert enter_track["properties"] == {"audience_key": "recent_buyers", "recent_buyers": True}
    assert exit_track["properties"] == {"audience_key": "recent_buyers", "recent_buyers": False}
    assert enter_track["context"]["traits"]["email"] == "b1@example.com"
    assert len({r["messageId"] for r in records}) == 4

    kinds = [(c["key"], c["value"], c["cause"].split(":")[0]) for c in changes.values]
    assert kinds == [("recent_buyers", True, "event"), ("recent_buyers", False, "timer")]
    exit_change = changes.values[1]
    enter_change = changes.values[0]
    assert exit_change["at_ms"] - enter_change["at_ms"] == WINDOW_S * 1000


BIG_SPENDERS = """
- kind: computed_trait
  key: total_revenue
  type: sum
  event: Order Completed
  property: revenue
- kind: audience
  key: big_spenders
  conditions:
    - trait: total_revenue
      source: computed
      operator: ">="
      value: 100
"""


def _get_text(worker: WorkerProcess, path: str) -> str:
    req = urllib.request.Request(worker.url + path)
    token = base64.b64encode(f"{worker.settings.api_token}:".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/csv")
        return resp.read().decode()


def user_of(change: dict[str, Any]) -> str:
    """The userId of the profile an engage.changes record is about."""
    return next(x["id"] for x in change["external_ids"] if x["type"] == "user_id")


def _audience(worker: WorkerProcess, key: str) -> dict[str, Any]:
    status, body = worker.request(f"/v1/audiences/{key}", token=worker.settings.api_token)
    assert status == 200, body
    return body


def test_definition_applied_after_events_backfills_then_edits_and_deletes(
    worker: WorkerProcess,
) -> None:
    s = worker.settings
    health = wait_for(
        lambda: worker.get_json("/health")["status"] == "ready" and worker.get_json("/health"),
        what="ready",
    )
    assert health["definitions_ready"] and set(health["partition_status"].values()) == {"ready"}
    produce(
        s,
        [
            track("s1", "Order Completed", now_iso(-3600), "s1-a", revenue=60.0),
            track("s1", "Order Completed", now_iso(-1800), "s1-b", revenue=50.0),
            track("s2", "Order Completed", now_iso(-900), "s2-a", revenue=30.0),
            track("s3", "Order Completed", now_iso(-600), "s3-a", revenue=250.0),
        ],
    )
    wait_for(lambda: processed(worker) >= 4, what="history stored")
    changes = Tail(s, s.topics.changes)
    try:
        apply_definitions(s, definitions(BIG_SPENDERS))
        wait_for(
            lambda: (
                {user_of(c) for c in changes.poll() if c["key"] == "big_spenders"} == {"s1", "s3"}
            ),
            what="backfilled entries",
        )
        wait_for(lambda: _audience(worker, "big_spenders")["status"] == "Live", what="Live")
        assert _audience(worker, "big_spenders")["size"] == 2

        # Live: every partition's backfill is checkpointed, so its changes are all on the
        # topic — but the tail has read only what the first wait needed (two entries)
        def traits() -> dict[str, Any]:
            return {user_of(c): c["value"] for c in changes.poll() if c["key"] == "total_revenue"}

        wait_for(lambda: len(traits()) == 3, what="every backfilled total")
        assert traits() == {"s1": 110.0, "s2": 30.0, "s3": 250.0}
        assert all(c["cause"] == "definition:1" for c in changes.values)

        status, body = worker.profile("user_id:s1", "traits", "class=audience")
        assert status == 200 and body["traits"] == {"big_spenders": True}

        # an edit bumps the version and recomputes: the threshold rises above s1's total
        n = len(changes.values)
        apply_definitions(s, definitions(BIG_SPENDERS.replace("value: 100", "value: 200")))
        wait_for(
            lambda: any(
                c["key"] == "big_spenders" and c["value"] is False for c in changes.poll()[n:]
            ),
            what="s1 exits after the edit",
        )
        exits = [c for c in changes.values[n:] if c["key"] == "big_spenders"]
        assert [(user_of(c), c["value"], c["version"]) for c in exits] == [("s1", False, 2)]
        wait_for(lambda: _audience(worker, "big_spenders")["size"] == 1, what="size 1")
        assert _audience(worker, "big_spenders")["version"] == 2
        csv = _get_text(worker, "/v1/audiences/big_spenders/members.csv?format=unformatted")
        assert csv.splitlines()[0].startswith("key")
        (row,) = csv.splitlines()[1:]
        assert row.startswith("use_") and '""user_id"":[""s3""]' in row
    finally:
        changes.close()

    status, body = worker.request("/v1/audiences", token=s.api_token)
    assert status == 200 and [a["key"] for a in body["data"]] == ["big_spenders"]
    status, body = worker.request("/v1/audiences/nope", token=s.api_token)
    assert status == 404
    assert worker.request("/v1/audiences")[0] == 401
    wait_for(
        lambda: worker.metric("engage_audience_members", 'audience="big_spenders"') == 1,
        what="the size metric",
    )

    # deleting (apply --prune without them) stops the computation; the last values stay on
    # the profile as plain custom traits (reference §1.1, §2)
    apply_definitions(s, [], prune=True)
    wait_for(
        lambda: worker.request("/v1/audiences", token=s.api_token)[1]["data"] == [],
        what="definitions deleted",
    )
    # (each definition's deletion reaches the partitions on its own: wait for both)
    for kind in ("audience", "computed_trait"):
        wait_for(
            lambda kind=kind: (
                worker.profile("user_id:s3", "traits", f"class={kind}")[1]["traits"] == {}
            ),
            what=f"the {kind} dropped from s3",
        )
    _, body = worker.profile("user_id:s3", "traits")
    assert body["traits"]["big_spenders"] is True  # now a plain custom trait
    assert body["traits"]["total_revenue"] == 250.0
