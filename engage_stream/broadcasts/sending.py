"""A broadcast's send on one partition: snapshot, then a throttled drain, in the partition's
own state — so a restart or a rebalance resumes exactly where the last checkpoint was.

Driven by the partition's clock ticks (`profiles.stage`), in the batch's transaction:

1. When the clock reaches the send instant, the recipients are evaluated once over every
   profile of the partition (`recipients.Recipients`), and their requests queued under
   `q:<broadcast>\\0<n>` with the progress under `b:<broadcast>` (`Progress`). This is the
   snapshot: a profile that joins the audience a second later is not a recipient.
2. Every tick after, the partition sends its share of the rate: with P partitions and a
   rate of R messages/s, the first ⌊R/P × (clock − start)⌋ queued requests are due; the
   due ones not yet sent go to `engage.messages`, each with a `Broadcast Sent` event for
   its profile (properties `campaign_key`, `version`, `channel`) so audiences can select
   who received it. The partitions' shares add up to R whichever workers own them.
3. The queue empty, the partition's send is `sent`. Cancelling (or unscheduling once
   started) drops what is still queued; a new version scheduled afterwards starts anew.

Each tick that changes a partition's progress also writes it to the compacted
`engage.broadcast-progress` topic (key `<broadcast>:<partition>`): what `status` reads.
Outputs and state commit together (`state.checkpoint`): a request is produced again only
if its checkpoint failed, and then with the same idempotency key.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Literal

import orjson

from engage_stream.broadcasts.catalog import BroadcastCatalog, BroadcastEntry
from engage_stream.broadcasts.recipients import Recipients
from engage_stream.config import Settings
from engage_stream.events import ProfileEvent
from engage_stream.messaging.requests import MessageSendRequest
from engage_stream.outputs.builder import MESSAGE_ID_HEADER
from engage_stream.profiles.store import ProfileStore
from engage_stream.records import OutgoingRecord
from engage_stream.state.keys import BROADCAST, BROADCAST_QUEUE, END, SEP
from engage_stream.state.kv import KV

log = logging.getLogger(__name__)

SENT_EVENT = "Broadcast Sent"
Phase = Literal["sending", "sent", "cancelled"]


@dataclass
class Progress:
    broadcast: str
    version: int
    partition: int
    phase: Phase
    started: int  # the snapshot instant (partition clock, epoch ms)
    total: int  # requests queued by the snapshot
    sent: int = 0
    profiles: int = 0  # profiles matching the recipient conditions
    skipped: dict[str, int] = field(default_factory=dict)
    finished: int | None = None  # when the last request went (or the send was cancelled)

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes) -> Progress:
        return cls(**orjson.loads(raw))


def read_progress(kv: KV) -> list[Progress]:
    """Every broadcast's progress on one partition."""
    return [Progress.loads(v) for _, v in kv.range(BROADCAST, BROADCAST + END)]


@dataclass
class Sent:
    """What one tick did: records to produce, and how many requests went."""

    outputs: list[OutgoingRecord] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)  # broadcast -> sent now
    progress: list[Progress] = field(default_factory=list)  # changed now


class BroadcastSender:
    def __init__(self, catalog: BroadcastCatalog, settings: Settings) -> None:
        self.catalog = catalog
        self.settings = settings
        self._recipients = {e.key: Recipients(e, settings.space_id) for e in catalog}

    def __bool__(self) -> bool:
        return bool(self.catalog)

    def on_tick(self, kv: KV, store: ProfileStore, clock: int, partition: int) -> Sent:
        out = Sent()
        for entry in self.catalog:
            key = BROADCAST + entry.key.encode()
            raw = kv.get(key)
            prog = Progress.loads(raw) if raw is not None else None
            before = prog.dumps() if prog is not None else None
            prog = self._advance(kv, store, entry, prog, clock, partition, out)
            if prog is not None and prog.dumps() != before:
                kv.put(key, prog.dumps())
                out.progress.append(prog)
                out.outputs.append(
                    OutgoingRecord(
                        self.settings.topics.broadcast_progress,
                        f"{entry.key}:{partition}".encode(),
                        prog.dumps(),
                    )
                )
        return out

    def _advance(
        self,
        kv: KV,
        store: ProfileStore,
        entry: BroadcastEntry,
        prog: Progress | None,
        clock: int,
        partition: int,
        out: Sent,
    ) -> Progress | None:
        status = entry.definition.status
        if prog is not None and prog.version != entry.version:
            if prog.phase == "sending":
                self._cancel(kv, prog, clock)  # a new version replaces a send in progress
                return prog
            if status == "scheduled":
                prog = None  # that version's send is over; this one starts on its own
        if prog is not None and prog.phase == "sending" and status != "scheduled":
            self._cancel(kv, prog, clock)
            return prog
        if status != "scheduled":
            return prog
        if prog is None:
            if clock < entry.send_at:
                return None
            prog = self._snapshot(kv, store, entry, clock, partition)
        if prog.phase == "sending":
            self._drain(kv, entry, prog, clock, out)
        return prog

    def _snapshot(
        self, kv: KV, store: ProfileStore, entry: BroadcastEntry, clock: int, partition: int
    ) -> Progress:
        snap = self._recipients[entry.key].evaluate(store, clock)
        prefix = BROADCAST_QUEUE + entry.key.encode() + SEP
        for n, request in enumerate(snap.requests):
            kv.put(prefix + b"%09d" % n, request.to_value())
        log.info(
            "broadcast %s v%d, partition %d: %d recipient(s) of %d matching profile(s), skipped %s",
            entry.key,
            entry.version,
            partition,
            len(snap.requests),
            snap.profiles,
            snap.skipped or "none",
        )
        done = not snap.requests
        return Progress(
            entry.key,
            entry.version,
            partition,
            "sent" if done else "sending",
            clock,
            len(snap.requests),
            0,
            snap.profiles,
            snap.skipped,
            clock if done else None,
        )

    def _drain(self, kv: KV, entry: BroadcastEntry, prog: Progress, clock: int, out: Sent) -> None:
        rate = entry.definition.rate or self.settings.broadcast_rate
        share = rate / max(1, self.settings.partitions)
        due = min(prog.total, int(share * (clock - prog.started) / 1000))
        if due <= prog.sent:
            return
        prefix = BROADCAST_QUEUE + entry.key.encode() + SEP
        start, end = prefix + b"%09d" % prog.sent, prefix + b"%09d" % due
        topics = self.settings.topics
        for k, value in list(kv.range(start, end)):
            request = MessageSendRequest.model_validate_json(value)
            pid = request.profile_id.encode()
            header = [(MESSAGE_ID_HEADER, request.message_id.encode())]
            out.outputs.append(OutgoingRecord(topics.messages, pid, value, header))
            event = ProfileEvent(
                message_id=request.idempotency_key,
                type="track",
                timestamp=clock,
                received_at=clock,
                profile_id=request.profile_id,
                event=SENT_EVENT,
                properties={
                    "campaign_key": entry.key,
                    "version": entry.version,
                    "channel": request.channel,
                },
            )
            out.outputs.append(OutgoingRecord(topics.profile_events, pid, event.to_json()))
            kv.delete(k)
        out.requests[entry.key] = out.requests.get(entry.key, 0) + due - prog.sent
        prog.sent = due
        if prog.sent == prog.total:
            prog.phase, prog.finished = "sent", clock

    def _cancel(self, kv: KV, prog: Progress, clock: int) -> None:
        prefix = BROADCAST_QUEUE + prog.broadcast.encode() + SEP
        for k in [k for k, _ in kv.range(prefix, prefix + END)]:
            kv.delete(k)
        prog.phase, prog.finished = "cancelled", clock
