"""Segment Spec validation and normalisation (reference §9) — table-driven."""

from __future__ import annotations

import orjson
import pytest

from engage_stream.ingest.validate import InvalidEvent, Reason, parse_message

BASE = {"userId": "u1", "messageId": "m1", "timestamp": "2026-01-01T00:00:00Z"}


def raw(**fields: object) -> bytes:
    return orjson.dumps({**BASE, **fields})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", Reason.MALFORMED_JSON),
        (b"", Reason.MALFORMED_JSON),
        (b"[1,2]", Reason.NOT_AN_OBJECT),
        (b'"track"', Reason.NOT_AN_OBJECT),
        (raw(type="teleport"), Reason.UNKNOWN_TYPE),
        (orjson.dumps({"event": "X", "userId": "u"}), Reason.UNKNOWN_TYPE),
        (orjson.dumps({"type": "track", "event": "X"}), Reason.MISSING_ID),
        (
            orjson.dumps({"type": "track", "event": "X", "userId": "", "anonymousId": ""}),
            Reason.MISSING_ID,
        ),
        (raw(type="track", event="X", messageId="m" * 101), Reason.MESSAGE_ID_TOO_LONG),
        (raw(type="track", event="X", userId=42), Reason.INVALID_FIELD),
        (raw(type="track"), Reason.INVALID_FIELD),  # event is required
        (raw(type="track", event=""), Reason.INVALID_FIELD),
        (raw(type="track", event="X", properties=[1]), Reason.INVALID_FIELD),
        (raw(type="track", event="X", timestamp="yesterday"), Reason.INVALID_FIELD),
        (raw(type="track", event="X", timestamp="2026-01-01T00:00:00"), Reason.INVALID_FIELD),
        (raw(type="group"), Reason.INVALID_FIELD),  # groupId required
        (raw(type="group", groupId="g" * 501), Reason.INVALID_FIELD),
        (raw(type="alias"), Reason.INVALID_FIELD),  # previousId required
        (raw(type="identify", traits={f"t{i}": i for i in range(300)}), Reason.INVALID_FIELD),
        (raw(type="track", event="X", properties={"blob": "x" * 33_000}), Reason.OVERSIZE),
    ],
)
def test_invalid_messages_get_a_reason(data: bytes, reason: Reason) -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse_message(data, received_at_ms=0)
    assert exc.value.reason == reason
    assert exc.value.detail


def test_track_normalised() -> None:
    e = parse_message(
        raw(
            type="track",
            event="Order Completed",
            properties={"revenue": 9.5},
            context={"ip": "1.2.3.4"},
        ),
        0,
    )
    assert (e.type, e.event, e.user_id, e.message_id) == ("track", "Order Completed", "u1", "m1")
    assert e.properties == {"revenue": 9.5}
    assert e.timestamp == 1767225600000
    assert e.context == {"ip": "1.2.3.4"}


@pytest.mark.parametrize(
    ("kind", "event", "name_prop"),
    [("page", "Page Viewed", "page_name"), ("screen", "Screen Viewed", "screen_name")],
)
def test_page_and_screen_are_seen_as_viewed_events(kind: str, event: str, name_prop: str) -> None:
    e = parse_message(raw(type=kind, name="Pricing", properties={"url": "/p"}), 0)
    assert e.event == event
    assert e.properties == {"url": "/p", name_prop: "Pricing"}


def test_anonymous_only_is_accepted() -> None:
    e = parse_message(orjson.dumps({"type": "page", "anonymousId": "a1"}), 5000)
    assert (e.user_id, e.anonymous_id) == (None, "a1")
    assert e.timestamp == e.received_at == 5000, "no timestamp: the receive time is used"


def test_clock_skew_correction() -> None:
    """timestamp = receivedAt - (sentAt - originalTimestamp)."""
    e = parse_message(
        raw(
            type="track",
            event="X",
            originalTimestamp="2026-01-01T00:00:00Z",
            timestamp=None,
            sentAt="2026-01-01T00:00:10Z",
            receivedAt="2026-01-01T00:00:05Z",
        ),
        0,
    )
    assert e.timestamp == 1767225600000 - 5000
    assert e.received_at == 1767225605000


def test_manual_timestamp_without_sent_at_is_kept() -> None:
    e = parse_message(raw(type="track", event="X", timestamp="2020-05-01T12:00:00+02:00"), 99)
    assert e.timestamp == 1588327200000
    assert e.received_at == 99


def test_missing_message_id_gets_a_deterministic_one() -> None:
    data = orjson.dumps({"type": "track", "userId": "u", "event": "X"})
    assert parse_message(data, 0).message_id == parse_message(data, 0).message_id
    assert parse_message(data, 0).message_id.startswith("gen-")


def test_round_trip_through_internal_json() -> None:
    from engage_stream.events import ProfileEvent

    e = parse_message(raw(type="identify", traits={"plan": "pro", "nested": {"a": [1]}}), 0)
    e.profile_id = "user_id:u1"
    assert ProfileEvent.from_json(e.to_json()) == e
