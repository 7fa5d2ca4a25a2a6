"""Prometheus metrics, all named `engage_*`, observed in base units (seconds, records)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

_LAG_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    3600,
    86400,
    604800,
)
_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# a partition's recovery: milliseconds when nothing changed, a minute and more for a full
# rebuild of a large partition (42 s measured for 257 MB)
_RECOVERY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

events_consumed = Counter(
    "engage_events_consumed_total",
    "Valid Segment events accepted by ingest",
    ["type"],
    registry=REGISTRY,
)
dead_lettered = Counter(
    "engage_events_dead_lettered_total",
    "Input records sent to the dead-letter topic",
    ["reason"],
    registry=REGISTRY,
)
dlq_originals = Counter(
    "engage_dlq_originals_total",
    "Dead letters of a stage after ingest, by whether the original input bytes were read "
    "back (restored) or the validated copy kept (missing)",
    ["outcome"],
    registry=REGISTRY,
)
identity_resolutions = Counter(
    "engage_identity_resolutions_total",
    "Events the identity stage resolved (all), and how many created or merged profiles",
    ["outcome"],
    registry=REGISTRY,
)
identity_fast_path = Counter(
    "engage_identity_routed_total",
    "Events routed by ingest: straight to their profile (known ids) or to the identity stage",
    ["path"],
    registry=REGISTRY,
)
merges_applied = Counter(
    "engage_profile_merges_total",
    "Profiles merged into another on this worker's partitions (moved out / taken in)",
    ["side"],
    registry=REGISTRY,
)
batch_retries = Counter(
    "engage_batch_retries_total",
    "Batches applied again after their checkpoint failed on the broker or the disk",
    ["stage"],
    registry=REGISTRY,
)
processing_errors = Counter(
    "engage_processing_errors_total",
    "Profile evaluations that failed on their data and were set aside (see the log)",
    ["stage"],
    registry=REGISTRY,
)
duplicates_dropped = Counter(
    "engage_duplicates_dropped_total",
    "Events dropped as repeated messageIds within the window",
    registry=REGISTRY,
)
events_processed = Counter(
    "engage_events_processed_total",
    "Events applied to profile state (users' events; what accounts get of them is counted apart)",
    ["partition"],
    registry=REGISTRY,
)
account_events_processed = Counter(
    "engage_account_events_processed_total",
    "Group calls and users' events forwarded to accounts, applied to the accounts' state",
    registry=REGISTRY,
)
records_already_applied = Counter(
    "engage_records_already_applied_total",
    "Re-delivered internal records skipped because their effects are already in state",
    registry=REGISTRY,
)
processing_lag = Histogram(
    "engage_processing_lag_seconds",
    "Event time to processed (clock) in seconds",
    buckets=_LAG_BUCKETS,
    registry=REGISTRY,
)
checkpoint_seconds = Histogram(
    "engage_checkpoint_seconds",
    "Time to flush a batch's outputs and changelog and commit it locally",
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
batch_seconds = Histogram(
    "engage_batch_seconds",
    "Time a stage spends on one fetched batch, checkpoint included (latency adds up from it)",
    ["stage"],
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
gc_pause_seconds = Histogram(
    "engage_gc_pause_seconds",
    "Time the Python garbage collector stopped the worker (its event loop with it), per "
    "collection, by generation",
    ["generation"],
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
timer_sweep_seconds = Histogram(
    "engage_timer_sweep_seconds",
    "Time one clock tick spends firing the time-driven changes due in a partition",
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
consumer_lag = Gauge(
    "engage_consumer_lag_records",
    "Records on a consumed partition not yet processed: the broker's end offset (as of the "
    "last fetch) minus the next offset the stage will process",
    ["stage", "partition"],
    registry=REGISTRY,
)
batch_records = Histogram(
    "engage_batch_records",
    "Records per processed batch",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000),
    registry=REGISTRY,
)
outputs_produced = Counter(
    "engage_output_records_total",
    "Records produced to output topics",
    ["topic"],
    registry=REGISTRY,
)
changes_emitted = Counter(
    "engage_changes_total",
    "Audience membership and computed-trait changes",
    ["kind", "key"],
    registry=REGISTRY,
)
timers_fired = Counter(
    "engage_timers_fired_total",
    "Time-driven re-evaluations (window exits etc.)",
    registry=REGISTRY,
)
state_profiles = Gauge(
    "engage_state_profiles",
    "Profiles stored per partition on this worker",
    ["partition"],
    registry=REGISTRY,
)
state_keys = Gauge(
    "engage_state_keys",
    "Estimated RocksDB keys per partition (profiles, history, index)",
    ["partition"],
    registry=REGISTRY,
)
state_bytes = Gauge(
    "engage_state_bytes",
    "RocksDB size per partition (SST files + memtables)",
    ["partition"],
    registry=REGISTRY,
)
recovery_records = Counter(
    "engage_recovery_records_total",
    "Changelog records replayed into local state",
    ["outcome"],
    registry=REGISTRY,
)
partitions_recovering = Gauge(
    "engage_partitions_recovering",
    "Owned partitions whose state is still catching up with its changelog (reads and "
    "processing wait for them), by store (state, identity): a recovery that never ends "
    "shows here, where the recovery counters only move once it has",
    ["store"],
    registry=REGISTRY,
)
recovery_rebuilds = Counter(
    "engage_recovery_rebuilds_total",
    "Partitions whose local state held an unconfirmed batch while another worker had "
    "written their changelog since: rebuilt from the changelog (state.recovery.must_rebuild)",
    registry=REGISTRY,
)
recovery_seconds = Histogram(
    "engage_recovery_seconds",
    "Time to bring one partition's state up to date from the changelog",
    buckets=_RECOVERY_BUCKETS,
    registry=REGISTRY,
)
backfill_profiles = Counter(
    "engage_backfill_profiles_total",
    "Profiles re-evaluated after a definition change",
    registry=REGISTRY,
)
record_cache_lookups = Counter(
    "engage_record_cache_lookups_total",
    "Stored profiles read by the profiles stage, by whether the decoded copy kept since "
    "they were stored served (hit) or they were decoded (miss)",
    ["result"],
    registry=REGISTRY,
)
record_cache_bytes = Gauge(
    "engage_record_cache_bytes",
    "Stored size of the profiles a partition keeps decoded (ENGAGE_RECORD_CACHE_MB bounds it)",
    ["partition"],
    registry=REGISTRY,
)
backfill_pending = Gauge(
    "engage_backfill_pending",
    "1 while a partition is still re-evaluating profiles after a definition change",
    ["partition"],
    registry=REGISTRY,
)
definitions_active = Gauge(
    "engage_definitions",
    "Definitions currently applied",
    ["kind"],
    registry=REGISTRY,
)
api_requests = Counter(
    "engage_api_requests_total",
    "Profile API requests",
    ["endpoint", "status"],
    registry=REGISTRY,
)


audience_members = Gauge(
    "engage_audience_members",
    "Current members of an audience in the partitions this worker owns",
    ["audience"],
    registry=REGISTRY,
)
definition_status = Gauge(
    "engage_definition_status",
    "1 for the current compute status of each audience / computed trait "
    "(Preparing, Computing, Live, Disabled, Failed)",
    ["key", "kind", "status"],
    registry=REGISTRY,
)


journey_entered = Counter(
    "engage_journey_entered_total",
    "Journey instances started on this worker's partitions",
    ["journey"],
    registry=REGISTRY,
)
journey_completed = Counter(
    "engage_journey_completed_total",
    "Journey instances that reached the end of every path",
    ["journey"],
    registry=REGISTRY,
)
journey_exited = Counter(
    "engage_journey_exited_total",
    "Journey instances ended early, by reason (exit_step, exit_event, exit_after, max_age, "
    "archived)",
    ["journey", "reason"],
    registry=REGISTRY,
)
journey_entries_skipped = Counter(
    "engage_journey_entries_skipped_total",
    "Journey entries not made, by reason (max_instances, missing_identifier)",
    ["journey", "reason"],
    registry=REGISTRY,
)
journey_steps = Counter(
    "engage_journey_steps_total",
    "Times a journey instance entered a step (a hold's loop back enters it again)",
    ["journey", "step"],
    registry=REGISTRY,
)
journey_messages = Counter(
    "engage_journey_messages_total",
    "Send-message steps reached: outcome requested, or skipped_<reason> (the recipient's "
    "subscription state unsubscribed / did_not_subscribe / none, or no_address)",
    ["journey", "step", "outcome"],
    registry=REGISTRY,
)
journey_in_step = Gauge(
    "engage_journey_in_step",
    "Journey instances waiting in a step now, in the partitions this worker owns",
    ["journey", "step"],
    registry=REGISTRY,
)
journey_active = Gauge(
    "engage_journey_active",
    "Journey instances in progress now, in the partitions this worker owns",
    ["journey"],
    registry=REGISTRY,
)

broadcast_messages = Counter(
    "engage_broadcast_messages_total",
    "Broadcast send requests produced to engage.messages",
    ["broadcast"],
    registry=REGISTRY,
)
broadcast_skipped = Counter(
    "engage_broadcast_skipped_total",
    "Broadcast contact vectors not sent at the snapshot, by reason (subscription state, "
    "no_address)",
    ["broadcast", "reason"],
    registry=REGISTRY,
)
broadcast_recipients = Gauge(
    "engage_broadcast_recipients",
    "Requests the latest send of a broadcast queued, in the partitions this worker owns",
    ["broadcast"],
    registry=REGISTRY,
)
broadcast_sent = Gauge(
    "engage_broadcast_sent",
    "Requests of the latest send of a broadcast already produced, in this worker's partitions",
    ["broadcast"],
    registry=REGISTRY,
)


def observe_many(histogram: Histogram, amounts: Iterable[float]) -> None:
    """`histogram.observe(a)` for every amount, in one update per bucket: a per-record
    observation takes the histogram's locks once per bucket and sum (~1.5 µs each), a
    batch's go in at once. Reaches into `Histogram`'s buckets and sum (prometheus-client
    keeps them as `_upper_bounds`, `_buckets`, `_sum`; a test compares the exposition with
    one `observe` per amount)."""
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    for a in amounts:
        counts[bisect_left(bounds, a)] += 1  # the first bound >= a, as observe picks it
        total += a
    if not any(counts):
        return
    histogram._sum.inc(total)
    for bucket, n in zip(histogram._buckets, counts, strict=True):
        if n:
            bucket.inc(n)


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, cached: `labels()` takes a lock and builds a key each call,
    which adds up on per-record paths. Label sets here are small and fixed (types, reasons,
    partitions, topics), so the cache stays small."""
    key = (id(metric), values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


_exported: dict[int, set[tuple[str, ...]]] = {}


def export(gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
    """Set a labelled gauge to exactly `values`: the label sets exported last time and absent
    now are removed, so a step left, a journey deleted or a partition handed to another
    worker leaves no stale series behind (the counts it is read from drop such keys)."""
    before = _exported.get(id(gauge), set())
    for labels in before - values.keys():
        gauge.remove(*labels)
    for labels, n in values.items():
        gauge.labels(*labels).set(n)
    _exported[id(gauge)] = set(values)


def render() -> bytes:
    return generate_latest(REGISTRY)
