"""Ingest's per-record step, in process: routing, the origin stamp, dead letters."""

from __future__ import annotations

import orjson

from engage_stream.config import Settings
from engage_stream.identity.replica import IdentityReplica
from engage_stream.identity.rules import IdentityRules
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.ingest.validate import Reason
from engage_stream.records import ORIGIN_HEADER, SOURCE_ID_HEADER, InputRecord
from engage_stream.stream.ingest_stage import ingest_record

TOPICS = Settings().topics
EVENT = orjson.dumps(
    {
        "type": "track",
        "userId": "u1",
        "event": "X",
        "messageId": "m1",
        "timestamp": "2026-12-01T00:00:00Z",
    }
)


def _ingest(value: bytes, headers: list[tuple[str, bytes]]) -> tuple[InputRecord, object]:
    rec = InputRecord(TOPICS.track, 2, 41, 1_764_547_200_000, b"u1", value, headers)
    return rec, ingest_record(rec, IdentityReplica(IdentityRules()), TOPICS)


def test_an_accepted_event_is_stamped_with_its_own_input_record() -> None:
    _, done = _ingest(EVENT, [(ORIGIN_HEADER, b"elsewhere/0/1")])
    assert done.accepted == "track" and done.rejected is None
    assert done.record.topic == TOPICS.identity_requests  # an unknown id: the identity stage
    assert done.record.headers == [(ORIGIN_HEADER, f"{TOPICS.track}/2/41".encode())]


def test_an_input_record_is_its_own_origin_whatever_headers_it_came_with() -> None:
    """A producer can put any header on an input record: a dead letter of ingest names
    where the record really is, not where a forged `engage.origin` points."""
    rec, done = _ingest(b"{not json", [(ORIGIN_HEADER, b"elsewhere/7/99")])
    dl = DeadLetter.from_headers(done.record.headers or [])
    assert (dl.topic, dl.partition, dl.offset) == (rec.topic, 2, 41)
    assert dl.stage_record is None and done.rejected == Reason.MALFORMED_JSON
    assert done.record.value == rec.value


def test_a_source_header_that_is_not_utf8_is_an_invalid_field_not_a_failure() -> None:
    _, done = _ingest(EVENT, [(SOURCE_ID_HEADER, b"\xff\xfe")])
    assert done.rejected == Reason.INVALID_FIELD
    assert "engage.source_id" in DeadLetter.from_headers(done.record.headers or []).detail
