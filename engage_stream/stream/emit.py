"""Engine changes → Kafka records, and the per-partition audience sizes they imply.

Runs inside the batch's transaction: the records are produced by the same checkpoint that
stores the state that caused them, and the member counts (`s:<audience>`) are kept in
that state too, so sizes survive restarts and are rebuilt from the changelog like
everything else. A count is exactly the partition's profiles holding the membership: it
moves with every change, and with every membership dropped when a definition is deleted
(`forget_members`), so it is gone once the deletion reached every profile.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engage_stream import metrics
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.engine.changes import Change
from engage_stream.events import ProfileEvent
from engage_stream.outputs.records import OutputRecord, ProfileView, build_records, resync_all
from engage_stream.profiles.processor import Outcome
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.kv import KV
from engage_stream.stream.producing import OutgoingRecord

SIZE = b"s:"
_UNSEEN: Any = object()
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
    _add_sizes(kv, deltas)


def _add_sizes(kv: KV, deltas: dict[str, int]) -> None:
    for key, d in deltas.items():
        k = SIZE + key.encode()
        n = int(kv.get(k) or b"0") + d
        if n:
            kv.put(k, str(n).encode())
        else:
            kv.delete(k)  # no members left: a deleted audience leaves no counter behind


def forget_members(store: ProfileStore, profile: ProfileRecord, keys: Iterable[str]) -> None:
    """Call before `Engine.drop` takes deleted definitions off a profile (which emits no
    change): its memberships leave the sizes, so a re-created audience counts only its
    real members."""
    gone = {k: -1 for k in keys if (m := profile.audiences.get(k)) is not None and m.value is True}
    _add_sizes(store.kv, gone)


class RecordBuilder:
    """Builds the output records for one definitions catalog (swapped with the engine)."""

    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.space_id = settings.space_id
        self.topics = settings.topics
        # what a re-sync walks: computed once per catalog, not per event
        self._active = [d for d in catalog.active() if d.destinations]
        self._versions = catalog.versions()

    def __call__(
        self, changes: list[Change], store: ProfileStore, profile: ProfileRecord | None = None
    ) -> list[OutgoingRecord]:
        """`profile`: the record the changes were computed on, when the caller has it (saves
        loading it again)."""
        _count_members(store.kv, changes)
        out: list[OutgoingRecord] = []
        views: dict[str, ProfileView | None] = {}  # one load per profile, not per change
        if profile is not None:
            views[profile.profile_id] = ProfileView(profile)
        counted: dict[tuple[str, str], int] = {}
        for ch in changes:
            counted[ch.kind, ch.key] = counted.get((ch.kind, ch.key), 0) + 1
            defn = self.catalog.get(ch.key)
            pid = ch.profile_id
            view = views.get(pid, _UNSEEN)
            if view is _UNSEEN:
                found = store.get(pid)
                view = views[pid] = ProfileView(found) if found is not None else None
            if defn is None or view is None:
                continue
            self._append(out, build_records(ch, view.profile, defn, self.space_id, view))
        for (kind, key), n in counted.items():
            metrics.labelled(metrics.changes_emitted, kind, key).inc(n)
        return out

    def resync(
        self, store: ProfileStore, event: ProfileEvent, outcome: Outcome, now_ms: int
    ) -> list[OutgoingRecord]:
        """Current values re-sent to the identifiers the event added (reference §3.3)."""
        profile = outcome.record
        if profile is None or not outcome.added_ids or not self._active:
            return []
        out: list[OutgoingRecord] = []
        self._append(
            out,
            resync_all(
                profile,
                self._active,
                self._versions,
                outcome.added_ids,
                {ch.key for ch in outcome.changes},
                "event:" + event.message_id,
                min(event.timestamp, now_ms),
                self.space_id,
            ),
        )
        return out

    def _append(self, out: list[OutgoingRecord], records: list[OutputRecord]) -> None:
        for rec in records:
            out.append(
                OutgoingRecord(
                    rec.topic(self.topics),
                    rec.key,
                    rec.value,
                    [(MESSAGE_ID_HEADER, rec.message_id.encode())],
                )
            )


class NoRecords(RecordBuilder):
    """Before any definitions: nothing to emit."""

    def __init__(self) -> None:
        pass

    def __call__(
        self, changes: list[Change], store: ProfileStore, profile: ProfileRecord | None = None
    ) -> list[OutgoingRecord]:
        return []

    def resync(
        self, store: ProfileStore, event: ProfileEvent, outcome: Outcome, now_ms: int
    ) -> list[OutgoingRecord]:
        return []
