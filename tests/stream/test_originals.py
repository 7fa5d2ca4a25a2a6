"""Dead letters past ingest get the sender's original bytes back from the input topic."""

from __future__ import annotations

import asyncio

import pytest

from engage_stream.config import Settings
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.produce import produce_lines
from engage_stream.records import ORIGIN_HEADER, InputRecord, OutgoingRecord
from engage_stream.stream.originals import VALUE_HEADER, Originals
from engage_stream.stream.topics import ensure_topics
from tests.stream.helpers import read_topic

pytestmark = pytest.mark.broker

ORIGINAL = b'{"type":"track","userId":"u1","event":"X","messageId":"m1","properties":{"a":1}}'
VALIDATED = b'{"message_id":"m1","type":"track","event":"X","user_id":"u1"}'


def _dead_letter(s: Settings, origin: str, offset: int) -> OutgoingRecord:
    internal = InputRecord(
        s.topics.profile_events,
        1,
        offset,
        0,
        b"user_id:u1",
        VALIDATED,
        [(ORIGIN_HEADER, origin.encode())],
    )
    dl = DeadLetter.of(internal, "processing_failed", "ValueError: boom")
    return dl.record(s.topics.dead_letter, internal.key, internal.value)


def test_the_original_replaces_the_validated_copy_and_a_lost_one_is_said(
    worker_settings: Settings,
) -> None:
    s = worker_settings
    ensure_topics(s)
    produce_lines(s, [ORIGINAL])
    (sent,) = read_topic(s, s.topics.track)
    outputs = [
        _dead_letter(s, f"{sent.topic}/{sent.partition}/{sent.offset}", 7),
        _dead_letter(s, f"{sent.topic}/{sent.partition}/{sent.offset + 100}", 8),  # never was
        OutgoingRecord(s.topics.profile_events, b"k", b"v"),  # not a dead letter: untouched
    ]
    asyncio.run(Originals(s.broker, s.topics.dead_letter, timeout_s=2.0).restore(outputs))

    restored, missing, other = outputs
    assert restored.value == ORIGINAL
    dl = DeadLetter.from_headers(restored.headers or [])
    assert (dl.topic, dl.partition, dl.offset) == (sent.topic, sent.partition, sent.offset)
    assert dl.stage_record == f"{s.topics.profile_events}/1/7"
    assert dl.reason == "processing_failed" and "boom" in dl.detail
    assert not any(k == VALUE_HEADER for k, _ in restored.headers or [])

    assert missing.value == VALIDATED
    assert (VALUE_HEADER, b"validated_event") in (missing.headers or [])
    assert other.value == b"v" and other.headers is None
