"""One worker process: the two batched stages, their shared producer and partition state.

Built before Faust starts and started by the app's tasks (`stream.app`): the ingest stage
(input topics → `profile-events`) and the profiles stage (`profile-events` → outputs), each a
`BatchLoop`, plus the definitions watcher that swaps the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Coroutine, Iterable
from typing import Any

from aiokafka.errors import KafkaError

from engage_stream import metrics
from engage_stream.api import audiences as audience_api
from engage_stream.broadcasts.catalog import BroadcastCatalog
from engage_stream.broadcasts.recipients import Preview, Recipients
from engage_stream.broadcasts.sending import Progress, read_progress
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.identity.replica import IdentityReplica
from engage_stream.identity.rules import IdentityRules
from engage_stream.identity.stage import IdentityStage
from engage_stream.journeys import counts as journey_counts
from engage_stream.journeys.catalog import JourneyCatalog
from engage_stream.journeys.machine import InstanceRecord, JourneyOutput, MessageSkipped
from engage_stream.profiles import sizes as audience_sizes
from engage_stream.profiles.accounts import is_hidden
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.retention import lookback_problem
from engage_stream.profiles.stage import (
    PROCESSING_FAILED,
    TICK_KEY,
    ProfileStage,
    StageResult,
    build_engine,
)
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.checkpoint import Committable
from engage_stream.state.transaction import Sweep, Transaction
from engage_stream.stream import compacted, definitions_topic, fault_injection
from engage_stream.stream.batch_consumer import BatchLoop
from engage_stream.stream.ingest_stage import IngestStage
from engage_stream.stream.originals import Originals
from engage_stream.stream.partitions import READY, PartitionManager
from engage_stream.stream.producing import OutgoingRecord, Sender
from engage_stream.stream.routing import OwnerDirectory, client_id_for
from engage_stream.stream.stage_batches import StageBatches

log = logging.getLogger(__name__)


class Worker:
    """Everything one worker process runs; built before Faust starts, started by its tasks."""

    def __init__(self, settings: Settings, roles: set[str]) -> None:
        self.settings = settings
        self.roles = roles
        self.url = f"http://{settings.web_host}:{settings.web_port}"
        self.producer = Sender(settings.broker, settings.producer)
        self.partitions = PartitionManager(settings)
        self.stage = ProfileStage(settings)
        ingest_offsets, identity_offsets, profile_offsets = (
            Committable(),
            Committable(),
            Committable(),
        )
        originals = Originals(settings.broker, settings.topics.dead_letter)
        self.batches = StageBatches(
            self.stage,
            self.partitions,
            self.producer,
            profile_offsets,
            count=_count_profiles,
            originals=originals,
            faults=fault_injection.from_env(),  # the chaos suite's kills inside a checkpoint
        )
        self.definitions_ready = self.batches.ready
        # identity: the graph's one writer (whoever is assigned its single partition), and
        # every worker's replica of its id -> profile map, which ingest routes by
        self.identity_rules = IdentityRules.from_env()
        self.replica = IdentityReplica(self.identity_rules)
        self.replica_ready = asyncio.Event()
        self.identity_partitions = PartitionManager(
            settings,
            source_topic=settings.topics.identity_requests,
            changelog_topic=settings.identity_changelog_topic,
            group_id=f"{settings.app_id}-identity",
            name="identity",
        )
        self.identity_batches = StageBatches(
            IdentityStage(settings, self.identity_rules),
            self.identity_partitions,
            self.producer,
            identity_offsets,
            originals=originals,
        )
        self.identity_batches.ready.set()
        self.catalog = Catalog()
        self.definition_records: dict[bytes, definitions_topic.DefinitionRecord] = {}
        self.active: set[str] = set()
        self.owners = OwnerDirectory(
            settings.broker, settings.app_id, settings.topics.profile_events
        )
        common = dict(
            bootstrap=settings.broker,
            client_id=client_id_for(self.url),
            commit_interval_s=settings.commit_interval_s,
            max_records=settings.batch_size,
            wait_s=settings.batch_within_s,
            consumer=settings.consumer,
            retry=settings.retry,
            group_instance_id=settings.group_instance_id,
        )
        self.ingest = BatchLoop(
            group_id=f"{settings.app_id}-ingest",
            topics=settings.topics.inputs(),
            handler=IngestStage(
                settings, self.producer, ingest_offsets, self.replica, self.replica_ready
            ).handle,
            offsets=ingest_offsets,
            stage="ingest",
            **common,
        )
        self.identity = BatchLoop(
            group_id=f"{settings.app_id}-identity",
            topics=[settings.topics.identity_requests],
            handler=self.identity_batches.handle,
            offsets=identity_offsets,
            on_assigned=lambda tps: self.identity_partitions.mark_rebalanced(
                tp.partition for tp in tps
            ),
            on_revoked=lambda tps: self.identity_partitions.mark_rebalanced(
                self.identity.owned(settings.topics.identity_requests)
                - {tp.partition for tp in tps}
            ),
            stage="identity",
            **common,
        )
        self.profiles = BatchLoop(
            group_id=settings.app_id,
            topics=[settings.topics.profile_events],
            handler=self.batches.handle,
            offsets=profile_offsets,
            on_assigned=self._assigned,
            on_revoked=self._revoked,
            stage="profiles",
            **common,
        )

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        """What this worker runs, by role: the identity replica always (ingest routes by it,
        the Profile API resolves identifiers with it); ingest with the identity stage; the
        definitions and the profiles stage."""
        out: list[Coroutine[Any, Any, None]] = [
            compacted.follow(
                self.settings, self.settings.topics.identity, self.replica.apply, self.replica_ready
            )
        ]
        if "ingest" in self.roles:
            out += [self.ingest.run(), self.identity.run()]
        if "profiles" in self.roles:
            out.append(
                definitions_topic.watch(self.settings, self.on_definitions, self.definitions_ready)
            )
            out.append(self.profiles.run())
        return out

    def close(self) -> None:
        self.partitions.close()
        self.identity_partitions.close()

    def owned(self) -> set[int]:
        return self.profiles.owned(self.settings.topics.profile_events)

    def _assigned(self, assigned: set[Any]) -> None:
        self.partitions.mark_rebalanced(tp.partition for tp in assigned)

    def _revoked(self, revoked: set[Any]) -> None:
        self.partitions.mark_rebalanced(self.owned() - {tp.partition for tp in revoked})

    async def on_definitions(
        self, current: dict[bytes, definitions_topic.DefinitionRecord]
    ) -> None:
        """A new set of definitions from the topic: build an engine for it and swap it in.

        A set the engine rejects keeps the previous engine running and marks the new
        definitions Failed, so one bad apply never stops evaluation."""
        from engage_stream.stream.topics import ensure_topics

        self.definition_records = current  # what an API edit is planned against
        catalog = Catalog.from_records(
            (r.key, r.version, r.created_at or r.applied_at, r.body, r.evaluated_version)
            for r in current.values()
            if r.kind in ("audience", "computed_trait")
        )
        catalog.journeys = JourneyCatalog.from_records(
            (r.key, r.evaluated_version or r.version, r.applied_at, r.body, r.history)
            for r in current.values()
            if r.kind == "journey"
        )
        for key, why in catalog.journeys.failed.items():
            log.error("journey %s not run: %s", key, why)
        catalog.broadcasts = BroadcastCatalog.from_records(
            (r.key, r.evaluated_version or r.version, r.applied_at, r.body)
            for r in current.values()
            if r.kind == "broadcast"
        )
        for entry in catalog:
            why = lookback_problem(entry.definition, self.settings)
            if why is not None:  # applied where more history is kept: never undercount here
                log.error("definition %s not evaluated: %s", entry.definition.key, why)
                catalog.failed[entry.definition.key] = why
        active = catalog.active()
        keys = {d.key for d in active}
        try:
            engine = build_engine(catalog, self.settings)
        except Exception as exc:  # never crash the worker on a definition
            log.error("definitions rejected by the engine, keeping the previous set: %s", exc)
            for k in keys - set(self.catalog.entries):
                catalog.failed[k] = f"rejected by the engine: {exc}"
            self.catalog = catalog
            return
        destinations = sorted({*catalog.destinations(), *catalog.journeys.destinations()})
        if destinations:
            await asyncio.get_running_loop().run_in_executor(
                None, ensure_topics, self.settings, destinations
            )
        self.catalog, self.active = catalog, keys
        self.stage.use(catalog, engine)
        self.definitions_ready.set()
        for kind in ("audience", "computed_trait"):
            metrics.definitions_active.labels(kind).set(sum(1 for d in active if d.kind == kind))
        live_journeys = sum(1 for e in catalog.journeys if e.status == "live")
        metrics.definitions_active.labels("journey").set(live_journeys)
        log.info(
            "definitions applied: %d active of %d, %d journey(s) live",
            len(keys),
            len(catalog.entries),
            live_journeys,
        )

    def ready(self) -> bool:
        """Definitions loaded and every owned partition recovered (profiles role)."""
        if "profiles" not in self.roles:
            return True
        status = self.partitions.status()
        return self.definitions_ready.is_set() and all(status.get(p) == READY for p in self.owned())

    def statuses(self) -> dict[str, str]:
        ready = self.ready()
        return dict(audience_api.statuses(self.catalog, self.active, self.computing(), ready))

    def computing(self) -> set[str]:
        """Definitions still being backfilled on a partition this worker owns."""
        return self.stage.computing(
            ps.sweep if (ps := self.partitions.open.get(p)) is not None else Sweep()
            for p in self.owned()
        )

    def local_sizes_by_partition(self) -> dict[int, dict[str, int]]:
        """Audience sizes in each owned partition (per partition: what a peer may answer
        for is checked partition by partition, `api.proxy`)."""
        out: dict[int, dict[str, int]] = {}
        for p in self.owned():
            ps = self.partitions.open.get(p)
            if ps is not None:
                # account audiences' per-user parts are internal
                sizes = audience_sizes.read(ps.store).items()
                out[p] = {k: n for k, n in sizes if not is_hidden(k)}
        return out

    def local_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for part in self.local_sizes_by_partition().values():
            for k, n in part.items():
                sizes[k] = sizes.get(k, 0) + n
        return sizes

    def local_journey_counts_by_partition(self) -> dict[int, journey_counts.Counts]:
        """Journey counts (`journeys.counts`) in each owned partition."""
        out: dict[int, journey_counts.Counts] = {}
        for p in self.owned():
            ps = self.partitions.open.get(p)
            if ps is not None:
                out[p] = journey_counts.read(ps.store)
        return out

    def local_journey_counts(self) -> journey_counts.Counts:
        """Journey counts (`journeys.counts`) summed over this worker's partitions."""
        out: journey_counts.Counts = {}
        for part in self.local_journey_counts_by_partition().values():
            journey_counts.add(out, part)
        return out

    def local_broadcast_progress(self) -> list[Progress]:
        """Every broadcast's progress on this worker's partitions."""
        out: list[Progress] = []
        for p in sorted(self.owned()):
            ps = self.partitions.open.get(p)
            if ps is not None:
                out.extend(read_progress(ps.store))
        return out

    async def local_broadcast_preview(self, key: str, sample: int) -> Preview:
        """Who would receive broadcast `key` now, in this worker's partitions."""
        entry = self.catalog.broadcasts.entries.get(key)
        if entry is None:
            return Preview()
        recipients = Recipients(entry, self.settings.space_id)
        out = Preview()
        for p in sorted(self.owned()):
            ps = await self.partitions.get(p)
            store = ProfileStore(Transaction(ps.store))
            out.add(
                Preview.of(
                    recipients.evaluate(store, max(ps.clock, int(time.time() * 1000))), sample
                )
            )
        return out

    async def local_members(self, key: str) -> list[ProfileRecord]:
        """Members of an audience — or profiles with a value of a computed trait — in the
        partitions this worker owns."""
        out = []
        for p in sorted(self.owned()):
            store = ProfileStore(Transaction((await self.partitions.get(p)).store))
            for pid in store.profile_ids():
                rec = store.get(pid)
                if rec is None:
                    continue
                if (
                    (m := rec.audiences.get(key)) is not None
                    and m.value is True
                    or (t := rec.computed_traits.get(key)) is not None
                    and t.value is not None
                ):
                    out.append(rec)
        return out

    def _export_metrics(self) -> None:
        for k, n in self.local_sizes().items():
            metrics.audience_members.labels(k).set(n)
        for k, status in self.statuses().items():
            e = self.catalog.entries.get(k)
            kind = e.definition.kind if e is not None else "unknown"
            for s in audience_api.STATUSES:
                metrics.definition_status.labels(k, kind, s).set(1 if s == status else 0)
        export_journey_gauges(self.catalog.journeys, self.local_journey_counts())
        queued: dict[tuple[str, ...], float] = {}
        sent: dict[tuple[str, ...], float] = {}
        for prog in self.local_broadcast_progress():
            queued[(prog.broadcast,)] = queued.get((prog.broadcast,), 0) + prog.total
            sent[(prog.broadcast,)] = sent.get((prog.broadcast,), 0) + prog.sent
        metrics.export(metrics.broadcast_recipients, queued)
        metrics.export(metrics.broadcast_sent, sent)

    async def tick(self) -> None:
        """Feed the wall clock into every owned partition so time-driven changes fire."""
        topic = self.settings.topics.profile_events
        try:
            await self.producer.send_many(
                [OutgoingRecord(topic, TICK_KEY, b"", None, p) for p in sorted(self.owned())]
            )
        except KafkaError as exc:
            # The broker, not the worker: a tick that could not be sent is skipped (the
            # next one carries a later time); raising here would crash the whole app.
            log.warning("clock tick not sent, the next one carries on: %r", exc)
        for p, ps in list(self.partitions.open.items()):
            metrics.state_keys.labels(str(p)).set(ps.store.estimated_keys())
            metrics.state_bytes.labels(str(p)).set(ps.store.disk_bytes())
        self._export_metrics()


def _count_profiles(partition: int, result: StageResult) -> None:
    """The profiles stage's counters, once its checkpoint is durable (a failed batch is
    applied again)."""
    metrics.events_processed.labels(str(partition)).inc(result.processed)
    metrics.account_events_processed.inc(result.account_events)
    metrics.duplicates_dropped.inc(result.duplicates)
    metrics.records_already_applied.inc(result.skipped)
    metrics.timers_fired.inc(result.timers_fired)
    if result.failed:
        metrics.labelled(metrics.dead_lettered, PROCESSING_FAILED).inc(result.failed)
    count_journeys(result.journeys)
    for key, n in result.broadcast_requests.items():
        metrics.broadcast_messages.labels(key).inc(n)
    for prog in result.broadcasts:
        if prog.sent == 0 and prog.phase != "cancelled":  # the snapshot was taken now
            for reason, n in prog.skipped.items():
                metrics.broadcast_skipped.labels(prog.broadcast, reason).inc(n)


def count_journeys(outputs: Iterable[JourneyOutput]) -> None:
    """The `engage_journey_*` counters of a batch's journey outputs (called with the other
    counters, once the batch is durable: a batch applied again is not counted twice)."""
    n: Counter[tuple[Any, tuple[str, ...]]] = Counter()
    for o in outputs:
        j = o.journey
        if o.type == "instance_entered":
            n[metrics.journey_entered, (j,)] += 1
        elif o.type == "instance_completed":
            n[metrics.journey_completed, (j,)] += 1
        elif o.type == "instance_exited" and isinstance(o, InstanceRecord):
            n[metrics.journey_exited, (j, o.reason)] += 1
        elif o.type == "entry_skipped" and isinstance(o, InstanceRecord):
            n[metrics.journey_entries_skipped, (j, o.reason)] += 1
        elif o.type == "step_entered":
            n[metrics.journey_steps, (j, o.step)] += 1
        elif o.type == "message_request":
            n[metrics.journey_messages, (j, o.step, "requested")] += 1
        elif isinstance(o, MessageSkipped):
            n[metrics.journey_messages, (j, o.step, f"skipped_{o.reason}")] += 1
    for (metric, labels), k in n.items():
        metrics.labelled(metric, *labels).inc(k)


def export_journey_gauges(journeys: JourneyCatalog, counts: journey_counts.Counts) -> None:
    """`engage_journey_in_step` / `_active` from the partitions' counts, for the journeys in
    force: every step of every version still known (0 when empty, so a dashboard sees the
    step drain rather than its series vanish). A deleted journey's series go: nothing moves
    its counts any more."""
    in_step: dict[tuple[str, ...], float] = {}
    active: dict[tuple[str, ...], float] = {}
    for entry in journeys:
        mine = counts.get(entry.key, {})
        active[(entry.key,)] = mine.get("active", 0)
        for defn in entry.versions().values():
            for step in defn.steps:
                in_step[entry.key, step.key] = 0
        for name, k in mine.items():
            if name.startswith("step:"):
                in_step[entry.key, name[5:]] = k
    metrics.export(metrics.journey_in_step, in_step)
    metrics.export(metrics.journey_active, active)
