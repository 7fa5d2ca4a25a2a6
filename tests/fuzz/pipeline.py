"""The worker's three stages in process, one record at a time, saying what became of it.

Ingest is the worker's own per-record step (`stream.ingest_stage.ingest_record`), without
the producer and offsets around it (those the broker test runs for real). The
identity stage and the profiles stage are the worker's own (`IdentityStage.apply`,
`ProfileStage.apply`) over in-memory partition databases, as `replay` drives them; the
identity topic's records feed the replica as the worker's replica follows that topic. A
later stage's dead letter names the input record but keeps the validated copy as its
value here: the worker reads the original back (`stream.originals`), which needs Kafka.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.identity.replica import IdentityReplica
from engage_stream.identity.rules import IdentityRules
from engage_stream.identity.stage import IdentityStage
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.profiles.stage import ProfileStage, StageResult
from engage_stream.records import InputRecord, OutgoingRecord
from engage_stream.state.memory import MemoryStore
from engage_stream.state.transaction import Sweep, Transaction
from engage_stream.stream.ingest_stage import ingest_record
from tests.fuzz.generate import DUPLICATE, PROCESSED

Headers = Sequence[tuple[str, bytes]]


@dataclass
class Outcome:
    result: str  # a dead-letter reason, PROCESSED, DUPLICATE, or "lost"
    dead_letters: list[OutgoingRecord] = field(default_factory=list)
    detail: str = ""


class Pipeline:
    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.topics = settings.topics
        rules = IdentityRules()
        self.replica = IdentityReplica(rules)
        self.identity = IdentityStage(settings, rules)
        self.profiles = ProfileStage(settings, catalog)
        self.id_db = MemoryStore()
        self.db = MemoryStore()
        self.clock = 0
        self.sweep = Sweep()
        self._offsets = {"identity": 0, "profiles": 0}
        self.changes = 0

    def feed(
        self, key: bytes | None, value: bytes | None, timestamp_ms: int, offset: int
    ) -> Outcome:
        """One input record (at `offset` of the mixed input topic) through every stage."""
        rec = InputRecord(self.topics.mixed, 0, offset, timestamp_ms, key, value)
        done = ingest_record(rec, self.replica, self.topics)
        out = done.record
        if done.rejected is not None:
            return Outcome(done.rejected, [out], DeadLetter.from_headers(out.headers or []).detail)
        if out.topic == self.topics.identity_requests:
            request = self._record("identity", out.key, out.value, timestamp_ms, out.headers)
            return self._through_identity(request)
        return self._through_profiles(
            [self._record("profiles", out.key, out.value, timestamp_ms, out.headers)]
        )

    def _through_identity(self, request: InputRecord) -> Outcome:
        tx = Transaction(self.id_db, source_offset=self.id_db.source_offset)
        resolved = self.identity.apply(tx, [request])
        tx.prepare()
        tx.commit(changelog_offset=None)
        dead = [r for r in resolved.outputs if r.topic == self.topics.dead_letter]
        for r in resolved.outputs:
            if r.topic == self.topics.identity:
                self.replica.apply(r.key, r.value)
        if dead:
            return Outcome(_reason(dead[0]), dead)
        batch = [
            self._record("profiles", r.key, r.value, request.timestamp, r.headers)
            for r in resolved.outputs
            if r.topic == self.topics.profile_events
        ]
        return self._through_profiles(batch)

    def _through_profiles(self, batch: list[InputRecord]) -> Outcome:
        """The event (and what routing it sends back to `profile-events`: an account's
        copy of a group call, a merge's transfer) through the profiles stage."""
        processed = duplicates = 0
        dead: list[OutgoingRecord] = []
        while batch:
            result = self._apply(batch)
            processed += result.processed
            duplicates += result.duplicates
            dead += [r for r in result.outputs if r.topic == self.topics.dead_letter]
            at = self.clock
            batch = [
                self._record("profiles", r.key, r.value, at, r.headers)
                for r in result.outputs
                if r.topic == self.topics.profile_events
            ]
        if dead:
            return Outcome(_reason(dead[0]), dead)
        if processed:
            return Outcome(PROCESSED)
        if duplicates:
            return Outcome(DUPLICATE)
        return Outcome("lost", detail="neither processed nor dropped as a duplicate")

    def _apply(self, records: list[InputRecord]) -> StageResult:
        tx = Transaction(
            self.db, clock=self.clock, source_offset=self.db.source_offset, sweep=self.sweep
        )
        result = self.profiles.apply(tx, records)
        tx.prepare()
        tx.commit(changelog_offset=None)
        self.clock, self.sweep = tx.clock, tx.sweep
        self.changes += len(result.changes)
        return result

    def _record(
        self,
        stage: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Headers | None = None,
    ) -> InputRecord:
        offset = self._offsets[stage]
        self._offsets[stage] += 1
        topic = self.topics.identity_requests if stage == "identity" else self.topics.profile_events
        return InputRecord(topic, 0, offset, timestamp, key, value, tuple(headers or ()))


def _reason(record: OutgoingRecord) -> str:
    return DeadLetter.from_headers(record.headers or []).reason
