"""Offline backtest: the worker's own profiles stage over a file of events, no Kafka.

Each line is validated and keyed as ingest would, then handed to `profiles.stage` — the
same code the worker runs on `profile-events` — as an in-memory record, committed to an
in-memory partition database. The clock follows the events' timestamps (it never goes
back): before each event a clock tick at its timestamp fires every window boundary due by
then, and `until` ends with one more, exactly as the worker's ticks would. The JSON lines
`engage-stream replay` prints are the records a destination would receive; the same
definitions and events always give byte-identical output.

`apply_records` takes `profile-events` records as they are on the topic (ticks included),
so a worker's input can be replayed to check it produced the same changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.models import parse_date_ms
from engage_stream.identity.resolver import canonical_profile_id
from engage_stream.ingest.validate import InvalidEvent, parse_message
from engage_stream.profiles.stage import TICK_KEY, ProfileStage, StageResult
from engage_stream.profiles.store import ProfileStore
from engage_stream.records import InputRecord, OutgoingRecord, SourceRecord
from engage_stream.state.memory import MemoryStore
from engage_stream.state.transaction import Sweep, Transaction


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
        self.stage = ProfileStage(self.settings, catalog)
        self.db = MemoryStore()
        self.clock = 0
        self.sweep = Sweep()
        self._next_offset = 0
        self._last = 0  # the latest event time parsed (the clock the next batch reaches)
        self.stats = ReplayStats()
        self.errors: list[str] = []

    @property
    def profiles(self) -> ProfileStore:
        """The replayed profiles (read them; writes would bypass the stage)."""
        return ProfileStore(Transaction(self.db))

    def run(self, lines: Iterable[bytes], until_ms: int | None = None) -> Iterator[ReplayRecord]:
        """Events sharing an instant go through the stage in one batch (after one tick at
        that instant), so changes that cancel out within it are netted as the worker nets
        them within a batch."""
        pending: list[InputRecord] = []
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            rec = self._parse(raw, n)
            if rec is None:
                continue
            if pending and rec.timestamp != pending[-1].timestamp:
                yield from self._records(self._apply(pending))
                pending = []
            if not pending:
                pending.append(self._record(TICK_KEY, None, rec.timestamp))
            pending.append(self._renumber(rec))
        if pending:
            yield from self._records(self._apply(pending))
        if until_ms is not None:
            yield from self.advance(until_ms)

    def feed(self, raw: bytes, line: int = 0) -> Iterator[ReplayRecord]:
        """One line: a tick at its instant, then the event."""
        rec = self._parse(raw, line)
        if rec is not None:
            tick = self._record(TICK_KEY, None, rec.timestamp)
            yield from self._records(self._apply([tick, self._renumber(rec)]))

    def _parse(self, raw: bytes, line: int) -> InputRecord | None:
        try:
            # receivedAt, when the line has none, is the event's own time: no skew to correct
            event = parse_message(raw, _own_time(raw))
        except InvalidEvent as exc:
            self.stats.invalid += 1
            self.errors.append(f"line {line}: {exc.reason}: {exc.detail}")
            return None
        pid = event.profile_id = canonical_profile_id(event)
        self._last = max(self._last, event.timestamp)  # the clock never goes back
        return InputRecord(
            self.settings.topics.profile_events, 0, -1, self._last, pid.encode(), event.to_json()
        )

    def _renumber(self, rec: InputRecord) -> InputRecord:
        return self._record(rec.key or b"", rec.value, rec.timestamp)

    def advance(self, until_ms: int) -> Iterator[ReplayRecord]:
        """Move the clock to `until_ms`, firing every boundary due on the way."""
        yield from self._records(self._apply([self._record(TICK_KEY, None, until_ms)]))

    def apply_records(self, records: Sequence[SourceRecord]) -> list[OutgoingRecord]:
        """`profile-events` records (one partition's, in offset order) through the stage."""
        return self._apply(records).outputs

    def _record(self, key: bytes, value: bytes | None, timestamp: int) -> InputRecord:
        offset = self._next_offset
        self._next_offset += 1
        return InputRecord(self.settings.topics.profile_events, 0, offset, timestamp, key, value)

    def _apply(self, records: Sequence[SourceRecord]) -> StageResult:
        tx = Transaction(
            self.db, clock=self.clock, source_offset=self.db.source_offset, sweep=self.sweep
        )
        result = self.stage.apply(tx, records)
        tx.prepare()
        tx.commit(changelog_offset=None)
        self.clock, self.sweep = tx.clock, tx.sweep
        self.stats.events += result.processed
        self.stats.duplicates += result.duplicates
        self.stats.changes += len(result.changes)
        return result

    def _records(self, result: StageResult) -> Iterator[ReplayRecord]:
        for rec in result.outputs:
            self.stats.records += 1
            yield ReplayRecord(
                rec.topic, (rec.key or b"").decode(), orjson.loads(rec.value or b"null")
            )


def _own_time(raw: bytes) -> int:
    """A receive time for a line without `receivedAt`: its timestamp (or 0)."""
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
