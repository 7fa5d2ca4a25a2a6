"""Ingest: input records → validated, normalised → routed by identity (or DLQ).

An event whose identifiers the identity replica already knows, all on one profile, goes
straight to `profile-events` keyed by that profile; any other goes to the identity stage
(`identity-requests`), the one place identifiers are linked (`identity.replica`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from engage_stream import metrics
from engage_stream.config import Settings, Topics
from engage_stream.identity.replica import IdentityReplica
from engage_stream.identity.stage import BLOCKED_IDENTIFIER
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.ingest.segment import EVENT_TYPES
from engage_stream.ingest.validate import InvalidEvent, Reason, parse_message
from engage_stream.records import SOURCE_ID_HEADER, OutgoingRecord, SourceRecord, origin_header
from engage_stream.state.checkpoint import Checkpoint, Committable, Producer
from engage_stream.stream.batch_consumer import Batch


class IngestStage:
    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        offsets: Committable,
        replica: IdentityReplica,
        replica_ready: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.producer = producer
        self.offsets = offsets
        self.replica = replica
        self.replica_ready = replica_ready
        # Every reason's series exists from the start, at 0: one that first appears already
        # at its value shows no increase to rate() / increase(), and the dead-letter alerts
        # (deploy/alerts.yml) would miss the first burst of each reason.
        for reason in (*Reason, BLOCKED_IDENTIFIER):
            metrics.labelled(metrics.dead_lettered, reason)
        for kind in EVENT_TYPES:
            metrics.labelled(metrics.events_consumed, kind)

    async def handle(self, batch: Batch) -> None:
        """A checkpoint without state: the batch counts as done (its offsets committable)
        once everything it produced is acknowledged."""
        await self.replica_ready.wait()  # routing needs the identity map as it stands
        out: list[OutgoingRecord] = []
        accepted: dict[str, int] = {}
        rejected: dict[str, int] = {}
        profile_events = self.topics.profile_events
        fast = slow = 0
        for recs in batch.values():
            for rec in recs:
                done = ingest_record(rec, self.replica, self.topics)
                out.append(done.record)
                if done.rejected is not None:
                    rejected[done.rejected] = rejected.get(done.rejected, 0) + 1
                    continue
                assert done.accepted is not None
                accepted[done.accepted] = accepted.get(done.accepted, 0) + 1
                if done.record.topic == profile_events:
                    fast += 1
                else:
                    slow += 1
        checkpoint = Checkpoint(self.producer, self.settings.changelog_topic, self.offsets)
        checkpoint.add_outputs(out)
        for tp, recs in batch.items():
            checkpoint.consumed(tp, recs[-1].offset)
        await checkpoint.commit()
        # Counted once the batch is acknowledged (a failed batch is consumed again).
        metrics.identity_fast_path.labels("known").inc(fast)
        metrics.identity_fast_path.labels("identity_stage").inc(slow)
        for kind, n in accepted.items():
            metrics.labelled(metrics.events_consumed, kind).inc(n)
        for reason, n in rejected.items():
            metrics.labelled(metrics.dead_lettered, reason).inc(n)


@dataclass(frozen=True, slots=True)
class Ingested:
    """What became of one input record: the record to produce, and either the event type
    it carried on as or the reason it was dead-lettered."""

    record: OutgoingRecord
    accepted: str | None = None
    rejected: str | None = None


def ingest_record(rec: SourceRecord, replica: IdentityReplica, topics: Topics) -> Ingested:
    """One input record: validated, normalised, stamped with its origin, routed to the
    profile it belongs to (`profile-events`) or to the identity stage — or dead-lettered.
    Ingest is pure: whatever fails here fails on the record's data, and a record must end
    up processed or dead-lettered, never stop the stream."""
    try:
        if rec.value is None:
            raise InvalidEvent(Reason.MALFORMED_JSON, "record has no value")
        event = parse_message(rec.value, rec.timestamp)
        if rec.headers:
            event.source_id = _source_of(rec.headers)
        pid = replica.route(event)
        if pid is not None:
            event.profile_id = pid
        value = event.to_json()
    except Exception as exc:
        if isinstance(exc, InvalidEvent):
            reason, detail = exc.reason, exc.detail
        else:
            reason, detail = Reason.PROCESSING_FAILED, f"{type(exc).__name__}: {exc}"
        dl = DeadLetter.of(rec, reason, detail, internal=False)
        return Ingested(dl.record(topics.dead_letter, rec.key, rec.value), rejected=reason)
    origin = [origin_header(rec)]
    if pid is None:
        return Ingested(
            OutgoingRecord(topics.identity_requests, rec.key, value, origin), event.type
        )
    return Ingested(OutgoingRecord(topics.profile_events, pid.encode(), value, origin), event.type)


def _source_of(headers: Iterable[tuple[str, bytes]]) -> str | None:
    for k, v in headers:
        if k == SOURCE_ID_HEADER:
            try:
                return v.decode() or None
            except UnicodeDecodeError:
                raise InvalidEvent(
                    Reason.INVALID_FIELD, f"header {SOURCE_ID_HEADER} is not UTF-8"
                ) from None
    return None
