"""The definitions topic read without a broker: deletion markers keep the last version,
old null tombstones still delete, workers only see live definitions; and a deleted
audience's size counter goes with its memberships."""

from __future__ import annotations

import asyncio
from typing import Any

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.models import AudienceDefinition
from engage_stream.engine.engine import Engine
from engage_stream.events import ProfileEvent
from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
from engage_stream.profiles.record import ProfileRecord, TraitValue
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.memory import MemoryKV
from engage_stream.stream.definitions_topic import (
    DefinitionRecord,
    _apply,
    _notify,
    live,
    record_key,
)
from engage_stream.stream.emit import RecordBuilder, audience_sizes, forget_members

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


def test_forget_members_takes_dropped_memberships_out_of_the_size() -> None:
    store = ProfileStore(MemoryKV())
    store.kv.put(b"s:buyers", b"2")
    store.kv.put(b"s:fans", b"1")
    profile = ProfileRecord(profile_id="user_id:u1")
    profile.audiences["buyers"] = TraitValue(True, 1)
    profile.audiences["fans"] = TraitValue(False, 1)
    forget_members(store, profile, {"buyers", "fans", "unknown"})
    assert audience_sizes(store.kv) == {"buyers": 1, "fans": 1}
    forget_members(store, profile, {"buyers"})
    assert audience_sizes(store.kv) == {"fans": 1}  # buyers: no member left, no counter


class _Hooked:
    """The engine as the worker runs it: sizes follow memberships dropped on deletion."""

    def __init__(self, engine: Engine, store: ProfileStore) -> None:
        self.engine, self.store = engine, store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def drop(self, profile: ProfileRecord, keys: set[str]) -> None:
        forget_members(self.store, profile, keys)
        self.engine.drop(profile, keys)


def _event(user: str, name: str, ts: int) -> ProfileEvent:
    return ProfileEvent(
        message_id=f"{user}-{name}-{ts}",
        type="track",
        timestamp=ts,
        received_at=ts,
        profile_id=f"user_id:{user}",
        event=name,
        user_id=user,
    )


def test_a_recreated_audience_counts_only_its_real_members() -> None:
    store = ProfileStore(MemoryKV())
    processor = ProfileProcessor(None, ProcessorSettings())
    settings = Settings()

    def use(definitions: list[AudienceDefinition], versions: dict[str, int]) -> RecordBuilder:
        engine = Engine(definitions, versions=versions)
        processor.set_engine(_Hooked(engine, store), versions)  # type: ignore[arg-type]
        build = RecordBuilder(Catalog.from_definitions(definitions), settings)
        build(processor.sweep(store, 10_000, None, 100).changes, store)
        return build

    def buyers(event: str) -> AudienceDefinition:
        return AudienceDefinition.model_validate(
            {"key": "buyers", "conditions": [{"event": event}]}
        )

    build = use([buyers("X")], {"buyers": 1})
    for user in ("u1", "u2"):
        build(processor.apply(store, _event(user, "X", 1_000), 1_000).changes, store)
    assert audience_sizes(store.kv) == {"buyers": 2}

    use([], {})  # deleted: every profile drops it
    assert audience_sizes(store.kv) == {}

    build = use([buyers("Y")], {"buyers": 2})  # re-created: version 2, counted from 0
    build(processor.apply(store, _event("u1", "Y", 2_000), 2_000).changes, store)
    assert audience_sizes(store.kv) == {"buyers": 1}
