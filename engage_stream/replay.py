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
from engage_stream.identity.graph import IdGraph
from engage_stream.identity.rules import IdentityRules
from engage_stream.identity.stage import IdentityStage
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
    events: int = 0  # input events applied (each once)
    account_events: int = 0  # what accounts were given of them (group calls, event copies)
    invalid: int = 0
    duplicates: int = 0
    changes: int = 0
    records: int = 0


class Replay:
    def __init__(
        self,
        catalog: Catalog,
        settings: Settings | None = None,
        rules: IdentityRules | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.catalog = catalog
        self.identity = IdentityStage(self.settings, rules or IdentityRules.from_env())
        self.stage = ProfileStage(self.settings, catalog)
        self.id_db = MemoryStore()  # the identity stage's database
        self.db = MemoryStore()  # the profiles stage's (one partition)
        self.clock = 0
        self.sweep = Sweep()
        self._offsets = {"identity": 0, "profiles": 0}
        self._last = 0  # the latest event time parsed (the clock the next batch reaches)
        self.stats = ReplayStats()
        self.errors: list[str] = []

    @property
    def profiles(self) -> ProfileStore:
        """The replayed profiles (read them; writes would bypass the stage)."""
        return ProfileStore(Transaction(self.db))

    @property
    def graph(self) -> IdGraph:
        """The replayed identity graph (read it)."""
        return IdGraph(Transaction(self.id_db), self.identity.rules)

    def run(self, lines: Iterable[bytes], until_ms: int | None = None) -> Iterator[ReplayRecord]:
        """Events sharing an instant go through the stages in one batch (after one tick at
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
                yield from self._instant(pending)
                pending = []
            pending.append(rec)
        if pending:
            yield from self._instant(pending)
        if until_ms is not None:
            yield from self.advance(until_ms)

    def feed(self, raw: bytes, line: int = 0) -> Iterator[ReplayRecord]:
        """One line: resolved, then a tick at its instant and the event."""
        rec = self._parse(raw, line)
        if rec is not None:
            yield from self._instant([rec])

    def advance(self, until_ms: int) -> Iterator[ReplayRecord]:
        """Move the clock to `until_ms`, firing every boundary due on the way."""
        yield from self._profiles([self._record("profiles", TICK_KEY, None, until_ms)])

    def apply_records(self, records: Sequence[SourceRecord]) -> list[OutgoingRecord]:
        """`profile-events` records (one partition's, in offset order) through the stage."""
        return self._apply(records).outputs

    def _parse(self, raw: bytes, line: int) -> InputRecord | None:
        try:
            # receivedAt, when the line has none, is the event's own time: no skew to correct
            event = parse_message(raw, _own_time(raw))
        except InvalidEvent as exc:
            self.stats.invalid += 1
            self.errors.append(f"line {line}: {exc.reason}: {exc.detail}")
            return None
        self._last = max(self._last, event.timestamp)  # the clock never goes back
        return self._record("identity", None, event.to_json(), self._last)

    def _instant(self, requests: list[InputRecord]) -> Iterator[ReplayRecord]:
        """The identity stage over the instant's events, then the profiles stage over a tick
        and what it routed, as the worker's two stages would."""
        at = requests[-1].timestamp
        tx = Transaction(self.id_db, source_offset=self.id_db.source_offset)
        resolved = self.identity.apply(tx, requests)
        tx.prepare()
        tx.commit(changelog_offset=None)
        batch = [self._record("profiles", TICK_KEY, None, at)]
        for rec in resolved.outputs:
            if rec.topic == self.settings.topics.profile_events:
                batch.append(self._record("profiles", rec.key, rec.value, at))
            elif rec.topic == self.settings.topics.dead_letter:
                self.stats.invalid += 1
                self.errors.append(f"{rec.key!r}: no usable identifier")
        yield from self._profiles(batch)

    def _profiles(self, batch: list[InputRecord]) -> Iterator[ReplayRecord]:
        """A batch through the profiles stage; what it routes back to `profile-events` (a
        merge's transfer, an event for a merged-away profile) in the batches after it."""
        internal = self.settings.topics.profile_events
        while batch:
            result = self._apply(batch)
            at = self.clock
            batch = [
                self._record("profiles", r.key, r.value, at)
                for r in result.outputs
                if r.topic == internal
            ]
            yield from self._records(r for r in result.outputs if r.topic != internal)

    def _record(
        self, stage: str, key: bytes | None, value: bytes | None, timestamp: int
    ) -> InputRecord:
        offset = self._offsets[stage]
        self._offsets[stage] += 1
        topic = (
            self.settings.topics.identity_requests
            if stage == "identity"
            else self.settings.topics.profile_events
        )
        return InputRecord(topic, 0, offset, timestamp, key, value)

    def _apply(self, records: Sequence[SourceRecord]) -> StageResult:
        tx = Transaction(
            self.db, clock=self.clock, source_offset=self.db.source_offset, sweep=self.sweep
        )
        result = self.stage.apply(tx, records)
        tx.prepare()
        tx.commit(changelog_offset=None)
        self.clock, self.sweep = tx.clock, tx.sweep
        self.stats.events += result.processed
        self.stats.account_events += result.account_events
        self.stats.duplicates += result.duplicates
        self.stats.changes += len(result.changes)
        return result

    def _records(self, outputs: Iterable[OutgoingRecord]) -> Iterator[ReplayRecord]:
        for rec in outputs:
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
