"""Engine changes → Kafka records, and the per-partition audience sizes they imply.

Runs inside the batch's transaction: the records are produced by the same checkpoint that
stores the state that caused them, and the member counts (`s:<audience>`) are kept in
that state too, so sizes survive restarts and are rebuilt from the changelog like
everything else.
"""

from __future__ import annotations

from collections.abc import Iterable

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.engine.changes import Change
from engage_stream.outputs.records import build_records
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.kv import KV
from engage_stream.stream.producing import OutgoingRecord

SIZE = b"s:"
MESSAGE_ID_HEADER = "engage.message_id"


def member_delta(change: Change) -> int:
    if change.kind != "audience":
        return 0
    if change.value is True and change.previous is not True:
        return 1
    if change.value is not True and change.previous is True:
        return -1
    return 0


def audience_sizes(kv: KV) -> dict[str, int]:
    return {k[len(SIZE) :].decode(): int(v) for k, v in kv.range(SIZE, SIZE + b"\xff")}


def _count_members(kv: KV, changes: Iterable[Change]) -> None:
    deltas: dict[str, int] = {}
    for ch in changes:
        d = member_delta(ch)
        if d:
            deltas[ch.key] = deltas.get(ch.key, 0) + d
    for key, d in deltas.items():
        k = SIZE + key.encode()
        kv.put(k, str(int(kv.get(k) or b"0") + d).encode())


class RecordBuilder:
    """Builds the output records for one definitions catalog (swapped with the engine)."""

    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.space_id = settings.space_id
        self.topics = settings.topics

    def __call__(self, changes: list[Change], store: ProfileStore) -> list[OutgoingRecord]:
        _count_members(store.kv, changes)
        out: list[OutgoingRecord] = []
        for ch in changes:
            metrics.changes_emitted.labels(ch.kind, ch.key).inc()
            defn = self.catalog.get(ch.key)
            profile = store.get(ch.profile_id)
            if defn is None or profile is None:
                continue
            for rec in build_records(ch, profile, defn, self.space_id):
                topic = (
                    self.topics.changes
                    if rec.destination is None
                    else self.topics.output(rec.destination)
                )
                out.append(
                    OutgoingRecord(
                        topic, rec.key, rec.value, [(MESSAGE_ID_HEADER, rec.message_id.encode())]
                    )
                )
        return out
