"""The dead-letter record: original bytes kept, cut only where the topic could not take them."""

from __future__ import annotations

import hashlib

from engage_stream.ingest.dead_letter import MAX_KEY_BYTES, MAX_VALUE_BYTES, DeadLetter

DL = DeadLetter(reason="oversize", detail="d", topic="segment.track", partition=1, offset=7)


def test_a_value_within_the_limit_is_kept_byte_for_byte() -> None:
    value = b"x" * MAX_VALUE_BYTES
    rec = DL.record("engage.dlq", b"k", value, [("engage.source", b"web")])
    assert (rec.topic, rec.key, rec.value) == ("engage.dlq", b"k", value)
    back = DeadLetter.from_headers(rec.headers or [])
    assert back == DL and back.original_bytes is None
    assert ("engage.source", b"web") in (rec.headers or [])


def test_a_larger_value_is_cut_with_its_length_and_digest() -> None:
    value = b"y" * (MAX_VALUE_BYTES + 48_500)
    rec = DL.record("engage.dlq", b"k" * (MAX_KEY_BYTES + 1), value)
    assert rec.value == value[:MAX_VALUE_BYTES] and rec.key == b"k" * MAX_KEY_BYTES
    back = DeadLetter.from_headers(rec.headers or [])
    assert back.original_bytes == len(value)
    assert back.original_sha256 == hashlib.sha256(value).hexdigest()
    assert (back.reason, back.topic, back.partition, back.offset) == (
        "oversize",
        "segment.track",
        1,
        7,
    )


def test_no_value_becomes_empty_bytes() -> None:
    assert DL.record("engage.dlq", None, None).value == b""
