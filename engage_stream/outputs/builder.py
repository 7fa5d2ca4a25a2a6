"""Changes → the records to produce, for one definitions catalog (swapped with the engine).

`outputs.records` builds one change's Segment payloads; this wraps them as
`OutgoingRecord`s with their topics and messageId header, loading each profile once per
batch of changes rather than once per change.
"""

from __future__ import annotations

from typing import Any

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.engine.changes import Change
from engage_stream.events import ProfileEvent
from engage_stream.outputs.records import (
    OutputRecord,
    ProfileView,
    build_records,
    destination_backfill_records,
    resync_all,
)
from engage_stream.profiles.processor import Merged, Outcome
from engage_stream.profiles.record import ExternalId, ProfileRecord
from engage_stream.profiles.store import ProfileStore
from engage_stream.records import OutgoingRecord

_UNSEEN: Any = object()
MESSAGE_ID_HEADER = "engage.message_id"


class RecordBuilder:
    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.space_id = settings.space_id
        self.topics = settings.topics
        # what a re-sync walks: computed once per catalog, not per event
        self._active = [d for d in catalog.active() if d.destinations]
        self._versions = catalog.versions()

    @classmethod
    def empty(cls, settings: Settings) -> RecordBuilder:
        """Before any definitions: nothing to emit."""
        return cls(Catalog(), settings)

    def changes(
        self, changes: list[Change], store: ProfileStore, profile: ProfileRecord | None = None
    ) -> list[list[OutgoingRecord]]:
        """The records of each change, in order (empty for a change with nothing to send).
        `profile`: the record the changes were computed on, when the caller has it (saves
        loading it again)."""
        out: list[list[OutgoingRecord]] = []
        views: dict[str, ProfileView | None] = {}  # one load per profile, not per change
        if profile is not None:
            views[profile.profile_id] = ProfileView(profile)
        for ch in changes:
            records: list[OutgoingRecord] = []
            out.append(records)
            defn = self.catalog.get(ch.key)
            pid = ch.profile_id
            view = views.get(pid, _UNSEEN)
            if view is _UNSEEN:
                found = store.get(pid)
                view = views[pid] = ProfileView(found) if found is not None else None
            if defn is None or view is None:
                continue
            self._append(records, build_records(ch, view.profile, defn, self.space_id, view))
        return out

    def resync(self, event: ProfileEvent, outcome: Outcome, now_ms: int) -> list[OutgoingRecord]:
        """Current values re-sent to the identifiers the event added (reference §3.3)."""
        return self._resync(
            outcome.record,
            outcome.added_ids,
            outcome.changes,
            "event:" + event.message_id,
            min(event.timestamp, now_ms),
        )

    def transfer(self, merged: Merged, source: str, at_ms: int) -> list[OutgoingRecord]:
        """After a merge: the merged profile's current values to the identifiers it took
        over, and an exit where the merged-away profile was a member and it is not (a
        destination is never left believing a merged-away identifier is still a member)."""
        return self._resync(
            merged.record,
            merged.source_ids,
            merged.changes,
            "merge:" + source,
            at_ms,
            merged.source_members,
        )

    def _resync(
        self,
        profile: ProfileRecord | None,
        ids: list[ExternalId],
        changes: list[Change],
        cause: str,
        at_ms: int,
        members: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> list[OutgoingRecord]:
        if profile is None or not ids or not self._active:
            return []
        out: list[OutgoingRecord] = []
        changed = {ch.key for ch in changes}
        self._append(
            out,
            resync_all(
                profile,
                self._active,
                self._versions,
                ids,
                changed,
                cause,
                at_ms,
                self.space_id,
                members,
            ),
        )
        return out

    def destinations(self) -> dict[str, tuple[str, ...]]:
        """Each active definition's destinations (what a partition's values must reach)."""
        return {d.key: tuple(sorted(x.name for x in d.destinations)) for d in self.catalog.active()}

    def backfill_destinations(
        self, profile: ProfileRecord, added: dict[str, set[str]]
    ) -> list[OutgoingRecord]:
        """The profile's current values sent to destinations added to existing definitions."""
        out: list[OutgoingRecord] = []
        for key, names in added.items():
            defn = self.catalog.get(key)
            if defn is None:
                continue
            version = self._versions.get(key, 1)
            self._append(
                out, destination_backfill_records(profile, defn, version, names, self.space_id)
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
