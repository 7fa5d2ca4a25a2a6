"""The profile stage: one event (or one clock advance) against one profile's state.

Pure and storage-agnostic — the worker runs it over a RocksDB transaction, `replay` over
memory — so the live stream and an offline backtest take exactly the same path:
dedup → history → custom traits → external ids → metadata → engine → wake-up index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from engage_stream.events import ProfileEvent
from engage_stream.identity.external_ids import extract_external_ids
from engage_stream.profiles.record import ExternalId, ProfileRecord, TraitValue
from engage_stream.profiles.store import ProfileStore


class EngineLike(Protocol):
    def on_event(self, profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Any]: ...

    def on_time(self, profile: ProfileRecord, now_ms: int) -> list[Any]: ...

    def recompute(
        self,
        profile: ProfileRecord,
        keys: set[str],
        history: Iterable[ProfileEvent],
        now_ms: int,
    ) -> list[Any]: ...

    def drop(self, profile: ProfileRecord, keys: set[str]) -> None: ...


@dataclass(frozen=True)
class ProcessorSettings:
    history_ms: int = 90 * 86_400_000
    dedup_ms: int = 24 * 3_600_000


@dataclass
class Outcome:
    duplicate: bool = False
    changes: list[Any] = field(default_factory=list)


class ProfileProcessor:
    def __init__(self, engine: EngineLike | None, settings: ProcessorSettings) -> None:
        self.engine = engine
        self.settings = settings

    def apply(self, store: ProfileStore, event: ProfileEvent, now_ms: int) -> Outcome:
        record = store.get(event.profile_id)
        created = record is None
        if record is None:
            record = ProfileRecord(profile_id=event.profile_id)
        previous_wakeup = record.next_wakeup
        if self._is_duplicate(record, event, now_ms):
            return Outcome(duplicate=True)
        if self.settings.history_ms > 0:
            cutoff = now_ms - self.settings.history_ms
            if event.timestamp >= cutoff:
                store.append_history(event)
            if not created:
                store.prune_history(record.profile_id, cutoff)
        if event.type == "identify":
            _apply_traits(record, event)
        _apply_external_ids(record, event)
        _apply_metadata(record, event, created)
        changes = self.engine.on_event(record, event, now_ms) if self.engine else []
        store.put(record, previous_wakeup)
        return Outcome(changes=changes)

    def advance(self, store: ProfileStore, now_ms: int) -> list[Any]:
        """Fire every time-driven change due by `now_ms` (window exits with no new events)."""
        changes: list[Any] = []
        for pid in store.due(now_ms):
            record = store.get(pid)
            if record is None or record.next_wakeup is None or record.next_wakeup > now_ms:
                continue
            previous = record.next_wakeup
            if self.engine:
                changes.extend(self.engine.on_time(record, now_ms))
            else:
                record.next_wakeup = None
            if record.next_wakeup == previous:  # an engine must move its wake-up forward
                record.next_wakeup = None
            store.put(record, previous)
        return changes

    def recompute(self, store: ProfileStore, keys: set[str], now_ms: int) -> list[Any]:
        """Evaluate added or edited definitions over every stored profile's history."""
        changes: list[Any] = []
        if self.engine is None or not keys:
            return changes
        for pid in list(store.profile_ids()):
            record = store.get(pid)
            if record is None:
                continue
            previous = record.next_wakeup
            history = store.history(pid, max(0, now_ms - self.settings.history_ms))
            changes.extend(self.engine.recompute(record, keys, history, now_ms))
            store.put(record, previous)
        return changes

    def drop(self, store: ProfileStore, keys: set[str]) -> None:
        if self.engine is None or not keys:
            return
        for pid in list(store.profile_ids()):
            record = store.get(pid)
            if record is None:
                continue
            previous = record.next_wakeup
            self.engine.drop(record, keys)
            store.put(record, previous)

    def _is_duplicate(self, record: ProfileRecord, event: ProfileEvent, now_ms: int) -> bool:
        """messageId dedup per profile over a sliding window (Segment: at least 24 h)."""
        recent = record.recent_ids
        horizon = now_ms - self.settings.dedup_ms
        if event.message_id in recent and recent[event.message_id] >= horizon:
            return True
        if len(recent) > 64 or any(ts < horizon for ts in recent.values()):
            for mid in [m for m, ts in recent.items() if ts < horizon]:
                del recent[mid]
        recent[event.message_id] = now_ms
        return False


def _apply_traits(record: ProfileRecord, event: ProfileEvent) -> None:
    """Last value by event time wins; `null` removes (kept as a tombstone for ordering)."""
    for key, value in event.traits.items():
        current = record.traits.get(key)
        if current is None or event.timestamp >= current.ts:
            record.traits[key] = TraitValue(value, event.timestamp, event.message_id)


def _apply_external_ids(record: ProfileRecord, event: ProfileEvent) -> None:
    for id_type, value, collection in extract_external_ids(event):
        if not record.has_external_id(id_type, value):
            record.external_ids.append(
                ExternalId(
                    type=id_type,
                    id=value,
                    collection=collection,
                    created_at=event.received_at,
                    first_message_id=event.message_id,
                )
            )


def _apply_metadata(record: ProfileRecord, event: ProfileEvent, created: bool) -> None:
    md = record.metadata
    if created:
        md.created_at = event.received_at
        md.first_message_id = event.message_id
    md.updated_at = max(md.updated_at, event.received_at)
    md.last_message_id = event.message_id
    md.event_count += 1
