"""The identity stage: events that link or introduce identifiers, resolved one at a time.

Every worker's ingest routes an event straight to its profile when all of the event's
identifiers are already known and agree (`identity.replica`). Only the others — a new
identifier, or identifiers of several profiles — come here, to `identity-requests`, whose
single partition makes this stage the one writer of the identity graph (`identity.graph`):
no two workers can link the same identifiers differently. Like the profiles stage it
applies a batch in one transaction and is checkpointed the same way (its graph is
rebuilt from its own changelog). Kafka-free: the worker and `replay` both drive it.

For each event: resolve → the event goes to `profile-events` keyed by its canonical
profile; new and moved identifiers go to the compacted `identity` topic (which every
worker's replica follows); each merged-away profile gets a `MergeRequest` on its own
partition and a record on the compacted `merges` topic (Segment's `id_graph_updates`
shape). An event without one usable identifier is dead-lettered (`blocked_identifier`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.events import ProfileEvent
from engage_stream.identity.external_ids import extract_external_ids
from engage_stream.identity.graph import IdGraph, IdKey
from engage_stream.identity.rules import IdentityRules
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.profiles.control import MergeRequest
from engage_stream.records import OutgoingRecord, SourceRecord, carried_origin
from engage_stream.state.partition_store import StorageError
from engage_stream.state.transaction import Transaction

log = logging.getLogger(__name__)

BLOCKED_IDENTIFIER = "blocked_identifier"  # dead-letter reason: no usable identifier


def user_identifiers(event: ProfileEvent, rules: IdentityRules) -> list[IdKey]:
    """The identifiers an event carries for the users collection (group ids name accounts).
    With `merge_on_alias`, an alias's previousId links too (as the id it was used as)."""
    ids = [(t, v) for t, v, collection in extract_external_ids(event) if collection == "users"]
    if event.type == "alias" and rules.merge_on_alias and event.previous_id:
        ids.append(("anonymous_id", event.previous_id))
    return ids


def identity_record(key: IdKey, profile_id: str) -> tuple[bytes, bytes]:
    return f"{key[0]}:{key[1]}".encode(), profile_id.encode()


@dataclass
class IdentityResult:
    outputs: list[OutgoingRecord] = field(default_factory=list)
    resolved: int = 0
    created: int = 0
    merged: int = 0
    failed: int = 0


class IdentityStage:
    def __init__(self, settings: Settings, rules: IdentityRules | None = None) -> None:
        self.settings = settings
        self.rules = rules or IdentityRules()

    def apply(self, tx: Transaction, records: Sequence[SourceRecord]) -> IdentityResult:
        out = IdentityResult()
        graph = IdGraph(tx, self.rules)
        for rec in records:
            if rec.offset <= tx.source_offset:
                continue
            tx.clock = max(tx.clock, rec.timestamp)
            tx.source_offset = rec.offset
            tx.savepoint()
            n_outputs = len(out.outputs)
            try:
                self._one(graph, rec, out)
            except StorageError:
                raise
            except Exception as exc:  # the data, not the graph: set it aside, go on
                tx.rollback()
                del out.outputs[n_outputs:]
                self._dead_letter(out, rec, "processing_failed", f"{type(exc).__name__}: {exc}")
            else:
                tx.release()
        metrics.identity_resolutions.labels("resolved").inc(out.resolved)
        metrics.identity_resolutions.labels("created").inc(out.created)
        metrics.identity_resolutions.labels("merged").inc(out.merged)
        return out

    def _one(self, graph: IdGraph, rec: SourceRecord, out: IdentityResult) -> None:
        topics = self.settings.topics
        if rec.value is None:
            raise ValueError("an identity request without a value")
        event = ProfileEvent.from_json(rec.value)
        res = graph.resolve(
            user_identifiers(event, self.rules), event.received_at, event.message_id
        )
        if res is None:
            self._dead_letter(
                out, rec, BLOCKED_IDENTIFIER, "every identifier is blocked by the identity rules"
            )
            return
        pid = res.profile_id
        out.resolved += 1
        out.created += res.created
        for key in (*res.added, *res.moved):
            k, v = identity_record(key, pid)
            out.outputs.append(OutgoingRecord(topics.identity, k, v))
        for source in res.merged:
            out.merged += 1
            request = MergeRequest(
                source=source, target=pid, message_id=event.message_id, at=event.timestamp
            )
            out.outputs.append(
                OutgoingRecord(topics.profile_events, source.encode(), request.to_value())
            )
            update = {
                "segment_id": source,
                "canonical_segment_id": pid,
                "triggering_event_type": event.type,
                "triggering_event_id": event.message_id,
                "timestamp": event.timestamp,
            }
            out.outputs.append(OutgoingRecord(topics.merges, source.encode(), orjson.dumps(update)))
        event.profile_id = pid
        out.outputs.append(
            OutgoingRecord(
                topics.profile_events, pid.encode(), event.to_json(), carried_origin(rec)
            )
        )

    def _dead_letter(
        self, out: IdentityResult, rec: SourceRecord, reason: str, detail: str
    ) -> None:
        dl = DeadLetter.of(rec, reason, detail)
        out.outputs.append(dl.record(self.settings.topics.dead_letter, rec.key, rec.value))
        out.failed += 1
        metrics.labelled(metrics.dead_lettered, reason).inc()
