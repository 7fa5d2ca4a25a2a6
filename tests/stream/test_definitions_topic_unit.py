"""The definitions topic read without a broker: deletion markers keep the last version,
old null tombstones still delete, workers only see live definitions. (A deleted audience's
size counter: tests/profiles/test_stage.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

from engage_stream.stream.definitions_topic import (
    DefinitionRecord,
    _apply,
    _notify,
    live,
    record_key,
)

KEY = record_key("audience", "buyers")


def record(version: int, **kw: Any) -> DefinitionRecord:
    body = {"kind": "audience", "key": "buyers", "conditions": [{"event": "X"}]}
    return DefinitionRecord(
        key="buyers", kind="audience", version=version, applied_at=5, body=body, **kw
    )


def test_a_deletion_marker_survives_as_the_latest_record_with_its_version() -> None:
    current: dict[bytes, DefinitionRecord] = {}
    _apply(current, KEY, record(3).to_value())
    _apply(current, KEY, record(3).deletion(9).to_value())
    assert (current[KEY].deleted, current[KEY].version, current[KEY].applied_at) == (True, 3, 9)
    assert live(current) == {}


def test_an_old_null_tombstone_still_deletes_and_keeps_the_version_read_before() -> None:
    current: dict[bytes, DefinitionRecord] = {}
    _apply(current, KEY, record(2).to_value())
    _apply(current, KEY, None)
    assert current[KEY].deleted and current[KEY].version == 2 and live(current) == {}
    _apply(current, b"audience:compacted", None)  # its earlier records are gone: nothing known
    assert b"audience:compacted" not in current


def test_records_from_before_deletion_markers_still_parse() -> None:
    old = b'{"key":"buyers","kind":"audience","version":1,"applied_at":5,"body":{"k":1}}'
    current: dict[bytes, DefinitionRecord] = {}
    _apply(current, KEY, old)
    assert not current[KEY].deleted and live(current) == current


def test_watchers_are_notified_with_live_definitions_only() -> None:
    seen: list[dict[bytes, DefinitionRecord]] = []
    current = {KEY: record(1).deletion(7), b"audience:other": record(1)}
    asyncio.run(_notify(seen.append, current))
    assert list(seen[0]) == [b"audience:other"]
