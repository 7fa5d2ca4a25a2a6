"""The profiles stage: a batch of one partition's records applied in one transaction.

`ProfileStage.apply(tx, records)` is the whole of what a worker does with the records of
`profile-events` — and exactly what `replay` does with a file of events — with no Kafka
types: records in, a `StageResult` out (output records, changes, audience-size moves). The
worker wraps it in a checkpoint (`state.checkpoint`); replay commits it to memory.

Per batch, in order:
1. Backfill: if the definitions changed, one bounded chunk of the partition's profiles is
   brought to the current definitions (evaluated over their history); progress is part of
   the transaction, so a failed batch leaves it where it was.
2. Records: each advances the partition clock (its timestamp) and is either a clock tick
   (every due wake-up fires, each at its own instant) or a profile event (dedup, history,
   traits, ids, engine). Records at or below the partition's applied source offset are
   skipped: their effects are already in state.
3. A record that cannot be processed has its effects rolled back and goes to the
   dead-letter topic (`processing_failed`); the rest of the batch goes on. A storage
   error is not the record's fault: it fails the whole batch, dead-letters nothing.
4. Changes that cancel out within one instant are dropped: a profile's change of a
   definition followed in the same batch by one back to the previous value at the same
   `at` (an event exactly on a window boundary, a funnel child on its deadline, two events
   sharing a timestamp) sends nothing; the value simply stays.
5. Audience sizes move by the batch's remaining entries and exits, and journey counts by
   its journey outputs, in the same transaction.

Journeys (`journeys.runner`) run inside the profile processor, on the changes the engine
made for the same input, so their outputs come out right after those changes' records;
their records (`outputs.journey_records`) are never netted: an instance that entered
stays entered.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engage_stream import metrics
from engage_stream.broadcasts.sending import BroadcastSender, Progress
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.engine.changes import Change
from engage_stream.engine.engine import Engine
from engage_stream.engine.native import NativeEngine, make_engine
from engage_stream.events import ProfileEvent
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.ingest.validate import Reason
from engage_stream.journeys import counts as journey_counts
from engage_stream.journeys.machine import JourneyOutput
from engage_stream.journeys.runner import JourneyRunner
from engage_stream.outputs.builder import RecordBuilder
from engage_stream.outputs.journey_records import journey_records
from engage_stream.profiles import accounts, control, sizes
from engage_stream.profiles.processor import ProfileProcessor, definitions_epoch
from engage_stream.profiles.record import ACCOUNT_PREFIX, ProfileRecord, is_account
from engage_stream.profiles.store import ProfileStore, RecordCache
from engage_stream.records import OutgoingRecord, SourceRecord
from engage_stream.state.keys import REDIRECT
from engage_stream.state.partition_store import StorageError
from engage_stream.state.transaction import Sweep, Transaction

log = logging.getLogger(__name__)

TICK_KEY = b"\x00tick"  # the key of a clock tick on profile-events (no value)
PROCESSING_FAILED = Reason.PROCESSING_FAILED  # dead-letter reason of the profiles stage


@dataclass(frozen=True)
class Engines:
    """A catalog's engines: one for users (with the hidden audiences account audiences
    read), one for accounts (`profiles.accounts`)."""

    split: accounts.Split
    users: Engine | NativeEngine
    accounts: Engine | NativeEngine
    user_versions: dict[str, int]
    account_versions: dict[str, int]


def build_engine(catalog: Catalog, settings: Settings) -> Engines:
    """The engines for a catalog's active definitions (raises if one rejects them)."""
    parts = accounts.split(catalog)
    versions = catalog.versions({d.key for d in catalog.active()})
    user_versions = parts.versions(versions, users=True)
    account_versions = parts.versions(versions, users=False)
    created = catalog.created_at()
    applied = {**created, **{k: created.get(parent, 0) for k, (parent, _) in parts.flags.items()}}

    def engine(definitions: list[Any], versions: dict[str, int]) -> Engine | NativeEngine:
        return make_engine(
            definitions, versions=versions, applied_at=applied, settings=settings.engine_settings()
        )

    return Engines(
        parts,
        engine(parts.users, user_versions),
        engine(parts.accounts, account_versions),
        user_versions,
        account_versions,
    )


@dataclass(slots=True)
class _Slot:
    """Output records in batch order; `change` is what caused them, if a change did."""

    change: Change | None
    records: list[OutgoingRecord]


@dataclass
class StageResult:
    outputs: list[OutgoingRecord] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    size_moves: dict[str, int] = field(default_factory=dict)
    processed: int = 0  # events applied (users' events: each input event once)
    # what accounts were given of them: forwarded group calls and copies of the events
    # account traits read (`_forward_to_accounts`), applied to the accounts
    account_events: int = 0
    duplicates: int = 0  # events dropped by messageId
    skipped: int = 0  # records already in state (recovered or re-delivered)
    failed: int = 0  # records dead-lettered
    timers_fired: int = 0  # changes fired by clock ticks
    backfilled: int = 0  # profiles the backfill chunk visited
    forwarded: int = 0  # events for a merged-away profile, sent on to its survivor
    cancelled: int = 0  # changes dropped because another undid them at the same instant
    journeys: list[JourneyOutput] = field(default_factory=list)  # in batch order
    broadcasts: list[Progress] = field(default_factory=list)  # progress changed by the batch
    broadcast_requests: dict[str, int] = field(default_factory=dict)  # broadcast -> sent
    lags_s: list[float] = field(default_factory=list, repr=False)  # event time → applied
    _slots: list[_Slot] = field(default_factory=list, repr=False)

    def emit(self, changes: list[Change], records: list[list[OutgoingRecord]]) -> None:
        for ch, recs in zip(changes, records, strict=True):
            self._slots.append(_Slot(ch, recs))

    def add(self, records: list[OutgoingRecord]) -> None:
        if records:
            self._slots.append(_Slot(None, records))

    def finish(self) -> None:
        """Net out same-instant reversals; the changes and records that remain."""
        last: dict[tuple[str, str], int] = {}
        slots = self._slots
        for i, slot in enumerate(slots):
            ch = slot.change
            if ch is None:
                continue
            k = (ch.profile_id, ch.key)
            j = last.get(k)
            if j is not None:
                before = slots[j].change
                if before is not None and _reverts(before, ch):
                    slots[j] = _Slot(None, [])
                    slots[i] = _Slot(None, [])
                    del last[k]
                    self.cancelled += 2
                    continue
            last[k] = i
        self.changes = [s.change for s in slots if s.change is not None]
        self.outputs = [r for s in slots for r in s.records]
        self._slots = []


def _reverts(before: Change, after: Change) -> bool:
    """`after` takes the value back to what it was before `before`, at the same instant
    (for an audience, never having been a member and having exited are the same)."""
    if before.at != after.at or before.version != after.version:
        return False
    if after.kind == "audience":
        return (after.value is True) == (before.previous is True)
    return after.value == before.previous


class ProfileStage:
    # every cache hit checked against a decode of its bytes (the test suite turns it on)
    verify_record_cache = False

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        metrics.labelled(metrics.processing_errors, "profiles")  # at 0 for rate()
        for result in ("hit", "miss"):
            metrics.labelled(metrics.record_cache_lookups, result)
        self.settings = settings
        self.processor = ProfileProcessor(None, settings.processor_settings())
        self.accounts = ProfileProcessor(None, settings.processor_settings(), accounts=True)
        self._account_events: set[str] = set()
        self.catalog = Catalog()
        self.builder = RecordBuilder.empty(settings)
        self.broadcasts = BroadcastSender(self.catalog.broadcasts, settings)
        self._backfill_keys: set[str] = set()
        self._destinations: dict[str, tuple[str, ...]] = {}
        # journey key -> [version, status]: what every profile must have been shown
        self._journeys: dict[str, list[Any]] = {}
        self._epoch = self.processor.epoch
        self._redirects = True  # (per batch, `apply`: whether the partition holds any)
        # decoded profiles per partition store: they live as long as the store is open here
        # (a revoked and re-assigned partition opens a new one and starts empty)
        self._caches: weakref.WeakKeyDictionary[Any, RecordCache] = weakref.WeakKeyDictionary()
        if catalog is not None:
            self.use(catalog)

    @property
    def epoch(self) -> str:
        """What a partition's profiles are brought up to: the definitions' versions and
        where their values go (a destination added to a definition is a new epoch too)."""
        return self._epoch

    def use(self, catalog: Catalog, engines: Engines | None = None) -> None:
        """Evaluate this catalog from the next batch on: every partition backfills the added
        and edited definitions over its profiles' history. `engines`: built for it already
        (`build_engine`); raises (and keeps the current set) if an engine rejects it."""
        engines = engines or build_engine(catalog, self.settings)
        keys = {d.key for d in catalog.active()}
        versions = catalog.versions(keys)
        old = {**self.processor.versions, **self.accounts.versions}
        self.processor.set_engine(engines.users, engines.user_versions)
        self.accounts.set_engine(engines.accounts, engines.account_versions)
        self.accounts.flags = engines.split.flags
        self._account_events = engines.split.account_events
        self.processor.journeys = JourneyRunner(catalog.journeys) if catalog.journeys else None
        self._journeys = {e.key: [e.version, e.status] for e in catalog.journeys}
        self.broadcasts = BroadcastSender(catalog.broadcasts, self.settings)
        self.catalog = catalog
        self.builder = RecordBuilder(catalog, self.settings)
        self._backfill_keys = {k for k, v in versions.items() if old.get(k) != v}
        self._destinations = self.builder.destinations()
        self._epoch = definitions_epoch(
            {
                **engines.user_versions,
                **{f"accounts:{k}": v for k, v in engines.account_versions.items()},
                **{f"{k}>{','.join(d)}": 0 for k, d in self._destinations.items()},
                **catalog.journeys.epoch_parts(),
            }
        )

    def computing(self, sweeps: Iterable[Sweep]) -> set[str]:
        """Definition keys whose backfill has not finished on every given partition."""
        if all(s.epoch == self.epoch and s.done for s in sweeps):
            self._backfill_keys.clear()
        return set(self._backfill_keys)

    def apply(self, tx: Transaction, records: Sequence[SourceRecord]) -> StageResult:
        """One partition's records in `tx` (nothing is stored: the caller commits `tx`)."""
        out = StageResult()
        store = ProfileStore(tx, tx.wakeup_floor, self._cache(tx))
        left: list[str] = []
        # a profile merged away leaves a redirect; a partition without one (most: merges are
        # rare) needs no lookup per event (`_control` sets it when the batch writes one)
        self._redirects = tx.any_under(REDIRECT)
        if not (tx.sweep.epoch == self.epoch and tx.sweep.done):
            self._backfill(tx, store, out, left, records[0].partition if records else -1)
        dead_letter = self.settings.topics.dead_letter
        wall = time.time()
        for rec in records:
            if rec.offset <= tx.source_offset:
                out.skipped += 1
                continue
            tx.clock = max(tx.clock, rec.timestamp)
            tx.source_offset = rec.offset
            n_slots, n_left, n_journeys = len(out._slots), len(left), len(out.journeys)
            tx.savepoint()
            try:
                if rec.key == TICK_KEY:
                    self._tick(tx, store, out, left, rec.partition)
                elif rec.value is not None and rec.value[:1] == b"\x00":
                    self._control(tx, store, rec.value, out, left)
                else:
                    self._event(tx, store, rec, out, left, wall)
            except StorageError:
                raise  # the disk, not the record: the batch fails whole
            except Exception as exc:
                # Data the stage cannot handle must not stop the stream (DESIGN §9): this
                # record's effects are undone, it goes to the dead-letter topic, the batch
                # goes on.
                tx.rollback()
                store.forget_cached()
                del out._slots[n_slots:], left[n_left:], out.journeys[n_journeys:]
                detail = f"{type(exc).__name__}: {exc}"
                log.error(
                    "partition %d offset %d: processing failed, dead-lettered: %s",
                    rec.partition,
                    rec.offset,
                    detail[:1000],
                    exc_info=exc,
                )
                dl = DeadLetter.of(rec, PROCESSING_FAILED, detail)
                out.add([dl.record(dead_letter, rec.key, rec.value)])
                out.failed += 1
            else:
                tx.release()
        # The audience sizes: an explicit step over everything the batch changed.
        out.finish()
        counted: dict[tuple[str, str], int] = {}
        for ch in out.changes:
            counted[ch.kind, ch.key] = counted.get((ch.kind, ch.key), 0) + 1
        for (kind, key), n in counted.items():
            metrics.labelled(metrics.changes_emitted, kind, key).inc(n)
        metrics.observe_many(metrics.processing_lag, out.lags_s)
        out.size_moves = sizes.deltas(out.changes, left)
        sizes.apply(tx, out.size_moves)
        if out.journeys:
            journey_counts.apply(tx, journey_counts.deltas(out.journeys))
        tx.wakeup_floor = store.wakeup_floor
        cache = store.cache
        if cache is not None and records:
            metrics.labelled(metrics.record_cache_lookups, "hit").inc(cache.hits)
            metrics.labelled(metrics.record_cache_lookups, "miss").inc(cache.misses)
            cache.hits = cache.misses = 0
            metrics.labelled(metrics.record_cache_bytes, str(records[0].partition)).set(
                cache.size_bytes
            )
        return out

    def _cache(self, tx: Transaction) -> RecordCache | None:
        capacity = int(self.settings.record_cache_mb * 2**20)
        if capacity <= 0:
            return None
        cache = self._caches.get(tx.store)
        if cache is None:
            cache = RecordCache(capacity, self.verify_record_cache)
            self._caches[tx.store] = cache
        return cache

    def _journeyed(self, out: StageResult, outputs: list[JourneyOutput]) -> None:
        if outputs:
            out.journeys.extend(outputs)
            out.add(journey_records(outputs, self.settings))

    def _tick(
        self,
        tx: Transaction,
        store: ProfileStore,
        out: StageResult,
        left: list[str],
        partition: int,
    ) -> None:
        started = time.perf_counter()
        for processor in (self.processor, self.accounts):
            fired = processor.advance(store, tx.clock, self._on_profile_error)
            left.extend(fired.left)
            if fired.changes:
                out.timers_fired += len(fired.changes)
                out.emit(fired.changes, self.builder.changes(fired.changes, store))
                self._to_accounts(store, fired.changes, out, f"timer:{tx.clock}")
            self._journeyed(out, fired.journeys)
        if self.broadcasts:  # after the timers: a send sees the memberships as of now
            sent = self.broadcasts.on_tick(tx, store, tx.clock, partition)
            out.add(sent.outputs)
            out.broadcasts.extend(sent.progress)
            for key, n in sent.requests.items():
                out.broadcast_requests[key] = out.broadcast_requests.get(key, 0) + n
        metrics.timer_sweep_seconds.observe(time.perf_counter() - started)

    def _event(
        self,
        tx: Transaction,
        store: ProfileStore,
        rec: SourceRecord,
        out: StageResult,
        left: list[str],
        wall: float,
    ) -> None:
        if rec.value is None:
            raise ValueError("a profile event without a value")
        event = ProfileEvent.from_json(rec.value)
        moved = tx.get(REDIRECT + event.profile_id.encode()) if self._redirects else None
        if moved is not None:  # merged away: the event belongs to the survivor now
            event.profile_id = moved.decode()
            out.add([self._profile_event(event.profile_id, event.to_json())])
            out.forwarded += 1
            return
        if is_account(event.profile_id):
            outcome = self.accounts.apply_account(store, event, tx.clock)
            out.duplicates += outcome.duplicate
            out.account_events += not outcome.duplicate
            left.extend(outcome.left)
            if outcome.changes:
                out.emit(
                    outcome.changes, self.builder.changes(outcome.changes, store, outcome.record)
                )
            return
        outcome = self.processor.apply(store, event, tx.clock, rec.value)
        if not outcome.duplicate and outcome.record is not None:
            self._forward_to_accounts(event, outcome, out)
        if outcome.duplicate:
            out.duplicates += 1
            return
        out.processed += 1
        out.lags_s.append(max(0.0, wall - event.timestamp / 1000))
        left.extend(outcome.left)
        if outcome.changes:
            out.emit(outcome.changes, self.builder.changes(outcome.changes, store, outcome.record))
        self._journeyed(out, outcome.journeys)
        if outcome.added_ids:
            out.add(self.builder.resync(event, outcome, tx.clock))

    def _forward_to_accounts(self, event: ProfileEvent, outcome: Any, out: StageResult) -> None:
        """What a user's accounts need of its event: a group call (the account's traits
        and the link, with the user's hidden memberships), and the events account computed
        traits read; and the hidden memberships whenever they moved."""
        record = outcome.record
        joined = event.group_id if event.type == "group" else None
        if joined:
            account = event.model_copy(
                update={"profile_id": ACCOUNT_PREFIX + joined, "linked_profile": record.profile_id}
            )
            out.add([self._profile_event(account.profile_id, account.to_json())])
        if event.event is not None and event.event in self._account_events:
            # `$user`: which user it was, so an account trait can count distinct users
            props = {**event.properties, accounts.USER_PROPERTY: record.profile_id}
            for gid in _accounts_of(record):
                copy = event.model_copy(
                    update={
                        "profile_id": ACCOUNT_PREFIX + gid,
                        "linked_profile": record.profile_id,
                        "properties": props,
                    }
                )
                out.add([self._profile_event(copy.profile_id, copy.to_json())])
        moved = any(accounts.is_hidden(ch.key) for ch in outcome.changes)
        if (moved or joined) and self.accounts.flags:
            only = None if moved else {joined}
            self._send_flags(record, out, event.timestamp, "event:" + event.message_id, only)

    def _to_accounts(
        self, store: ProfileStore, changes: list[Change], out: StageResult, cause: str
    ) -> None:
        """Hidden memberships moved by time or a backfill: tell the users' accounts."""
        if not self.accounts.flags:
            return
        for pid in sorted({ch.profile_id for ch in changes if accounts.is_hidden(ch.key)}):
            record = store.get(pid)
            if record is not None:
                at = max(ch.at for ch in changes if ch.profile_id == pid)
                self._send_flags(record, out, at, cause, None)

    def _send_flags(
        self,
        record: ProfileRecord,
        out: StageResult,
        at: int,
        cause: str,
        only: set[str] | None,
        replaces: list[str] | None = None,
    ) -> None:
        hidden = {k: m for k, m in record.audiences.items() if accounts.is_hidden(k)}
        flags = {k: m.value is True for k, m in hidden.items()}
        times = {k: m.ts for k, m in hidden.items()}
        for gid in _accounts_of(record):
            if only is not None and gid not in only:
                continue
            msg = control.AccountFlags(
                account=ACCOUNT_PREFIX + gid,
                user=record.profile_id,
                flags=flags,
                times=times,
                at=at,
                cause=cause,
                replaces=replaces or [],
            )
            out.add([self._profile_event(msg.account, msg.to_value())])

    def _control(
        self,
        tx: Transaction,
        store: ProfileStore,
        value: bytes,
        out: StageResult,
        left: list[str],
    ) -> None:
        """A merge's two halves (`profiles.control`): on the merged-away profile's partition
        it leaves (state produced to the survivor, a redirect left behind), on the
        survivor's it is taken in and everything evaluated again."""
        record = control.parse(value)
        if isinstance(record, control.MergeRequest):
            key = REDIRECT + record.source.encode()
            if tx.get(key) is not None:
                return  # merged already (a re-delivered request)
            transfer, gone = self.processor.merge_out(store, record)
            left.extend(gone)
            tx.put(key, record.target.encode())
            self._redirects = True
            if transfer is not None:
                out.add([self._profile_event(record.target, transfer.to_value())])
            metrics.merges_applied.labels("out").inc()
        elif isinstance(record, control.ProfileTransfer):
            moved = tx.get(REDIRECT + record.target.encode())
            if moved is not None:  # the survivor was merged on meanwhile: follow it
                record.target = moved.decode()
                out.add([self._profile_event(record.target, record.to_value())])
                return
            merged = self.processor.merge_in(store, record, tx.clock)
            if merged.duplicate:
                return
            out.emit(merged.changes, self.builder.changes(merged.changes, store, merged.record))
            self._journeyed(out, merged.journeys)
            out.add(self.builder.transfer(merged, record.source, min(record.at, tx.clock)))
            if merged.record is not None and self.accounts.flags:
                self._send_flags(
                    merged.record,
                    out,
                    min(record.at, tx.clock),
                    f"merge:{record.source}",
                    None,
                    replaces=[record.source],
                )
            metrics.merges_applied.labels("in").inc()
        elif isinstance(record, control.AccountFlags):
            outcome = self.accounts.account_flags(store, record, tx.clock)
            left.extend(outcome.left)
            if outcome.changes:
                out.emit(
                    outcome.changes, self.builder.changes(outcome.changes, store, outcome.record)
                )
        else:
            raise ValueError("an unknown control record on profile-events")

    def _profile_event(self, profile_id: str, value: bytes) -> OutgoingRecord:
        return OutgoingRecord(self.settings.topics.profile_events, profile_id.encode(), value)

    def _backfill(
        self,
        tx: Transaction,
        store: ProfileStore,
        out: StageResult,
        left: list[str],
        partition: int,
    ) -> None:
        """One bounded chunk of the backfill after a definitions change (in the batch's
        transaction, so its outputs and state commit together)."""
        if tx.sweep.epoch != self.epoch:  # a new set of definitions reaches the partition
            journey_counts.drop_except(tx, set(self._journeys))
        sweep = (
            tx.sweep
            if tx.sweep.epoch == self.epoch
            else Sweep(self.epoch, sent=tx.sweep.sent, journeys=tx.sweep.journeys)
        )
        # a version not yet shown to every profile (historical entry); any journey edit
        # (status, deletion) visits every profile too, so archived instances end now
        shown = sweep.journeys
        publish = {k for k, (v, _) in self._journeys.items() if (shown.get(k) or [None])[0] != v}
        result = self.processor.sweep(
            store,
            tx.clock,
            sweep.cursor,
            self.settings.backfill_chunk,
            self._on_profile_error,
            publish,
            revisit=dict(shown) != self._journeys,
        )
        # the accounts among the same profile ids (both visit the same ids, in key order)
        of_accounts = self.accounts.sweep(
            store, tx.clock, sweep.cursor, self.settings.backfill_chunk, self._on_profile_error
        )
        result.changes.extend(of_accounts.changes)
        result.left.extend(of_accounts.left)
        added = {
            k: new
            for k, dests in self._destinations.items()
            if k in sweep.sent and (new := set(dests) - set(sweep.sent[k]))
        }
        if added:  # the same profiles again: current values to the added destinations
            for pid in store.profile_ids(after=sweep.cursor):
                if result.cursor is not None and pid > result.cursor:
                    break
                profile = store.get(pid)
                if profile is not None:
                    out.add(self.builder.backfill_destinations(profile, added))
        out.backfilled = result.profiles
        metrics.backfill_profiles.inc(result.profiles)
        left.extend(result.left)
        if result.changes:
            out.emit(result.changes, self.builder.changes(result.changes, store))
            self._to_accounts(store, result.changes, out, f"definition:{self.epoch}")
        self._journeyed(out, result.journeys)
        if result.cursor is None:
            tx.sweep = Sweep(
                self.epoch,
                None,
                done=True,
                sent=dict(self._destinations),
                journeys=dict(self._journeys),
            )
            metrics.backfill_pending.labels(str(partition)).set(0)
            log.info("partition %d: definitions %s applied to every profile", partition, self.epoch)
        else:
            tx.sweep = Sweep(
                self.epoch, result.cursor, done=False, sent=sweep.sent, journeys=sweep.journeys
            )
            metrics.backfill_pending.labels(str(partition)).set(1)
            log.info(
                "partition %d: backfill in progress, at profile %s (%d changes in this chunk)",
                partition,
                result.cursor,
                len(result.changes),
            )

    def _on_profile_error(self, profile_id: str, exc: Exception) -> None:
        """A due (or backfilled) profile whose evaluation fails is left as it was — nothing
        of it was written — and retried when next due or touched; the others go on."""
        if isinstance(exc, StorageError):
            raise exc
        metrics.labelled(metrics.processing_errors, "profiles").inc()
        log.error("profile %s: evaluation failed: %s", profile_id, exc, exc_info=exc)


def _accounts_of(record: ProfileRecord) -> list[str]:
    return [x.id for x in record.external_ids if x.collection == "accounts"]
