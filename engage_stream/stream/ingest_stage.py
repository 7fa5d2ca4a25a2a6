"""Ingest: input records → validated, normalised, keyed by profile → profile-events (or DLQ)."""

from __future__ import annotations

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.identity.resolver import canonical_profile_id
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.ingest.validate import InvalidEvent, Reason, parse_message
from engage_stream.records import OutgoingRecord
from engage_stream.state.checkpoint import Checkpoint, Committable, Producer
from engage_stream.stream.batch_consumer import Batch


class IngestStage:
    def __init__(self, settings: Settings, producer: Producer, offsets: Committable) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.producer = producer
        self.offsets = offsets

    async def handle(self, batch: Batch) -> None:
        """A checkpoint without state: the batch counts as done (its offsets committable)
        once everything it produced is acknowledged."""
        out: list[OutgoingRecord] = []
        accepted: dict[str, int] = {}
        rejected: dict[str, int] = {}
        profile_events = self.topics.profile_events
        for recs in batch.values():
            for rec in recs:
                try:
                    if rec.value is None:
                        raise InvalidEvent(Reason.MALFORMED_JSON, "record has no value")
                    event = parse_message(rec.value, rec.timestamp)
                except InvalidEvent as exc:
                    dl = DeadLetter(
                        reason=exc.reason,
                        detail=exc.detail,
                        topic=rec.topic,
                        partition=rec.partition,
                        offset=rec.offset,
                        timestamp_ms=rec.timestamp,
                    )
                    out.append(
                        OutgoingRecord(
                            self.topics.dead_letter, rec.key, rec.value or b"", dl.headers()
                        )
                    )
                    rejected[exc.reason] = rejected.get(exc.reason, 0) + 1
                    continue
                pid = event.profile_id = canonical_profile_id(event)
                out.append(OutgoingRecord(profile_events, pid.encode(), event.to_json()))
                accepted[event.type] = accepted.get(event.type, 0) + 1
        checkpoint = Checkpoint(self.producer, self.settings.changelog_topic, self.offsets)
        checkpoint.add_outputs(out)
        for tp, recs in batch.items():
            checkpoint.consumed(tp, recs[-1].offset)
        await checkpoint.commit()
        # Counted once the batch is acknowledged (a failed batch is consumed again).
        for kind, n in accepted.items():
            metrics.labelled(metrics.events_consumed, kind).inc(n)
        for reason, n in rejected.items():
            metrics.labelled(metrics.dead_lettered, reason).inc(n)
