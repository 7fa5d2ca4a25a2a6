"""The profile stage: one event (or one clock advance) against one profile's state.

Pure and storage-agnostic — the worker runs it over a RocksDB transaction, `replay` over
memory — so the live stream and an offline backtest take exactly the same path:
dedup → history → custom traits → external ids → metadata → engine → journeys → wake-up
index. Journeys (`journeys.runner`, users only) see the changes the engine just made.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from engage_stream.events import ProfileEvent
from engage_stream.identity.external_ids import extract_external_ids
from engage_stream.journeys.machine import JourneyOutput, merge_states
from engage_stream.journeys.runner import JourneyRunner
from engage_stream.journeys.subscriptions import apply_subscriptions, merge_subscriptions
from engage_stream.profiles.accounts import flag_traits
from engage_stream.profiles.control import AccountFlags, MergeRequest, ProfileTransfer
from engage_stream.profiles.record import (
    ACCOUNT_PREFIX,
    ExternalId,
    Link,
    Merge,
    ProfileRecord,
    TraitValue,
    is_account,
)
from engage_stream.profiles.store import ProfileStore

log = logging.getLogger(__name__)


class EngineLike(Protocol):
    def on_event(self, profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Any]: ...

    def on_time(self, profile: ProfileRecord, now_ms: int) -> list[Any]: ...

    def recompute(
        self,
        profile: ProfileRecord,
        keys: set[str],
        history: Iterable[ProfileEvent],
        now_ms: int,
        cause: str | None = None,
    ) -> list[Any]: ...

    def drop(self, profile: ProfileRecord, keys: set[str]) -> None: ...


ProfileErrorHandler = Callable[[str, Exception], None]


@dataclass(frozen=True)
class ProcessorSettings:
    history_ms: int = 90 * 86_400_000
    dedup_ms: int = 24 * 3_600_000


@dataclass
class Outcome:
    duplicate: bool = False
    changes: list[Any] = field(default_factory=list)
    # identifiers the event added to an existing profile: its current values are re-sent
    # to them (reference §3.3)
    added_ids: list[ExternalId] = field(default_factory=list)
    record: ProfileRecord | None = None  # the profile as stored after the event
    # audiences the profile was a member of whose definitions were deleted (no change is
    # emitted for those; the partition's audience sizes still count them out)
    left: list[str] = field(default_factory=list)
    journeys: list[JourneyOutput] = field(default_factory=list)


def definitions_epoch(versions: Mapping[str, int]) -> str:
    """A short fingerprint of a set of definition versions."""
    digest = hashlib.blake2b(repr(sorted(versions.items())).encode(), digest_size=8)
    return digest.hexdigest()


@dataclass
class SweepResult:
    changes: list[Any]
    cursor: str | None  # last profile id visited; None when the sweep is complete
    profiles: int
    left: list[str] = field(default_factory=list)  # as `Outcome.left`, for every profile
    journeys: list[JourneyOutput] = field(default_factory=list)


@dataclass
class Merged:
    """What taking a merged-away profile in did to the survivor."""

    changes: list[Any] = field(default_factory=list)
    record: ProfileRecord | None = None  # the survivor as stored after the merge
    # every identifier of the source (some may have reached the survivor already, with the
    # event that linked them): what their destinations were told is about the source
    source_ids: list[ExternalId] = field(default_factory=list)
    source_members: set[str] = field(default_factory=set)  # audiences the source was in
    duplicate: bool = False  # this source was merged in before
    journeys: list[JourneyOutput] = field(default_factory=list)


@dataclass
class Advanced:
    """What a clock advance fired."""

    changes: list[Any] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # as `Outcome.left`, for every profile
    journeys: list[JourneyOutput] = field(default_factory=list)


class ProfileProcessor:
    def __init__(
        self,
        engine: EngineLike | None,
        settings: ProcessorSettings,
        versions: Mapping[str, int] | None = None,
        accounts: bool = False,
    ) -> None:
        self.settings = settings
        # which profiles this processor evaluates: users, or accounts (`group_id:<id>`)
        self.accounts = accounts
        # accounts: hidden audience key -> (account audience, any|all|none)
        self.flags: Mapping[str, tuple[str, str]] = {}
        self.journeys: JourneyRunner | None = None  # users only
        self.set_engine(engine, versions or {})

    def set_engine(self, engine: EngineLike | None, versions: Mapping[str, int]) -> None:
        """Swap in the engine for a new set of definitions (`key -> version`)."""
        self.engine = engine
        self.versions = dict(versions) if engine is not None else {}
        self.epoch = definitions_epoch(self.versions)

    def apply(
        self, store: ProfileStore, event: ProfileEvent, now_ms: int, raw: bytes | None = None
    ) -> Outcome:
        """`raw`: the event's JSON as it arrived, if `event` was read from it unchanged (its
        history entry is then those bytes)."""
        opened = self._open(store, event, now_ms, raw)
        if opened is None:
            return Outcome(duplicate=True)
        record, created, previous_wakeup, changes, left = opened
        if event.type == "identify":
            _apply_traits(record, event)
            if "messaging_subscriptions" in event.context:
                record.subscriptions = apply_subscriptions(record.subscriptions, event)
        added = _apply_external_ids(record, event)
        _apply_metadata(record, event, created)
        if self.engine is not None:
            changes.extend(self.engine.on_event(record, event, now_ms))
        journeys = self.journeys.on_event(record, event, changes, now_ms) if self.journeys else []
        store.put(record, previous_wakeup)
        return Outcome(False, changes, added if not created else [], record, left, journeys)

    def apply_account(self, store: ProfileStore, event: ProfileEvent, now_ms: int) -> Outcome:
        """A group call forwarded to its account (`group_id:<id>`): the account's traits
        (last by event time), its identifier, the user it links, metadata, history."""
        opened = self._open(store, event, now_ms)
        if opened is None:
            return Outcome(duplicate=True)
        record, created, previous_wakeup, changes, left = opened
        if event.type != "group":  # a user's event, for the account's computed traits
            _apply_metadata(record, event, created)
            if self.engine is not None:
                changes.extend(self.engine.on_event(record, event, now_ms))
            store.put(record, previous_wakeup)
            return Outcome(False, changes, [], record, left)
        _apply_traits(record, event)
        gid = event.group_id or event.profile_id[len(ACCOUNT_PREFIX) :]
        if not record.has_external_id("group_id", gid):
            record.external_ids.append(
                ExternalId(
                    "group_id",
                    gid,
                    "accounts",
                    event.received_at,
                    event.message_id,
                    event.source_id or "",
                )
            )
        user = event.linked_profile
        if user and all(x.profile_id != user for x in record.links):
            ids = [[t, v] for t, v, c in extract_external_ids(event) if c == "users"]
            record.links.append(Link(user, ids, event.received_at))
        _apply_metadata(record, event, created)
        traits = dict(event.traits)
        # a new user: `all` (and what reads it) moves now
        traits.update({k: v for k, (v, _) in self._set_flags(record, event.timestamp).items()})
        if self.engine is not None:
            # a trait change, as the engine knows one: dependents are re-evaluated
            as_traits = event.model_copy(update={"type": "identify", "traits": traits})
            changes.extend(self.engine.on_event(record, as_traits, now_ms))
        store.put(record, previous_wakeup)
        return Outcome(False, changes, [], record, left)

    def account_flags(self, store: ProfileStore, msg: AccountFlags, now_ms: int) -> Outcome:
        """A user's hidden memberships reached its account: the any / all / none traits
        move, and the account audiences reading them are evaluated."""
        record = store.get(msg.account) or self._new(store, msg.account)
        previous_wakeup = record.wakeup
        left: list[str] = []
        changes = self._sync_definitions(store, record, now_ms, left)
        for gone in msg.replaces:  # merged into `user`: one person, counted once
            record.user_flags.pop(gone, None)
            for link in record.links:
                if link.profile_id == gone:
                    link.profile_id = msg.user
        unique: dict[str, Link] = {}
        for link in record.links:
            unique.setdefault(link.profile_id, link)
        record.links = list(unique.values())
        record.user_flags[msg.user] = {
            k: [v, msg.times.get(k, msg.at)] for k, v in msg.flags.items()
        }
        moved = self._set_flags(record, msg.at)
        by_time: dict[int, dict[str, bool]] = {}
        for k, (v, at) in moved.items():
            by_time.setdefault(at, {})[k] = v
        if self.engine is not None:
            for at in sorted(by_time):  # each flag moves at its own instant, in time order
                event = ProfileEvent(
                    message_id=f"flags:{msg.user}:{msg.cause}:{at}",
                    type="identify",
                    timestamp=at,
                    received_at=at,
                    profile_id=msg.account,
                    traits=by_time[at],
                )
                changes.extend(self.engine.on_event(record, event, now_ms))
        store.put(record, previous_wakeup)
        return Outcome(False, changes, [], record, left)

    def _set_flags(self, record: ProfileRecord, at: int) -> dict[str, tuple[bool, int]]:
        """The account's any / all / none traits from its users' hidden memberships; the
        ones that changed, each with when (`at` when no user's change dates it)."""
        moved: dict[str, tuple[bool, int]] = {}
        users = len(record.links) or len(record.user_flags)
        for k, (v, when) in flag_traits(self.flags, record.user_flags, users).items():
            current = record.traits.get(k)
            if current is None or current.value != v:
                when = when or at
                record.traits[k] = TraitValue(v, when, "")
                moved[k] = (v, when)
        return moved

    def _open(
        self, store: ProfileStore, event: ProfileEvent, now_ms: int, raw: bytes | None = None
    ) -> tuple[ProfileRecord, bool, int | None, list[Any], list[str]] | None:
        """The steps every event takes first: load (or create) its profile, dedup (None:
        a duplicate), bring it to the current definitions, keep the event in its history.
        The profile, whether created, its previous wake-up, changes so far, memberships
        left by deleted definitions."""
        record = store.get(event.profile_id)
        created = record is None
        if record is None:
            record = self._new(store, event.profile_id)
        previous_wakeup = record.wakeup
        if self._is_duplicate(store, event, now_ms):
            return None
        left: list[str] = []
        changes = self._sync_definitions(store, record, now_ms, left)
        if self.settings.history_ms > 0:
            cutoff = now_ms - self.settings.history_ms
            if event.timestamp >= cutoff:
                store.append_history(event, raw)
            if not created:
                store.prune_history(record.profile_id, cutoff)
        return record, created, previous_wakeup, changes, left

    def _new(self, store: ProfileStore, profile_id: str) -> ProfileRecord:
        record = ProfileRecord(profile_id=profile_id)
        self._stamp(store, record)
        return record

    def _stamp(self, store: ProfileStore, record: ProfileRecord) -> None:
        """The record's state now reflects the current definitions: it carries their
        fingerprint, which the partition resolves to the versions."""
        record.def_versions, record.defs_epoch = {}, self.epoch
        store.keep_epoch(self.epoch, self.versions)

    def advance(
        self, store: ProfileStore, now_ms: int, on_error: ProfileErrorHandler | None = None
    ) -> Advanced:
        """Fire every time-driven change due by `now_ms` (window exits with no new events).

        `on_error`: a profile whose evaluation raises is reported and skipped, the others go
        on (nothing of it is written before its evaluation succeeded); None re-raises."""
        out = Advanced()
        for pid in store.due(now_ms):
            if is_account(pid) != self.accounts:
                continue  # the other collection's processor fires it
            record = store.get(pid)
            if record is None or record.wakeup is None or record.wakeup > now_ms:
                continue
            previous = record.wakeup
            journeys: list[JourneyOutput] = []
            try:
                mine = self._sync_definitions(store, record, now_ms, out.left)
                if self.engine is not None and record.next_wakeup is not None:
                    if record.next_wakeup <= now_ms:
                        mine.extend(self.engine.on_time(record, now_ms))
                else:
                    record.next_wakeup = None
                if self.journeys:
                    journeys = self.journeys.on_changes(record, mine, now_ms)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(pid, exc)
                continue
            if record.next_wakeup is not None and record.next_wakeup <= now_ms:
                record.next_wakeup = None  # an engine must move its wake-up past now
            if record.journey_wakeup is not None and record.journey_wakeup <= now_ms:
                record.journey_wakeup = None  # (the machine fires everything due)
            out.changes.extend(mine)
            out.journeys.extend(journeys)
            store.put(record, previous)
        return out

    def sweep(
        self,
        store: ProfileStore,
        now_ms: int,
        after: str | None,
        max_profiles: int,
        on_error: ProfileErrorHandler | None = None,
        publish: set[str] = frozenset(),  # type: ignore[assignment]
        revisit: bool = False,
    ) -> SweepResult:
        """Bring up to `max_profiles` stored profiles (ids after `after`) to the current
        definitions: added or edited definitions are evaluated over each profile's history
        (backfill), deleted ones dropped; journeys in `publish` (a version the profiles have
        not seen) reach each profile, and with `revisit` (journeys edited: paused, archived,
        deleted) every profile's journey states are brought in line. Resumable by cursor; idempotent. `on_error` as in
        `advance` (a skipped profile is brought up to date when it is next touched)."""
        changes: list[Any] = []
        journeys: list[JourneyOutput] = []
        left: list[str] = []
        visited = 0
        cursor: str | None = None
        for pid in store.profile_ids(after=after):
            if visited == max_profiles:
                return SweepResult(changes, cursor, visited, left, journeys)
            visited += 1
            cursor = pid
            if is_account(pid) != self.accounts:
                continue  # the other collection's processor sweeps it
            record = store.get(pid)
            publishing = (bool(publish) or revisit) and self.journeys is not None
            if record is None or (record.defs_epoch == self.epoch and not publishing):
                continue
            previous = record.wakeup
            mine_journeys: list[JourneyOutput] = []
            try:
                mine = self._sync_definitions(store, record, now_ms, left)
                if self.journeys:
                    mine_journeys = self.journeys.on_publish(record, mine, now_ms, publish)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(pid, exc)
                continue
            changes.extend(mine)
            journeys.extend(mine_journeys)
            store.put(record, previous)
        return SweepResult(changes, None, visited, left, journeys)

    def merge_out(
        self, store: ProfileStore, request: MergeRequest
    ) -> tuple[ProfileTransfer | None, list[str]]:
        """Take the merged-away profile off this partition: everything stored of it, to be
        produced to the survivor's partition; and the audiences it leaves (sizes)."""
        record = store.get(request.source)
        if record is None:
            return None, []
        transfer = ProfileTransfer(
            source=request.source,
            target=request.target,
            message_id=request.message_id,
            at=request.at,
            record=orjson.loads(record.dumps()),
            history=[orjson.loads(e.to_json()) for e in store.history(request.source)],
            seen=store.seen_entries(request.source),
        )
        left = sorted(k for k, m in record.audiences.items() if m.value is True)
        store.remove(record)
        return transfer, left

    def merge_in(self, store: ProfileStore, transfer: ProfileTransfer, now_ms: int) -> Merged:
        """One profile from two: the union of both histories and dedup windows, traits by
        last update, every identifier, metadata; then every definition evaluated again
        over the merged history (changes caused by `merge:<source>`)."""
        target = store.get(transfer.target) or self._new(store, transfer.target)
        if any(m.source == transfer.source for m in target.merges):
            return Merged(record=target, duplicate=True)
        previous_wakeup = target.wakeup
        source = ProfileRecord.loads(orjson.dumps(transfer.record))
        for mid, arrived in sorted(transfer.seen.items()):
            if store.seen_at(target.profile_id, mid) is None:
                store.remember(target.profile_id, mid, arrived, None)
        cutoff = now_ms - self.settings.history_ms
        for raw in transfer.history:
            event = ProfileEvent.model_validate(raw)
            event.profile_id = target.profile_id
            if self.settings.history_ms > 0 and event.timestamp >= cutoff:
                store.append_history(event)
        for key, tv in source.traits.items():
            current = target.traits.get(key)
            if current is None or tv.ts > current.ts:
                target.traits[key] = tv
        added = [x for x in source.external_ids if not target.has_external_id(x.type, x.id)]
        target.external_ids.extend(added)
        _merge_metadata(target, source)
        target.merges.extend(source.merges)
        target.merges.append(Merge(transfer.source, transfer.at, transfer.message_id))
        changes: list[Any] = []
        if self.engine is not None:
            history = store.history(target.profile_id, max(0, cutoff))
            changes = self.engine.recompute(
                target, set(self.versions), history, now_ms, cause=f"merge:{transfer.source}"
            )
        self._stamp(store, target)
        # the merged profile carries both sides' journey instances and subscriptions
        for key, per in source.journeys.items():
            mine = target.journeys.setdefault(key, {})
            for version, state in per.items():
                mine[version] = merge_states(mine.get(version), state)
        target.subscriptions = merge_subscriptions(target.subscriptions, source.subscriptions)
        journeys = self.journeys.on_changes(target, changes, now_ms) if self.journeys else []
        store.put(target, previous_wakeup)
        members = {k for k, m in source.audiences.items() if m.value is True}
        return Merged(changes, target, list(source.external_ids), members, journeys=journeys)

    def _sync_definitions(
        self, store: ProfileStore, record: ProfileRecord, now_ms: int, left: list[str]
    ) -> list[Any]:
        """Bring the record to the current definitions; `left` gets the audiences it was a
        member of whose definitions are gone."""
        if record.defs_epoch == self.epoch:
            return []
        changes: list[Any] = []
        applied = self._applied(store, record)
        if self.engine is not None:
            removed = {k for k in applied if k not in self.versions}
            stale = {k for k, v in self.versions.items() if applied.get(k) != v}
            if removed:
                for k in sorted(removed):  # memberships are still on the record here
                    m = record.audiences.get(k)
                    if m is not None and m.value is True:
                        left.append(k)
                self.engine.drop(record, removed)
            if stale:
                start = max(0, now_ms - self.settings.history_ms)
                history = store.history(record.profile_id, start)
                changes = self.engine.recompute(record, stale, history, now_ms)
        self._stamp(store, record)
        return changes

    @staticmethod
    def _applied(store: ProfileStore, record: ProfileRecord) -> dict[str, int]:
        """The definition versions the record's state reflects: the map it carries itself
        (stored before the fingerprint table), else what its fingerprint stands for ({}:
        none — a record the engine never evaluated: every definition is evaluated over its
        history)."""
        if record.def_versions or not record.defs_epoch:
            return record.def_versions
        versions = store.epoch_versions(record.defs_epoch)
        if versions is None:  # (every write of a fingerprint keeps it: not expected)
            log.warning(
                "profile %s: definitions fingerprint %s unknown in this partition; "
                "evaluating every definition again",
                record.profile_id,
                record.defs_epoch,
            )
            return {}
        return versions

    def _is_duplicate(self, store: ProfileStore, event: ProfileEvent, now_ms: int) -> bool:
        """messageId dedup per profile over a sliding window (Segment: at least 24 h)."""
        horizon = now_ms - self.settings.dedup_ms
        pid = event.profile_id
        seen = store.seen_at(pid, event.message_id)
        if seen is not None and seen >= horizon:
            return True
        # Expired entries are swept in bulk once the oldest is a quarter-window overdue
        # (`seen_at` above never counts them): a scan now and then, not one per event.
        store.forget_seen_before(pid, horizon, slack_ms=self.settings.dedup_ms // 4)
        store.remember(pid, event.message_id, now_ms, seen)
        return False


def _apply_traits(record: ProfileRecord, event: ProfileEvent) -> None:
    """Last value by event time wins; `null` removes (kept as a tombstone for ordering)."""
    for key, value in event.traits.items():
        current = record.traits.get(key)
        if current is None or event.timestamp >= current.ts:
            record.traits[key] = TraitValue(value, event.timestamp, event.message_id)


def _apply_external_ids(record: ProfileRecord, event: ProfileEvent) -> list[ExternalId]:
    """Adds the event's identifiers the profile does not have yet; returns those."""
    added: list[ExternalId] = []
    for id_type, value, collection in extract_external_ids(event):
        if not record.has_external_id(id_type, value):
            x = ExternalId(
                type=id_type,
                id=value,
                collection=collection,
                created_at=event.received_at,
                first_message_id=event.message_id,
                source_id=event.source_id or "",
            )
            record.external_ids.append(x)
            added.append(x)
    return added


def _apply_metadata(record: ProfileRecord, event: ProfileEvent, created: bool) -> None:
    md = record.metadata
    if created:
        md.created_at = event.received_at
        md.first_message_id = event.message_id
        md.first_source_id = event.source_id or ""
    md.updated_at = max(md.updated_at, event.received_at)
    md.last_message_id = event.message_id
    if event.source_id:
        md.last_source_id = event.source_id
    md.event_count += 1


def _merge_metadata(target: ProfileRecord, source: ProfileRecord) -> None:
    t, s = target.metadata, source.metadata
    if s.created_at and (not t.created_at or s.created_at < t.created_at):
        t.created_at, t.first_message_id = s.created_at, s.first_message_id
    if s.updated_at > t.updated_at:
        t.updated_at, t.last_message_id = s.updated_at, s.last_message_id
    t.event_count += s.event_count
