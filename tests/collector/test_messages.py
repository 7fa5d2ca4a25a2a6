"""A request body → input-topic and dead-letter records, with Segment's server rules."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engage_stream.collector.body import MAX_BATCH_EVENTS
from engage_stream.collector.errors import CollectorError
from engage_stream.collector.messages import (
    BATCH_TOO_LARGE,
    NOT_FROM_KAFKA,
    SOURCE_HEADER,
    Call,
    Prepared,
    prepare,
)
from engage_stream.config import Topics
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.ingest.validate import Reason, parse_message
from engage_stream.stream.producing import OutgoingRecord

TOPICS = Topics()
RECEIVED = 1_767_225_600_000  # 2026-01-01T00:00:00.000Z
CALL = Call("web", RECEIVED, client_ip="203.0.113.9")


def values(out: Prepared, topic: str = TOPICS.mixed) -> list[dict[str, Any]]:
    return [orjson.loads(r.value or b"") for r in out.records if r.topic == topic]


def test_single_call_endpoint_names_the_type_and_server_stamps() -> None:
    out = prepare(
        "track",
        {
            "userId": "u1",
            "event": "Clicked",
            "type": "identify",  # the endpoint decides
            "receivedAt": "2020-01-01T00:00:00Z",  # the server's clock decides
            "writeKey": "wk-secret",
        },
        CALL,
        TOPICS,
    )
    [msg] = values(out)
    assert msg["type"] == "track"
    assert msg["receivedAt"] == "2026-01-01T00:00:00.000Z"
    assert msg["messageId"].startswith("api-") and len(msg["messageId"]) <= 100
    assert "writeKey" not in msg
    assert out.accepted == {"track": 1} and out.rejected == {} and out.events == 1
    [rec] = out.records
    assert rec.key == b"user_id:u1", "keyed by identifier: one person's events in order"
    assert rec.headers == [(SOURCE_HEADER, b"web")]
    assert b"wk-secret" not in (rec.value or b"")


def test_messageid_is_kept_when_sent_and_generated_uniquely_when_not() -> None:
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}] * 2}
    first, second = (m["messageId"] for m in values(prepare("batch", body, CALL, TOPICS)))
    assert first != second
    kept = prepare("page", {"anonymousId": "a", "messageId": "m-1"}, CALL, TOPICS)
    assert values(kept)[0]["messageId"] == "m-1"
    assert kept.records[0].key == b"anonymous_id:a"


def test_batch_context_integrations_and_sent_at_merge_into_items_item_wins() -> None:
    body = {
        "batch": [
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
            {
                "type": "track",
                "userId": "u1",
                "event": "E",
                "context": {"locale": "fr-FR"},
                "integrations": {"All": False},
                "sentAt": "2026-01-01T00:00:05Z",
            },
        ],
        "context": {"library": {"name": "analytics-python"}, "locale": "en-US"},
        "integrations": {"All": True, "Mixpanel": False},
        "sentAt": "2026-01-01T00:00:10Z",
        "writeKey": "wk",
    }
    a, b = values(prepare("batch", body, CALL, TOPICS))
    assert a["context"] == {"library": {"name": "analytics-python"}, "locale": "en-US"}
    assert a["integrations"] == {"All": True, "Mixpanel": False}
    assert a["sentAt"] == "2026-01-01T00:00:10Z"
    assert b["context"] == {"library": {"name": "analytics-python"}, "locale": "fr-FR"}
    assert b["integrations"] == {"All": False, "Mixpanel": False}
    assert b["sentAt"] == "2026-01-01T00:00:05Z"


def test_skew_correction_uses_the_batch_sent_at() -> None:
    # client clock 1 h behind: event at client 23:00:00, sent at client 23:00:10
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "timestamp": "2025-12-31T23:00:00Z"}
        ],
        "sentAt": "2025-12-31T23:00:10Z",
    }
    out = prepare("batch", body, CALL, TOPICS)
    event = parse_message(out.records[0].value or b"", 0)
    assert event.timestamp == RECEIVED - 10_000


def test_context_direct_asks_for_the_callers_ip() -> None:
    out = prepare("track", {"userId": "u", "event": "E", "context": {"direct": True}}, CALL, TOPICS)
    assert values(out)[0]["context"] == {"direct": True, "ip": "203.0.113.9"}
    own_ip = {"userId": "u", "event": "E", "context": {"direct": True, "ip": "198.51.100.1"}}
    assert values(prepare("track", own_ip, CALL, TOPICS))[0]["context"]["ip"] == "198.51.100.1"
    plain = prepare("track", {"userId": "u", "event": "E"}, CALL, TOPICS)
    assert "context" not in values(plain)[0]


def dead_letters(out: Prepared) -> list[tuple[OutgoingRecord, DeadLetter]]:
    return [
        (r, DeadLetter.from_headers(r.headers or []))
        for r in out.records
        if r.topic == TOPICS.dead_letter
    ]


def test_invalid_items_are_dead_lettered_with_the_ingest_reason_and_the_rest_go_through() -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "Good"},
            {"type": "track", "event": "No Ids"},
            {"type": "teleport", "userId": "u1"},
            ["not", "an", "object"],
            {"type": "track", "userId": 42, "event": "Wrong"},
            {"type": "track", "userId": "u1", "event": "X", "messageId": "m" * 101},
            {"type": "identify", "anonymousId": "a1", "traits": {"x": 1}},
        ]
    }
    out = prepare("batch", body, CALL, TOPICS)
    assert [m["event"] if "event" in m else m["type"] for m in values(out)] == ["Good", "identify"]
    assert out.accepted == {"track": 1, "identify": 1}
    assert out.rejected == {
        Reason.MISSING_ID: 1,
        Reason.UNKNOWN_TYPE: 1,
        Reason.NOT_AN_OBJECT: 1,
        Reason.INVALID_FIELD: 1,
        Reason.MESSAGE_ID_TOO_LONG: 1,
    }
    dls = dead_letters(out)
    assert [dl.reason for _, dl in dls] == [
        "missing_id",
        "unknown_type",
        "not_an_object",
        "invalid_field",
        "message_id_too_long",
    ]
    for rec, dl in dls:
        assert dl.detail and dl.topic == TOPICS.mixed
        assert (dl.partition, dl.offset) == (NOT_FROM_KAFKA, NOT_FROM_KAFKA)
        assert dl.timestamp_ms == RECEIVED
        assert (SOURCE_HEADER, b"web") in (rec.headers or [])
    # the value is what would have been forwarded: fix it and produce it to the input topic
    assert orjson.loads(dls[0][0].value or b"")["event"] == "No Ids"
    assert dls[2][0].value == b'["not","an","object"]'


def test_a_single_call_failing_validation_is_dead_lettered_too() -> None:
    out = prepare("group", {"userId": "u1"}, CALL, TOPICS)  # no groupId
    assert out.accepted == {} and out.rejected == {Reason.INVALID_FIELD: 1}
    assert [dl.reason for _, dl in dead_letters(out)] == ["invalid_field"]


def test_an_event_over_32_kb_fails_the_whole_request() -> None:
    big = {"type": "track", "userId": "u", "event": "Big", "properties": {"x": "y" * 33_000}}
    with pytest.raises(CollectorError) as exc:
        prepare(
            "batch", {"batch": [{"type": "track", "userId": "u", "event": "ok"}, big]}, CALL, TOPICS
        )
    assert exc.value.status == 400 and exc.value.code == "payload_too_large"
    assert "32 KB" in exc.value.message


def test_a_batch_over_2500_events_is_answered_but_not_processed_and_kept() -> None:
    items = [
        {"type": "track", "userId": f"u{i}", "event": "E"} for i in range(MAX_BATCH_EVENTS + 1)
    ]
    out = prepare("batch", {"batch": items, "writeKey": "wk-secret"}, CALL, TOPICS)
    assert values(out) == [] and out.accepted == {}
    assert out.rejected == {BATCH_TOO_LARGE: MAX_BATCH_EVENTS + 1}
    [(rec, dl)] = dead_letters(out)
    assert dl.reason == "oversize" and "2,501 events" in dl.detail
    kept = orjson.loads(rec.value or b"")
    assert kept == {"batch": items}, "the whole batch, without the write key"
    exactly = prepare("batch", {"batch": items[:MAX_BATCH_EVENTS]}, CALL, TOPICS)
    assert exactly.accepted == {"track": MAX_BATCH_EVENTS}


@pytest.mark.parametrize(
    ("kind", "body", "code"),
    [
        ("track", [1, 2], "invalid_request"),
        ("batch", {"batch": {"type": "track"}}, "invalid_request"),
        ("batch", {"events": []}, "invalid_request"),
    ],
)
def test_bodies_that_are_not_segment_requests_are_400(kind: str, body: Any, code: str) -> None:
    with pytest.raises(CollectorError) as exc:
        prepare(kind, body, CALL, TOPICS)
    assert exc.value.status == 400 and exc.value.code == code


def test_an_empty_batch_is_fine_and_produces_nothing() -> None:
    out = prepare("batch", {"batch": []}, CALL, TOPICS)
    assert out.records == [] and out.events == 0
