"""End to end on a real broker: sustained throughput, latency, RSS and recovery of the worker.

What is measured, and how (nothing mocked: a real Apache Kafka, the real worker process):
- **Throughput**: the workload is produced into the input topics first, then a worker
  starts and drains the backlog; events/s = events applied (`engage_events_processed_total`
  + duplicates + dead-lettered, polled from /metrics) over the time from the first applied
  event to the last. `steady` is the same over the 10 %→90 % stretch (no start-up, no tail).
  CPU seconds of the worker and of the broker over that window are read from /proc.
- **Latency**: with the worker caught up, events are produced at a fixed rate (half the
  sustained rate), each with a messageId carrying its send time. The worker's checkpoint
  writes one changelog record per changed key, among them the event's history entry
  `h:<profile>\\0<ms>\\0<messageId>` — so the changelog record's timestamp (set by the
  worker's producer when it appends it) is the moment that event's state change was
  handed to Kafka. Latency = that timestamp − send time: produce → ingest →
  profile-events → applied + checkpointed.
  Millisecond resolution (Kafka timestamps). Also reported: the same as first seen by a
  consumer in the harness, the `engage_processing_lag_seconds` histogram (bucket bounds),
  and — once the engine emits — produce → record on `engage.changes` per profile.
- **RSS**: /proc/<pid>/status VmRSS sampled every 0.25 s, and VmHWM (the kernel's peak).
- **Recovery**: graceful stop, local state directory deleted, restart; time until every
  partition has finished recovering (`engage_recovery_seconds_count` = partitions: /health
  lists a partition as soon as its recovery *starts*) and probe lookups through the Profile
  API return the same metadata as before the stop. Changelog records replayed:
  `engage_recovery_records_total`; `changelog_records` is the topic's offset span.

    python -m bench.e2e [--quick]        # broker + these sections only; see bench.run_all
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    BENCH_DIR,
    BROKER_PORT,
    WORKER_WEB_PORT,
    Metrics,
    RssSampler,
    bench_broker,
    broker_pid,
    dir_bytes,
    histogram_quantile,
    percentile,
    proc_cpu_seconds,
    quiet_kafka_logs,
    run_id,
    say,
    wait_until,
)
from bench.workload import Workload, WorkloadSpec, produce
from engage_stream.commands import apply_definitions
from engage_stream.config import Settings, Topics
from engage_stream.definitions.loader import load_definitions
from engage_stream.kafka_local.broker import BrokerConfig
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess

BENCH_DEFINITIONS = Path(__file__).resolve().parent / "definitions"


def worker_settings(
    bootstrap: str, tag: str, partitions: int = 4, web_port: int = WORKER_WEB_PORT, **extra: Any
) -> Settings:
    """Isolated settings for one bench worker: own topics, app id (group), state dir."""
    base = Settings()
    return Settings(
        broker=bootstrap,
        app_id=f"bench-{tag}",
        partitions=partitions,
        data_dir=BENCH_DIR / "worker",
        web_port=web_port,
        topics=base.topics.with_suffix(f"-bench-{tag}"),
        **extra,
    )


# what every bench worker of a run reads alike: the workload's input and the definitions
_SHARED_TOPICS = ("track", "identify", "group", "page", "screen", "alias", "mixed", "definitions")


def with_app(settings: Settings, app_tag: str) -> Settings:
    """Same input topics and definitions, another app id and internal/output topics: a
    fresh worker re-reads the same input, evaluates the same definitions, and does not see
    the first one's internal records — identity requests and the identity map included
    (shared, a second worker would find every identifier known, skip the identity stage,
    and its identity stage would re-read the first one's requests as duplicates)."""
    t = settings.topics
    own: dict[str, str] = {
        name: getattr(t, name) + f"-{app_tag}"
        for name in Topics.model_fields
        if name not in _SHARED_TOPICS and name != "output_prefix"
    }
    own["output_prefix"] = t.output_prefix.rstrip(".") + f"-{app_tag}."
    return settings.model_copy(
        update={"app_id": f"{settings.app_id}-{app_tag}", "topics": t.model_copy(update=own)}
    )


def state_dir(settings: Settings) -> Path:
    return settings.data_dir / settings.app_id / "state"


def topic_records(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return 0
        begin = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        return sum(end[tp] - begin[tp] for tp in tps)
    finally:
        consumer.close()


@dataclass
class ProduceResult:
    events: int
    seconds: float
    events_per_s: float


def prepare_inputs(settings: Settings, spec: WorkloadSpec) -> ProduceResult:
    """Create the run's topics, apply the bench definition set (50 audiences, 20 computed
    traits: the worker evaluates them on every event it drains) and pre-produce the workload
    into the input topics."""
    ensure_topics(settings)
    definitions = load_definitions(BENCH_DEFINITIONS)
    plan = apply_definitions(settings, definitions)
    say(f"applied {len(plan.publish)} bench definitions from {BENCH_DEFINITIONS}")
    say(
        f"producing {spec.total_events:,} events ({spec.profiles:,} profiles, "
        f"history ×{spec.history_multiplier}) into {settings.topics.track} …"
    )
    n, secs = produce(settings, spec)
    say(f"  produced {n:,} in {secs:.1f}s ({n / secs:,.0f}/s, generation included)")
    return ProduceResult(n, round(secs, 2), round(n / secs))


# -- throughput -----------------------------------------------------------------------------


@dataclass
class ThroughputResult:
    events: int
    applied: int
    complete: bool
    seconds: float
    events_per_s: float
    steady_events_per_s: float | None
    startup_s: float
    worker_cpu_s: float | None
    broker_cpu_s: float | None
    worker_cpu_us_per_event: float | None
    rss_peak_mb: float
    rss_hwm_mb: float
    state_disk_mb: float | None = None
    changelog_records: int | None = None
    # of the events ingest routed, the share sent to the identity stage (unknown ids)
    identity_detour: float | None = None
    # wall seconds each stage spent on its batches (checkpoints included), summed over workers
    stage_seconds: dict[str, float] = field(default_factory=dict)
    series: list[tuple[float, int]] = field(default_factory=list)


def stage_seconds_text(seconds: dict[str, float]) -> str:
    return ", ".join(f"{stage} {s:.1f}" for stage, s in seconds.items())


def applied_count(m: Metrics) -> int:
    return int(
        m.total("engage_events_processed_total")
        + m.total("engage_duplicates_dropped_total")
        + m.total("engage_events_dead_lettered_total")
    )


def _rate_between(series: list[tuple[float, int]], lo: float, hi: float) -> float | None:
    """Events/s between the first samples at or past fractions lo and hi of the total."""
    if not series:
        return None
    total = series[-1][1]
    a = next((s for s in series if s[1] >= lo * total), None)
    b = next((s for s in series if s[1] >= hi * total), None)
    if a is None or b is None or b[0] <= a[0]:
        return None
    return (b[1] - a[1]) / (b[0] - a[0])


class BenchWorker:
    """The real worker as a subprocess, with RSS sampling; stopped on exit."""

    def __init__(
        self, settings: Settings, log_name: str, env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.proc = _Spawn(settings, BENCH_DIR / "logs" / f"{log_name}.log", env=env)
        self.rss: RssSampler | None = None

    def __enter__(self) -> BenchWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def spawn(self) -> None:
        """Start the process; returns at once (the caller polls what it needs)."""
        self.proc.start()
        self.rss = RssSampler(self.pid)
        self.rss.__enter__()

    def wait_web(self, timeout: float) -> None:
        def up() -> bool:
            if self.proc.proc is not None and self.proc.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.proc.log_tail()}")
            try:
                self.proc.get_json("/health")
                return True
            except Exception:
                return False

        wait_until(up, timeout, "the worker's web server", interval=0.1)

    def metrics(self) -> Metrics:
        return Metrics.scrape(self.proc.url)

    def stop(self) -> None:
        if self.rss is not None:
            self.rss.stop()
        self.proc.stop(timeout=30)


class _Spawn(WorkerProcess):
    """WorkerProcess that does not block in start(): the bench times start-up itself."""

    def wait_healthy(self, timeout: float) -> dict[str, Any]:
        return {}


def _cpu_seconds(pids: Sequence[int]) -> float | None:
    """The processes' CPU time together (None if one cannot be read)."""
    each = [proc_cpu_seconds(p) for p in pids]
    return None if any(c is None for c in each) else sum(each)  # type: ignore[arg-type]


def measure_throughput(
    workers: BenchWorker | Sequence[BenchWorker],
    total: int,
    timeout: float,
    broker_cfg: BrokerConfig,
    label: str,
) -> ThroughputResult:
    """Spawn the worker (or several, in one group) on a pre-produced backlog and time them
    until every event is applied: their applied events and CPU together, the largest
    one's RSS."""
    group = [workers] if isinstance(workers, BenchWorker) else list(workers)
    t_spawn = time.monotonic()
    for w in group:
        w.spawn()
    for w in group:
        w.wait_web(timeout=120)
    pids = [w.pid for w in group]
    bpid = broker_pid(broker_cfg)
    series: list[tuple[float, int]] = []
    t_first: float | None = None
    cpu0 = bcpu0 = None
    done = 0
    last_say = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in group:
            if w.proc.proc is not None and w.proc.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{w.proc.log_tail()}")
        now = time.monotonic()
        done = sum(applied_count(w.metrics()) for w in group)
        if done > 0 and t_first is None:
            t_first = now
            cpu0 = _cpu_seconds(pids)
            bcpu0 = proc_cpu_seconds(bpid) if bpid else None
        if t_first is not None:
            series.append((round(now - t_first, 3), done))
        if done >= total:
            break
        if now - last_say > 10:
            say(f"  {label}: {done:,}/{total:,} applied")
            last_say = now
        time.sleep(0.25)
    t_end = time.monotonic()
    cpu1 = _cpu_seconds(pids)
    bcpu1 = proc_cpu_seconds(bpid) if bpid else None
    routed = [w.metrics() for w in group]
    known = sum(m.total("engage_identity_routed_total", path="known") for m in routed)
    detour = sum(m.total("engage_identity_routed_total", path="identity_stage") for m in routed)
    stage_seconds: dict[str, float] = {}
    for m in routed:
        for lab, v in m.samples.get("engage_batch_seconds_sum", []):
            stage = lab.get("stage", "")
            stage_seconds[stage] = round(stage_seconds.get(stage, 0.0) + v, 2)
    samplers = [w.rss for w in group if w.rss is not None]
    for sampler in samplers:
        sampler.sample()
    if t_first is None or not series:
        logs = "\n".join(w.proc.log_tail() for w in group)
        raise TimeoutError(f"{label}: nothing applied in {timeout}s:\n{logs}")
    first_done = series[0][1]
    secs = max(1e-6, t_end - t_first)
    rate = (done - first_done) / secs if done > first_done else done / secs
    wcpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return ThroughputResult(
        events=total,
        applied=done,
        complete=done >= total,
        seconds=round(secs, 2),
        events_per_s=round(rate),
        steady_events_per_s=_round(_rate_between(series, 0.1, 0.9)),
        startup_s=round(t_first - t_spawn, 2),
        worker_cpu_s=_round(wcpu, 2),
        broker_cpu_s=_round(bcpu1 - bcpu0, 2) if bcpu0 is not None and bcpu1 else None,
        worker_cpu_us_per_event=_round(wcpu * 1e6 / done, 1) if wcpu and done else None,
        rss_peak_mb=round(max(x.peak_mb for x in samplers), 1),
        rss_hwm_mb=round(max(x.hwm_mb for x in samplers), 1),
        identity_detour=round(detour / (known + detour), 3) if known + detour else None,
        stage_seconds=stage_seconds,
        series=series[:: max(1, len(series) // 60)],
    )


def _round(v: float | None, nd: int = 0) -> float | None:
    if v is None:
        return None
    return round(v, nd) if nd else float(round(v))


# -- latency --------------------------------------------------------------------------------


@dataclass
class LatencyResult:
    rate_per_s: float
    seconds: float
    sent: int
    applied: int
    applied_ms: dict[str, float | None]
    # produce → acknowledged by the broker (the generator's own batching and round trip),
    # and acknowledged → applied (the pipeline's share of `applied_ms`)
    acked_ms: dict[str, float | None]
    acked_applied_ms: dict[str, float | None]
    seen_ms: dict[str, float | None]
    lag_histogram_s: dict[str, float | None]
    changes_records: int
    changes_ms: dict[str, float | None]
    rss_peak_mb: float | None = None
    # where the time went during the phase: per stage, batches handled and their mean
    # duration (checkpoint included); the checkpoints' mean; each process's CPU share
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    checkpoint_mean_ms: float | None = None
    cpu_share: dict[str, float | None] = field(default_factory=dict)


def _pcts(values: list[float]) -> dict[str, float | None]:
    v = sorted(values)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        p = percentile(v, q)
        out[name] = round(p, 1) if p is not None else None
    return out


class _Observer:
    """What the latency harness sees of the worker's outputs: for each paced event, when its
    history entry reached the changelog (the record's timestamp) and when this consumer saw
    it; and every `engage.changes` record's profile and timestamp.

    Why librdkafka in a thread rather than an aiokafka task next to the load producer: the
    changelog carries every profile value the worker writes (several KB per event), and
    aiokafka decodes each record in Python — a third of a core at 1,000 events/s, taken
    from the two cores the worker and the broker share, so the harness itself stretched the
    latencies it measured. librdkafka decodes in C and waits without the GIL."""

    def __init__(self, settings: Settings, prefix: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.changes_topic = settings.topics.changes
        self.prefix = prefix.encode()
        self.applied: dict[str, tuple[int, int]] = {}
        self.change_recs: list[tuple[bytes, int]] = []
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.broker,
                "group.id": f"bench-observer-{prefix}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                "check.crcs": False,
            }
        )
        topics = (settings.changelog_topic, settings.topics.changes)
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        for tp in tps:  # from the current ends: only what is produced from now on
            tp.offset = self._consumer.get_watermark_offsets(tp, timeout=30)[1]
        self._consumer.assign(tps)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-observer", daemon=True)

    def __enter__(self) -> _Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._consumer.close()

    def _run(self) -> None:
        consumer = self._consumer
        changes, prefix = self.changes_topic, self.prefix
        while not self._stop.is_set():
            msgs = consumer.consume(num_messages=10_000, timeout=0.02)
            now_ns = time.time_ns()
            for m in msgs:
                if m.error() is not None:
                    continue
                key = m.key()
                ts = m.timestamp()[1]
                if m.topic() == changes:
                    self.change_recs.append((_change_profile(key, m.value()), ts))
                elif key and key.startswith(b"h:") and m.value() is not None:
                    mid = key.rsplit(b"\x00", 1)[1]
                    if mid.startswith(prefix):
                        self.applied[mid.decode()] = (ts, now_ns)


# The load generator's linger. It stands for the sources (SDKs, the collector) that hand
# events to Kafka in batches, and on this machine the broker they share with the worker
# pays per request: 1,000 events/s into 4 partitions cost a warm broker 0.16–0.25 cores at
# 5 ms, 0.08–0.18 at 20 and 0.05 at 100 (bench/README, "The broker's share"). The send
# time is taken at the hand-over, so up to this much of every latency is the generator's.
GENERATOR_LINGER_MS = 20


def _paced(
    settings: Settings,
    profiles: list[tuple[str, bytes]],
    rate: float,
    seconds: float,
    drain_timeout: float,
) -> tuple[
    int,
    dict[str, int],
    dict[str, int],
    dict[str, tuple[int, int]],
    list[tuple[bytes, int]],
    dict[bytes, list[int]],
]:
    """`rate` events/s for `seconds` to the track topic, then wait until the worker applied
    them. The send time is taken just before the event is handed to the client, so the
    client's own batching (`GENERATOR_LINGER_MS`) is part of the latency; when the broker
    acknowledged each event is kept too (`acked`), to tell the generator's share from the
    pipeline's. The load runs on librdkafka for the same reason as `_Observer` (aiokafka
    cost a quarter of a core at 1,000 events/s)."""
    from confluent_kafka import Producer

    from engage_stream.sample_data import iso

    prefix = f"lat{int(time.time())}-"
    producer = Producer(
        {"bootstrap.servers": settings.broker, "acks": "all", "linger.ms": GENERATOR_LINGER_MS}
    )
    sent: dict[str, int] = {}
    acked: dict[str, int] = {}
    by_profile: dict[bytes, list[int]] = {}
    failed: list[str] = []

    def delivered(mid: str) -> Callable[[Any, Any], None]:
        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))
            else:
                acked[mid] = time.time_ns()

        return done

    with _Observer(settings, prefix) as seen:
        n = int(rate * seconds)
        rng = random.Random(11)
        t0 = time.perf_counter()
        i = 0
        while i < n:
            due = min(n, int((time.perf_counter() - t0) * rate) + 1)
            while i < due:
                pid, key = profiles[rng.randrange(len(profiles))]
                sent_ns = time.time_ns()
                mid = f"{prefix}{i}-{sent_ns}"
                body = {
                    "type": "track",
                    "event": "Product Viewed",
                    "userId": key.decode(),
                    "messageId": mid,
                    "timestamp": iso(sent_ns // 1_000_000),
                    "properties": {
                        "product_id": "prod_0001",
                        "price": 10.0,
                        "bench_sent_ns": sent_ns,
                    },
                }
                producer.produce(
                    settings.topics.track,
                    orjson.dumps(body),
                    key,
                    on_delivery=delivered(mid),
                )
                sent[mid] = sent_ns
                by_profile.setdefault(pid.encode(), []).append(sent_ns)
                i += 1
            producer.poll(0)
            time.sleep(0.002)
        if producer.flush(30) or failed:
            raise RuntimeError(f"paced events not delivered: {failed[:3]}")
        deadline = time.monotonic() + drain_timeout
        while len(seen.applied) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # let trailing engine outputs arrive
    return n, sent, acked, dict(seen.applied), list(seen.change_recs), by_profile


def _change_profile(key: bytes | None, value: bytes | None) -> bytes:
    """The bench's name of the profile an `engage.changes` record is about: `user_id:<its
    userId>` (the record key is the worker's opaque `use_…` id since identity resolution),
    else the key."""
    if value:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            for x in orjson.loads(value).get("external_ids") or ():
                if x.get("type") == "user_id" and x.get("id"):
                    return f"user_id:{x['id']}".encode()
    return key or b""


def measure_latency(
    worker: BenchWorker,
    settings: Settings,
    profiles: list[tuple[str, bytes]],
    rate: float,
    seconds: float,
    broker: int | None = None,
) -> LatencyResult:
    """`broker`: the broker's pid, for its CPU share over the phase."""
    m0 = worker.metrics()
    before = m0.histogram("engage_processing_lag_seconds")
    peak0 = worker.rss.peak_kb if worker.rss else 0
    pids = {"worker": worker.pid, "broker": broker}
    cpu0 = {name: proc_cpu_seconds(pid) if pid else None for name, pid in pids.items()}
    t0 = time.monotonic()
    n, sent, acked, applied, change_recs, by_profile = _paced(
        settings, profiles, rate, seconds, drain_timeout=30 + seconds
    )
    wall = time.monotonic() - t0
    cpu1 = {name: proc_cpu_seconds(pid) if pid else None for name, pid in pids.items()}
    m1 = worker.metrics()
    after = m1.histogram("engage_processing_lag_seconds")
    lat_applied = [ts - sent[mid] / 1e6 for mid, (ts, _) in applied.items()]
    lat_acked = [(acked[mid] - sent[mid]) / 1e6 for mid in acked]
    from_ack = [ts - acked[mid] / 1e6 for mid, (ts, _) in applied.items() if mid in acked]
    lat_seen = [(seen - sent[mid]) / 1e6 for mid, (_, seen) in applied.items()]
    lat_changes: list[float] = []
    for key, ts in change_recs:
        sends = [s / 1e6 for s in by_profile.get(key, []) if s / 1e6 <= ts + 1]
        if sends:
            lat_changes.append(ts - max(sends))
    hist = {
        name: histogram_quantile(before, after, q)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }
    peak = worker.rss.peak_kb if worker.rss else peak0
    return LatencyResult(
        rate_per_s=round(rate),
        seconds=seconds,
        sent=n,
        applied=len(applied),
        applied_ms=_pcts(lat_applied),
        acked_ms=_pcts(lat_acked),
        acked_applied_ms=_pcts(from_ack),
        seen_ms=_pcts(lat_seen),
        lag_histogram_s=hist,
        changes_records=len(change_recs),
        changes_ms=_pcts(lat_changes),
        rss_peak_mb=round(peak / 1024, 1),
        stages=_stage_times(m0, m1),
        checkpoint_mean_ms=_mean_ms(m0, m1, "engage_checkpoint_seconds"),
        cpu_share={
            name: round((cpu1[name] - c) / wall, 2)  # type: ignore[operator]
            if c is not None and cpu1[name] is not None
            else None
            for name, c in cpu0.items()
        },
    )


def _mean_ms(m0: Metrics, m1: Metrics, name: str, **labels: str) -> float | None:
    n = m1.total(name + "_count", **labels) - m0.total(name + "_count", **labels)
    s = m1.total(name + "_sum", **labels) - m0.total(name + "_sum", **labels)
    return round(s / n * 1000, 2) if n > 0 else None


def _stage_times(m0: Metrics, m1: Metrics) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for lab, v in m1.samples.get("engage_batch_seconds_count", []):
        stage = lab.get("stage", "")
        n = v - m0.total("engage_batch_seconds_count", stage=stage)
        if n > 0:
            mean = _mean_ms(m0, m1, "engage_batch_seconds", stage=stage)
            out[stage] = {"batches": n, "mean_ms": mean or 0.0}
    return out


# -- recovery -------------------------------------------------------------------------------


@dataclass
class RecoveryResult:
    state_disk_mb_deleted: float
    changelog_records: int
    seconds_to_ready: float
    seconds_to_web: float
    records_applied: int
    records_skipped: int
    recovery_seconds_sum: float
    probes_identical: bool
    rss_hwm_mb: float


def measure_recovery(
    worker: BenchWorker, settings: Settings, probes: list[str], timeout: float
) -> RecoveryResult:
    """Stop, delete local state, restart; until every partition is open and probes match."""
    before = {p: worker.proc.profile(p, "metadata") for p in probes}
    missing = [p for p, (status, _) in before.items() if status != 200]
    if missing:
        raise RuntimeError(f"probe profiles not found before recovery: {missing}")
    worker.stop()
    sdir = state_dir(settings)
    deleted = dir_bytes(sdir)
    shutil.rmtree(sdir, ignore_errors=True)
    changelog = topic_records(settings.broker, settings.changelog_topic)
    say(
        f"  recovery: state dir deleted ({deleted / 1e6:,.1f} MB), "
        f"changelog holds {changelog:,} records; restarting"
    )
    fresh = BenchWorker(settings, f"{settings.app_id}-recovery")
    with fresh:
        t0 = time.monotonic()
        fresh.spawn()
        fresh.wait_web(timeout=120)
        t_web = time.monotonic() - t0

        def ready() -> bool:
            # /health lists a partition as soon as its recovery starts, so count finished
            # recoveries (one engage_recovery_seconds observation per partition) instead.
            done = fresh.metrics().total("engage_recovery_seconds_count")
            if done < settings.partitions:
                return False
            return all(fresh.proc.profile(p, "metadata") == before[p] for p in probes)

        wait_until(ready, timeout, "recovered partitions and matching probes", interval=0.1)
        t_ready = time.monotonic() - t0
        m = fresh.metrics()
        assert fresh.rss is not None
        fresh.rss.sample()
        return RecoveryResult(
            state_disk_mb_deleted=round(deleted / 1e6, 1),
            changelog_records=changelog,
            seconds_to_ready=round(t_ready, 2),
            seconds_to_web=round(t_web, 2),
            records_applied=int(m.total("engage_recovery_records_total", outcome="applied")),
            records_skipped=int(m.total("engage_recovery_records_total", outcome="skipped")),
            recovery_seconds_sum=round(m.total("engage_recovery_seconds_sum"), 2),
            probes_identical=True,
            rss_hwm_mb=round(fresh.rss.hwm_mb, 1),
        )


# -- sections, composed ---------------------------------------------------------------------


def probe_profiles(workload: Workload, n: int = 3) -> list[str]:
    """Profile API identifiers of the busiest known users (surely present in state)."""
    pop = workload.population
    ranked = sorted(
        (u for u in range(pop.size) if pop.known[u]),
        key=lambda u: pop._cum[u] - (pop._cum[u - 1] if u else 0.0),
        reverse=True,
    )
    return [f"user_id:{pop.user_id(u)}" for u in ranked[:n]]


def latency_profiles(workload: Workload, n: int = 2000) -> list[tuple[str, bytes]]:
    pop = workload.population
    known = [u for u in range(pop.size) if pop.known[u]][:n]
    return [(pop.profile_id(u), pop.key(u)) for u in known]


LATENCY_FIXED_RATE = 1_000.0  # events/s


def run_main(
    broker_cfg: BrokerConfig,
    spec: WorkloadSpec,
    tag: str,
    latency_seconds: float,
    throughput_timeout: float,
    recovery_timeout: float = 300,
    produced: ProduceResult | None = None,
    web_port: int = WORKER_WEB_PORT,
) -> dict[str, Any]:
    """Throughput on the backlog, then paced latency, then recovery — one worker's life.
    `produced`: the inputs are already in the topics (`prepare_inputs` was called)."""
    settings = worker_settings(broker_cfg.bootstrap, tag, web_port=web_port)
    out: dict[str, Any] = {"settings": _settings_summary(settings)}
    out["produce"] = asdict(produced or prepare_inputs(settings, spec))
    workload = Workload(spec)
    worker = BenchWorker(settings, f"{settings.app_id}-main")
    with worker:
        say(f"worker throughput: draining {spec.total_events:,} events")
        tp = measure_throughput(worker, spec.total_events, throughput_timeout, broker_cfg, "worker")
        tp.state_disk_mb = round(dir_bytes(state_dir(settings)) / 1e6, 1)
        tp.changelog_records = topic_records(settings.broker, settings.changelog_topic)
        say(
            f"  {tp.events_per_s:,.0f} events/s (steady {tp.steady_events_per_s or 0:,.0f}), "
            f"RSS peak {tp.rss_peak_mb:,.0f} MB"
        )
        out["throughput"] = asdict(tp)
        if not tp.complete:
            say("  throughput run did not finish in time: latency and recovery skipped")
            return out
        half = max(50.0, round(tp.events_per_s / 2))
        # the two latency figures: at half the sustained rate, and at a fixed,
        # moderate rate (below the half rate only when the worker is that slow)
        for phase, rate in (("latency", half), ("latency_fixed", min(LATENCY_FIXED_RATE, half))):
            say(f"latency: {rate:,.0f} events/s for {latency_seconds:.0f}s, worker caught up")
            lat = measure_latency(
                worker,
                settings,
                latency_profiles(workload),
                rate,
                latency_seconds,
                broker_pid(broker_cfg),
            )
            say(
                f"  produce→applied p50 {lat.applied_ms['p50']} ms, p95 "
                f"{lat.applied_ms['p95']} ms, p99 {lat.applied_ms['p99']} ms "
                f"({lat.applied}/{lat.sent} seen)"
            )
            out[phase] = asdict(lat)
        say("recovery: stop, delete local state, restart")
        rec = measure_recovery(worker, settings, probe_profiles(workload), recovery_timeout)
        say(
            f"  ready in {rec.seconds_to_ready:.1f}s, {rec.records_applied:,} changelog "
            f"records replayed"
        )
        out["recovery"] = asdict(rec)
    shutil.rmtree(state_dir(settings).parent, ignore_errors=True)
    return out


def run_engine_baseline(
    broker_cfg: BrokerConfig,
    spec: WorkloadSpec,
    tag: str,
    timeout: float,
    engine: str,
    web_port: int,
    app: str | None = None,
) -> dict[str, Any]:
    """The main throughput run again with another engine (`ENGAGE_ENGINE`), on a fresh app
    id (`app`, default the engine's name: its own consumer group re-reads the same input
    topics): the baseline the native engine's worker figure is compared with."""
    tp = run_with_env(broker_cfg, spec, tag, timeout, {"ENGAGE_ENGINE": engine}, web_port, app)
    return {"engine": engine, "throughput": tp}


def run_with_env(
    broker_cfg: BrokerConfig,
    spec: WorkloadSpec,
    tag: str,
    timeout: float,
    env: dict[str, str],
    web_port: int,
    app: str | None = None,
) -> dict[str, Any]:
    """The main throughput run with `env` set for the worker, on a fresh app id (default
    made of `env`): its own consumer group re-reads the same input topics."""
    label = ",".join(f"{k}={v}" for k, v in env.items())
    app = app or "".join(c if c.isalnum() else "-" for c in label.lower())
    settings = with_app(worker_settings(broker_cfg.bootstrap, tag, web_port=web_port), app)
    with BenchWorker(settings, settings.app_id, env=env) as worker:
        say(f"worker with {label}: draining {spec.total_events:,} events")
        tp = measure_throughput(worker, spec.total_events, timeout, broker_cfg, label)
        say(
            f"  {tp.events_per_s:,.0f} events/s (steady {tp.steady_events_per_s or 0:,.0f}), "
            f"identity detour {100 * (tp.identity_detour or 0):.1f} %, stage seconds "
            + stage_seconds_text(tp.stage_seconds)
        )
    shutil.rmtree(state_dir(settings).parent, ignore_errors=True)
    return asdict(tp)


def compare_env(
    broker_cfg: BrokerConfig,
    spec: WorkloadSpec,
    tag: str,
    timeout: float,
    env: dict[str, str],
    rounds: int,
    web_port: int,
) -> dict[str, Any]:
    """A setting's effect on throughput: the worker as configured and with `env`,
    alternating which goes first, `rounds` pairs on the same pre-produced backlog."""
    settings = worker_settings(broker_cfg.bootstrap, tag, web_port=web_port)
    prepare_inputs(settings, spec)
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "env": []}
    for r in range(rounds):
        order = [("default", {}), ("env", env)]
        for name, e in order if r % 2 == 0 else order[::-1]:
            runs[name].append(
                run_with_env(broker_cfg, spec, tag, timeout, e, web_port, app=f"{name}-{r}")
            )
    return {"env": env, "runs": runs}


def compare_report(res: dict[str, Any]) -> str:
    label = ",".join(f"{k}={v}" for k, v in res["env"].items())
    lines = [f"{'':28s} {'events/s':>10s} {'CPU µs/ev':>10s} {'broker µs/ev':>12s}"]
    for name, runs in res["runs"].items():
        for tp in runs:
            lines.append(
                f"  {name if name == 'default' else label:26s} {tp['events_per_s']:>10,.0f} "
                f"{tp['worker_cpu_us_per_event'] or 0:>10.1f} "
                f"{(tp['broker_cpu_s'] or 0) * 1e6 / max(1, tp['applied']):>12.1f}"
            )
    mean = {
        n: sum(tp["events_per_s"] for tp in runs) / max(1, len(runs))
        for n, runs in res["runs"].items()
    }
    if mean["env"]:
        lines.append(f"  default ÷ {label}: {mean['default'] / mean['env']:.2f}× (mean rates)")
    return "\n".join(lines)


def run_worker_pair(
    broker_cfg: BrokerConfig, spec: WorkloadSpec, tag: str, timeout: float, web_port: int
) -> dict[str, Any]:
    """The main throughput run with two worker processes in one consumer group (a fresh
    app id re-reading the same input), two partitions each: what a second process buys on
    this machine, beside the one-worker figure. Each has its own state directory and
    instance id (its web port). The rate is over the whole run: the first to join starts
    alone (ingest for every partition included), and the second's join moves two
    partitions, which their new owner recovers from the changelog. Its steady-phase rate is
    not the pair at work: after the join the pair finds a `profile-events` backlog the first
    one ingested alone, so a later phase measures another mix of work."""
    base = with_app(worker_settings(broker_cfg.bootstrap, tag, web_port=web_port), "pair")
    dirs = [base.data_dir / f"pair-{i}" for i in range(2)]
    pair = [
        BenchWorker(
            base.model_copy(
                update={
                    "web_port": web_port + i,
                    "data_dir": d,
                    "internal_secret": "bench-pair-secret",
                }
            ),
            f"{base.app_id}-{i}",
        )
        for i, d in enumerate(dirs)
    ]
    say(f"two workers: draining {spec.total_events:,} events")
    try:
        tp = measure_throughput(pair, spec.total_events, timeout, broker_cfg, "two workers")
    finally:
        for w in pair:
            w.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    say(f"  {tp.events_per_s:,} events/s with two workers")
    return {"workers": len(pair), "throughput": asdict(tp)}


def run_history(
    broker_cfg: BrokerConfig,
    profiles: int,
    events: int,
    multiplier: int,
    seed: int,
    tag: str,
    timeout: float,
    web_port: int = WORKER_WEB_PORT,
) -> dict[str, Any]:
    """Same profiles, 1× and k× the events each: does per-event cost grow with history?"""
    out: dict[str, Any] = {}
    for k in (1, multiplier):
        spec = WorkloadSpec(profiles=profiles, events=events, history_multiplier=k, seed=seed)
        settings = worker_settings(broker_cfg.bootstrap, f"{tag}-h{k}", web_port=web_port)
        prepare_inputs(settings, spec)
        with BenchWorker(settings, f"{settings.app_id}") as worker:
            say(f"history ×{k}: draining {spec.total_events:,} events for {profiles:,} profiles")
            tp = measure_throughput(worker, spec.total_events, timeout, broker_cfg, f"×{k}")
            tp.state_disk_mb = round(dir_bytes(state_dir(settings)) / 1e6, 1)
            say(f"  ×{k}: {tp.events_per_s:,.0f} events/s, RSS peak {tp.rss_peak_mb:,.0f} MB")
        out[f"x{k}"] = asdict(tp)
        shutil.rmtree(state_dir(settings).parent, ignore_errors=True)
    return out


def run_scale(
    broker_cfg: BrokerConfig,
    profiles: int,
    events: int,
    seed: int,
    tag: str,
    timeout: float,
    web_port: int = WORKER_WEB_PORT,
) -> dict[str, Any]:
    """Many profiles (state on disk): the worker's peak RSS while it drains a backlog that
    touches every one of them — memory must not grow with the number of profiles."""
    spec = WorkloadSpec(profiles=profiles, events=events, seed=seed)
    settings = worker_settings(broker_cfg.bootstrap, f"{tag}-scale", web_port=web_port)
    prepare_inputs(settings, spec)
    with BenchWorker(settings, f"{settings.app_id}") as worker:
        say(f"scale: draining {events:,} events for {profiles:,} profiles")
        tp = measure_throughput(worker, events, timeout, broker_cfg, "scale")
        tp.state_disk_mb = round(dir_bytes(state_dir(settings)) / 1e6, 1)
        stored = sum(v for _, v in worker.metrics().samples.get("engage_state_profiles", []))
        say(f"  {tp.events_per_s:,.0f} events/s, RSS peak {tp.rss_peak_mb:,.0f} MB")
    shutil.rmtree(state_dir(settings).parent, ignore_errors=True)
    return {"profiles": profiles, "profiles_stored": round(stored), "throughput": asdict(tp)}


def _settings_summary(s: Settings) -> dict[str, Any]:
    return {
        "partitions": s.partitions,
        "batch_size": s.batch_size,
        "batch_within_s": s.batch_within_s,
        "history_days": s.history_days,
        "commit_interval_s": s.commit_interval_s,
        "app_id": s.app_id,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--profiles", type=int)
    p.add_argument("--events", type=int)
    p.add_argument("--port", type=int, default=BROKER_PORT, help="the bench broker's port")
    p.add_argument("--web-port", type=int, default=WORKER_WEB_PORT, help="the worker's")
    p.add_argument(
        "--compare-env",
        metavar="NAME=VALUE",
        action="append",
        help="only throughput: the worker as configured vs with these variables, alternating",
    )
    p.add_argument("--rounds", type=int, default=3, help="pairs for --compare-env")
    args = p.parse_args(argv)
    quiet_kafka_logs()
    profiles = args.profiles or (5_000 if args.quick else 100_000)
    events = args.events or (30_000 if args.quick else 500_000)
    spec = WorkloadSpec(profiles=profiles, events=events)
    if args.compare_env:
        env = dict(kv.split("=", 1) for kv in args.compare_env)
        with bench_broker(args.port) as cfg:
            res = compare_env(cfg, spec, run_id(), 900, env, args.rounds, args.web_port)
        print(compare_report(res))
        return 0
    with bench_broker(args.port) as cfg:
        res = run_main(cfg, spec, run_id(), 8 if args.quick else 20, 900, web_port=args.web_port)
    print(orjson.dumps(res, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
