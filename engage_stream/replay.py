"""Offline backtest: the worker's exact processing path over a file of events, no Kafka.

Events are applied in the order given; the clock follows their timestamps (it never goes
back), and every window boundary that falls due before an event — or before `until` at
the end — fires first, exactly as the worker's ticks would fire it. Each output record is
yielded as the worker would produce it, so the JSON lines printed by `engage-stream
replay` are the records a destination would receive. Deterministic: the same definitions
and events always give byte-identical output.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.engine.changes import Change
from engage_stream.engine.engine import Engine, EngineSettings
from engage_stream.identity.resolver import canonical_profile_id
from engage_stream.ingest.validate import InvalidEvent, parse_message
from engage_stream.outputs.records import OutputRecord, build_records, resync_all
from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.memory import MemoryKV


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    topic: str
    key: str
    value: dict[str, Any]

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"topic": self.topic, "key": self.key, "value": self.value}, option=orjson.OPT_SORT_KEYS
        )


@dataclass
class ReplayStats:
    events: int = 0
    invalid: int = 0
    duplicates: int = 0
    changes: int = 0
    records: int = 0


class Replay:
    def __init__(self, catalog: Catalog, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.catalog = catalog
        active = catalog.active()
        keys = {d.key for d in active}
        engine = Engine(
            active,
            versions=catalog.versions(keys),
            applied_at=catalog.created_at(),
            settings=EngineSettings(allowed_lateness_ms=self.settings.allowed_lateness_ms),
        )
        self.processor = ProfileProcessor(
            engine,
            ProcessorSettings(history_ms=self.settings.history_ms, dedup_ms=self.settings.dedup_ms),
            catalog.versions(keys),
        )
        self.store = ProfileStore(MemoryKV())
        self.clock = 0
        self.stats = ReplayStats()
        self.errors: list[str] = []

    def run(self, lines: Iterable[bytes], until_ms: int | None = None) -> Iterator[ReplayRecord]:
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            yield from self.feed(raw, n)
        if until_ms is not None:
            yield from self.advance(until_ms)

    def feed(self, raw: bytes, line: int = 0) -> Iterator[ReplayRecord]:
        try:
            # receivedAt, when the line has none, is the event's own time: no skew to correct
            event = parse_message(raw, _own_time(raw))
        except InvalidEvent as exc:
            self.stats.invalid += 1
            self.errors.append(f"line {line}: {exc.reason}: {exc.detail}")
            return
        event.profile_id = canonical_profile_id(event)
        yield from self.advance(event.timestamp)
        outcome = self.processor.apply(self.store, event, self.clock)
        if outcome.duplicate:
            self.stats.duplicates += 1
            return
        self.stats.events += 1
        yield from self._records(outcome.changes)
        if outcome.added_ids:
            profile = self.store.get(event.profile_id)
            assert profile is not None
            resent = resync_all(
                profile,
                self.catalog.active(),
                self.catalog.versions(),
                outcome.added_ids,
                {ch.key for ch in outcome.changes},
                "event:" + event.message_id,
                min(event.timestamp, self.clock),
                self.settings.space_id,
            )
            yield from self._replay_records(resent)

    def advance(self, until_ms: int) -> Iterator[ReplayRecord]:
        """Move the clock to `until_ms`, firing every boundary due on the way in time order."""
        while True:
            due = next(iter(self.store.due(until_ms)), None)
            if due is None:
                break
            record = self.store.get(due)
            at = record.next_wakeup if record is not None else None
            if at is None:
                break
            self.clock = max(self.clock, at)
            yield from self._records(self.processor.advance(self.store, self.clock))
        self.clock = max(self.clock, until_ms)

    def _records(self, changes: list[Change]) -> Iterator[ReplayRecord]:
        for ch in changes:
            self.stats.changes += 1
            defn = self.catalog.get(ch.key)
            profile = self.store.get(ch.profile_id)
            if defn is None or profile is None:
                continue
            yield from self._replay_records(
                build_records(ch, profile, defn, self.settings.space_id)
            )

    def _replay_records(self, records: list[OutputRecord]) -> Iterator[ReplayRecord]:
        for rec in records:
            self.stats.records += 1
            yield ReplayRecord(
                rec.topic(self.settings.topics), rec.key.decode(), orjson.loads(rec.value)
            )


def _own_time(raw: bytes) -> int:
    """A receive time for a line without `receivedAt`: its timestamp (or 0)."""
    from engage_stream.definitions.models import parse_date_ms

    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(obj, dict):
        return 0
    for field in ("receivedAt", "timestamp", "originalTimestamp"):
        ms = parse_date_ms(obj.get(field))
        if ms is not None:
            return ms
    return 0
