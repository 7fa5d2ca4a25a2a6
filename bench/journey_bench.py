"""What journeys cost: the profiles stage with and without the four example journeys, the
timer-firing rate with 1M journey instances pending, and (optionally) the worker end to end.

    python -m bench.journey_bench [--quick] [--sections stage,timers,e2e]
        [--events 100000] [--profiles 20000] [--timer-profiles 1000000] [--port 39900]

**stage** — `ProfileStage.apply` (the worker's whole profiles stage minus Kafka: processor,
engine, journey runner, output records, audience sizes, journey counts) over one
RocksDB-backed partition (`PartitionState` + `PartitionStore`, each batch's transaction
committed locally as a checkpoint's local step does; no changelog sent), batches of 1,000
records as the worker's default. The workload is `WorkloadSpec(journey_events=True)`
(bench/workload.py: the shop traffic with the lifecycle events the journeys react to); the
catalog is the bench definition set plus the journeys' two audiences and one trait
(bench/definition_set.py `catalog()`), with the four topologies/journeys/*.journey or without
them — the same events and definitions on both sides, so the ratio is the journeys alone.
Two clocks:
- `live`: each record's timestamp is its event's time (a live stream: 90 days of traffic
  compressed into the run), so waits, holds, exit-after and audience window exits come due
  as the clock moves and fire on clock ticks — the record the worker's 1 s timer produces,
  here one before every `--tick-every` events (500: the worker's ratio, one tick per
  partition per second at ~2,000 events/s over 4 partitions); every timer fires at its
  own instant whenever the tick comes, so the cadence changes batching, not outputs;
- `backlog`: every record stamped with the workload's end (a pre-produced backlog drained,
  as in engine_bench's `profiles_stage`): a journey's whole path up to the end plays out at
  its profile's next input, since every wait is already due; windows shorter than the
  event's age never open (so far fewer audience and journey entries).
The sides alternate (`--rounds`) and each keeps its median; the journeys' own counts
(`journeys.counts`, from the partition state) are printed so the figure is honest.

**timers** — a partition with N profiles (default 1,000,000), each in a journey wait step,
then the clock advanced in ticks so that they come due in waves; due wake-ups fired per
second and CPU µs per wake-up, per wave (pending from N down to one wave) and overall. The
state is built through the real stage — `ProfileStage.apply` over RocksDB in batches of
`BUILD_BATCH` generated events (an identify that subscribes the address, then `Signed Up`),
one journey `bench/journeys_timer/welcome_wait.journey` (send_message → wait 2 days →
send_message: the onboarding journey without its random split, so every instance waits).
Baseline in the same invocation: the same N profiles and waves with an audience instead
(`signed_up_2d`: performed `Signed Up` within 2 days — one window-exit timer per profile,
due at the same instants), no journeys.

**e2e** — the real worker on a real broker (`bench.e2e`): the same pre-produced backlog
(journey workload) drained once with the journeys applied and once without, alternating;
events/s, worker CPU µs/event and the journey counts read back from the worker's state.
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from bench import definition_set
from bench.common import BENCH_DIR, BROKER_PORT, WORKER_WEB_PORT, quiet_kafka_logs, say
from bench.workload import Workload, WorkloadSpec
from engage_stream.identity.resolver import input_key
from engage_stream.ingest.validate import parse_message

HERE = Path(__file__).resolve().parent
TIMER_JOURNEYS_DIR = HERE / "journeys_timer"
STAGE_BATCH = 1_000  # records per batch, as the worker's default batch size
# One tick per 500 events: the worker ticks each partition once a second and drains about
# 2,000 events/s over 4 partitions (bench/README.md), so ~500 events per partition per tick.
TICK_EVERY = 500
BUILD_BATCH = 5_000  # events per transaction while building the timer state
MINUTE = 60_000
DAY = 86_400_000


def rss_mb() -> float:
    """This process's resident set now (VmRSS), MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the stage, with and without journeys ----------------------------------------------------


@dataclass
class StageRun:
    journeys: bool
    clock: str
    events: int
    records: int  # events + ticks
    seconds: float
    cpu_seconds: float
    outputs: int  # output records built
    journey_outputs: int  # JourneyOutput objects
    changes: int
    timers_fired: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    state_bytes_per_profile: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def us_per_event(self) -> float:
        return self.seconds * 1e6 / self.events

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds * 1e6 / self.events


def journey_internal(spec: WorkloadSpec) -> list[tuple[int, bytes, bytes]]:
    """(event time, key, internal JSON) of the journey workload, in event-time order, keyed
    as ingest keys them (`input_key`); received at the event's own time (a live stream)."""
    out = []
    for r in Workload(spec).records():
        ev = parse_message(r.value, 0)
        ev.received_at = ev.timestamp
        ev.profile_id = input_key(ev)
        out.append((ev.timestamp, ev.profile_id.encode(), ev.to_json()))
    return out


def stage_records(
    internal: list[tuple[int, bytes, bytes]], clock: str, end_ms: int, tick_every: int
) -> list[Any]:
    """The `profile-events` records one partition reads, a clock tick before every
    `tick_every` events and one at the end. `live`: each record stamped with its event's
    time (a tick with the time of the event after it); `backlog`: all stamped `end_ms`."""
    from engage_stream.profiles.stage import TICK_KEY
    from engage_stream.records import InputRecord

    topic = "profile-events"
    out: list[Any] = []

    def add(ts: int, key: bytes, value: bytes | None) -> None:
        out.append(InputRecord(topic, 0, len(out) + 1, ts, key, value))

    for n, (ts, key, value) in enumerate(internal):
        at = end_ms if clock == "backlog" else ts
        if n % tick_every == 0:
            add(at, TICK_KEY, None)
        add(at, key, value)
    add(end_ms, TICK_KEY, None)
    return out


def run_stage_once(
    records: list[Any], journeys: bool, clock: str, keep: list[Any] | None = None
) -> StageRun:
    """One pass of the records through a fresh stage over a fresh RocksDB partition
    (`keep`: gets every journey output)."""
    from engage_stream.config import Settings
    from engage_stream.journeys import counts as journey_counts
    from engage_stream.profiles.stage import TICK_KEY, ProfileStage
    from engage_stream.state.keys import PROFILE
    from engage_stream.state.partition import PartitionState
    from engage_stream.state.partition_store import PartitionStore

    catalog = definition_set.catalog(journeys)
    tmp = Path(tempfile.mkdtemp(prefix="engage-journey-bench-"))
    settings = Settings(data_dir=tmp)
    stage = ProfileStage(settings, catalog)
    ps = PartitionState(0, PartitionStore(tmp / "p0"), reported=False)
    outputs = jout = changes = fired = 0
    by_type: dict[str, int] = {}
    events = sum(1 for r in records if r.key != TICK_KEY)
    try:
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(records), STAGE_BATCH):
            tx = ps.begin()
            res = stage.apply(tx, records[i : i + STAGE_BATCH])
            tx.prepare()
            ps.finish(tx, changelog_offset=i)
            outputs += len(res.outputs)
            changes += len(res.changes)
            fired += res.timers_fired
            jout += len(res.journeys)
            if keep is not None:
                keep.extend(res.journeys)
            for o in res.journeys:
                by_type[o.type] = by_type.get(o.type, 0) + 1
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        counts = journey_counts.read(ps.store)
        sizes = [len(v) for _, v in ps.store.range(PROFILE, PROFILE + b"\xff")]
    finally:
        ps.store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return StageRun(
        journeys,
        clock,
        events,
        len(records),
        secs,
        cpu,
        outputs,
        jout,
        changes,
        fired,
        counts,
        by_type,
        round(sum(sizes) / max(1, len(sizes)), 1),
    )


def run_stage(
    events: int, profiles: int, rounds: int, clocks: tuple[str, ...], tick_every: int
) -> dict[str, Any]:
    """Both sides, alternating, for each clock; medians and the ratio."""
    spec = WorkloadSpec(profiles=profiles, events=events, seed=7, journey_events=True)
    wl_end = spec.resolved_end_ms()
    spec = replace(spec, end_ms=wl_end)
    say(f"stage: generating {events:,} journey-workload events for {profiles:,} profiles")
    internal = journey_internal(spec)
    kinds: dict[str, int] = {}
    for _, _, v in internal:
        d = orjson.loads(v)
        name = d.get("event") or d["type"]
        kinds[name] = kinds.get(name, 0) + 1
    out: dict[str, Any] = {
        "events": len(internal),
        "profiles": profiles,
        "rounds": rounds,
        "tick_every": tick_every,
        "batch": STAGE_BATCH,
        "event_mix": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "definitions": len(definition_set.catalog(False).entries),
        "journeys": [e.key for e in definition_set.catalog(True).journeys],
        "clocks": {},
    }
    for clock in clocks:
        records = stage_records(internal, clock, wl_end, tick_every)
        runs: dict[bool, list[StageRun]] = {False: [], True: []}
        kept: list[Any] = []
        for r in range(rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            for side in order:
                keep = kept if side and r == 0 else None
                run = run_stage_once(records, side, clock, keep)
                runs[side].append(run)
                say(
                    f"  {clock:7s} {'with' if side else 'without':7s} journeys: "
                    f"{run.events_per_s:,.0f} events/s, {run.us_per_event:.1f} µs/event "
                    f"(CPU {run.cpu_us_per_event:.1f}), {run.outputs:,} output records"
                )
        out["clocks"][clock] = summarise_stage(runs, len(records))
        out["clocks"][clock]["output_encoding"] = output_encoding(kept)
    return out


def output_encoding(outputs: list[Any]) -> dict[str, Any]:
    """µs per journey output: `journey_records` (every record an output becomes), and in it
    the journey log's JSON as built now — `orjson.dumps(o.to_dict())`, where
    `dataclasses.asdict` deep-copies every field — next to `orjson.dumps(o)` (orjson
    serialises the dataclass itself; checked byte-identical here)."""
    from engage_stream.config import Settings
    from engage_stream.outputs.journey_records import journey_records

    if not outputs:
        return {}
    identical = all(orjson.dumps(o.to_dict()) == orjson.dumps(o) for o in outputs)
    settings = Settings()

    def best(fn: Any) -> float:
        t = []
        for _ in range(3):
            a = time.perf_counter()
            fn()
            t.append(time.perf_counter() - a)
        return round(min(t) * 1e6 / len(outputs), 2)

    return {
        "outputs": len(outputs),
        "journey_records_us": best(lambda: journey_records(outputs, settings)),
        "to_dict_dumps_us": best(lambda: [orjson.dumps(o.to_dict()) for o in outputs]),
        "dumps_dataclass_us": best(lambda: [orjson.dumps(o) for o in outputs]),
        "identical_bytes": identical,
    }


def summarise_stage(runs: dict[bool, list[StageRun]], records: int) -> dict[str, Any]:
    def side(rs: list[StageRun]) -> dict[str, Any]:
        last = rs[-1]
        return {
            "events_per_s": round(statistics.median(r.events_per_s for r in rs)),
            "us_per_event": round(statistics.median(r.us_per_event for r in rs), 1),
            "cpu_us_per_event": round(statistics.median(r.cpu_us_per_event for r in rs), 1),
            "runs_events_per_s": [round(r.events_per_s) for r in rs],
            "outputs_per_event": round(last.outputs / last.events, 2),
            "changes": last.changes,
            "timers_fired": last.timers_fired,
            "journey_outputs": last.journey_outputs,
            "journey_outputs_by_type": dict(sorted(last.by_type.items())),
            "journey_counts": last.counts,
            "record_bytes_per_profile": last.state_bytes_per_profile,
        }

    without, with_ = side(runs[False]), side(runs[True])
    return {
        "records": records,
        "without": without,
        "with": with_,
        "ratio_events_per_s": round(with_["events_per_s"] / without["events_per_s"], 3),
        "journey_us_per_event": round(with_["us_per_event"] - without["us_per_event"], 1),
        "journey_cpu_us_per_event": round(
            with_["cpu_us_per_event"] - without["cpu_us_per_event"], 1
        ),
    }


def _count_line(counts: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for j in sorted(counts):
        c = counts[j]
        skipped = {k[8:]: v for k, v in c.items() if k.startswith("skipped:")}
        exits = {k[5:]: v for k, v in c.items() if k.startswith("exit:")}
        waiting = {k[5:]: v for k, v in c.items() if k.startswith("step:") and v}
        out.append(
            f"    {j:20s} entered {c.get('entered', 0):>7,}  completed {c.get('completed', 0):>7,}"
            f"  exited {c.get('exited', 0):>6,}{' ' + str(exits) if exits else ''}  active "
            f"{c.get('active', 0):>6,}  messages requested {c.get('requested', 0):>6,}"
            + (f"  skipped {skipped}" if skipped else "")
            + (f"  waiting {waiting}" if waiting else "")
        )
    return out


def report_stage(r: dict[str, Any]) -> str:
    L = [
        f"Profiles stage with and without journeys ({r['events']:,} events, {r['profiles']:,} "
        f"profiles, {r['definitions']} definitions; journeys: {', '.join(r['journeys'])}; "
        f"batches of {r['batch']:,}, RocksDB, median of {r['rounds']} alternating runs)"
    ]
    mix = r["event_mix"]
    L.append("  workload: " + ", ".join(f"{k} {v:,}" for k, v in mix.items()))
    L.append(
        f"  {'clock':9s} {'':15s} {'events/s':>9s} {'µs/event':>9s} {'CPU µs/ev':>10s} "
        f"{'out rec/ev':>10s} {'timers':>8s} {'journey outputs':>16s}"
    )
    for clock, c in r["clocks"].items():
        for label, key in (("without", "without"), ("with journeys", "with")):
            s = c[key]
            L.append(
                f"  {clock:9s} {label:15s} {s['events_per_s']:>9,} {s['us_per_event']:>9.1f} "
                f"{s['cpu_us_per_event']:>10.1f} {s['outputs_per_event']:>10.2f} "
                f"{s['timers_fired']:>8,} {s['journey_outputs']:>16,}"
            )
        L.append(
            f"  {clock:9s} with ÷ without: {c['ratio_events_per_s']:.2f}× events/s; journeys add "
            f"{c['journey_us_per_event']} µs/event (CPU {c['journey_cpu_us_per_event']})"
        )
        L.append(f"  {clock}: journey outputs " + str(c["with"]["journey_outputs_by_type"]))
        enc = c.get("output_encoding") or {}
        if enc:
            L.append(
                f"  {clock}: journey_records {enc['journey_records_us']} µs per output, of which "
                f"the journey log's JSON {enc['to_dict_dumps_us']} µs (to_dict + dumps); "
                f"orjson.dumps(output) {enc['dumps_dataclass_us']} µs, identical bytes: "
                f"{enc['identical_bytes']}"
            )
        L.extend(_count_line(c["with"]["journey_counts"]))
    return "\n".join(L)


# -- timers: 1M pending journey wake-ups ----------------------------------------------------

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the first wave's sign-ups
WAVE_GAP_MS = 20 * MINUTE  # one wave of sign-ups every 20 minutes
WAVE_SPAN_MS = 60_000  # a wave's sign-ups spread over one minute (one tick per second)
WAIT_MS = 2 * DAY  # welcome_wait's wait; signed_up_2d's window
# Every sign-up must come before the first wake-up is due, or the first tick (the clock
# is already past it) would fire several waves at once.
MAX_WAVES = (WAIT_MS - WAVE_SPAN_MS) // WAVE_GAP_MS


def timer_catalog(side: str) -> Any:
    """`journey`: welcome_wait alone (no audiences or traits); `audience`: signed_up_2d
    alone (no journeys)."""
    from engage_stream.definitions import load_definitions
    from engage_stream.definitions.catalog import Catalog
    from engage_stream.journeys.catalog import JourneyCatalog
    from engage_stream.journeys.loading import load_journeys

    if side == "journey":
        return Catalog(
            {}, journeys=JourneyCatalog.from_definitions(load_journeys(TIMER_JOURNEYS_DIR))
        )
    return Catalog.from_definitions(load_definitions(TIMER_JOURNEYS_DIR / "signed_up_2d.yaml"))


def signup_events(profiles: int, waves: int) -> Iterator[tuple[int, bytes, bytes]]:
    """(time, key, internal JSON) of one `Signed Up` per profile, wave by wave: wave w's
    profiles sign up over one minute from T0 + w hours (ids permuted, so key order is not
    time order). The address travels as an identifier (`context.traits.email`)."""
    per = -(-profiles // waves)
    for u in range(profiles):
        w, i = divmod(u, per)
        ts = T0 + w * WAVE_GAP_MS + i * WAVE_SPAN_MS // per
        n = (u * 7919) % profiles  # a permutation (7919 is prime, not a factor of N)
        uid = f"user-{n:07d}"
        raw = orjson.dumps(
            {
                "type": "track",
                "event": "Signed Up",
                "userId": uid,
                "anonymousId": f"anon-{n:07d}",
                "messageId": f"signup-{n:07d}",
                "timestamp": _iso(ts),
                "properties": {"plan": "free", "source": "web"},
                "context": {"traits": {"email": f"{uid}@example.com"}},
            }
        )
        ev = parse_message(raw, ts)
        ev.profile_id = input_key(ev)
        yield ts, ev.profile_id.encode(), ev.to_json()


def _iso(ms: int) -> str:
    from engage_stream.timestamps import iso_ms

    return iso_ms(ms)


@dataclass
class Wave:
    wave: int
    pending_before: int
    ticks: int
    fired: int
    seconds: float
    cpu_seconds: float  # the stage's own thread
    process_cpu_seconds: float  # every thread (RocksDB's flushes and compactions too)
    due_probe_ms: float  # one extra `ProfileStore.due()` before the wave: the index read alone
    bounded_probe_ms: float  # the same range read from the previous wave's last instant
    outputs: int

    @property
    def per_s(self) -> float:
        return self.fired / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds * 1e6 / self.fired if self.fired else 0.0


def _probe(ps: Any, start: bytes, now: int) -> float:
    """ms to read the wake-up index from `start` up to `now` (what `due(now)` reads when
    `start` is the index's first key), in a transaction that is then discarded."""
    from engage_stream.state.keys import WAKEUP, ts13

    tx = ps.begin()
    a = time.perf_counter()
    for _ in tx.range(start, WAKEUP + ts13(now + 1)):
        pass
    ms = (time.perf_counter() - a) * 1000
    tx.fail()
    return ms


def run_timers_side(
    side: str, profiles: int, waves: int, work: Path, fire_waves: int = 0
) -> dict[str, Any]:
    """Build the partition through the stage (one Signed Up per profile, BUILD_BATCH per
    transaction, no ticks: nothing is due for 2 days), then tick once per second through
    each wave's minute two days later; per wave: wake-ups fired, time, CPU, outputs.
    `fire_waves`: only the first that many waves (0: all)."""
    if waves > MAX_WAVES:
        raise ValueError(f"at most {MAX_WAVES} waves (all sign-ups before the first is due)")
    from engage_stream.config import Settings
    from engage_stream.journeys import counts as journey_counts
    from engage_stream.profiles.stage import TICK_KEY, ProfileStage
    from engage_stream.records import InputRecord
    from engage_stream.state.keys import WAKEUP, ts13
    from engage_stream.state.partition import PartitionState
    from engage_stream.state.partition_store import PartitionStore

    path = work / f"timers-{side}-{profiles}"
    shutil.rmtree(path, ignore_errors=True)
    settings = Settings(data_dir=work)
    stage = ProfileStage(settings, timer_catalog(side))
    ps = PartitionState(0, PartitionStore(path), reported=False)
    topic = "profile-events"
    offset = 0
    out: dict[str, Any] = {
        "side": side,
        "profiles": profiles,
        "waves": waves,
        "fire_waves": fire_waves or waves,
    }
    try:
        # -- build -----------------------------------------------------------------------
        say(f"timers/{side}: building {profiles:,} profiles through ProfileStage.apply")
        gc.collect()
        rss_before = rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        stage_s = 0.0
        batch: list[Any] = []
        entered = 0

        def flush() -> None:
            nonlocal stage_s, entered
            a = time.perf_counter()
            tx = ps.begin()
            res = stage.apply(tx, batch)
            tx.prepare()
            ps.finish(tx, changelog_offset=offset)
            stage_s += time.perf_counter() - a
            entered += sum(1 for o in res.journeys if o.type == "instance_entered")
            if res.failed:
                raise RuntimeError(f"{res.failed} records dead-lettered while building")
            batch.clear()

        last_say = time.monotonic()
        for ts, key, value in signup_events(profiles, waves):
            offset += 1
            batch.append(InputRecord(topic, 0, offset, ts, key, value))
            if len(batch) >= BUILD_BATCH:
                flush()
                if time.monotonic() - last_say > 30:
                    say(f"  {offset:,}/{profiles:,} built, RSS {rss_mb():,.0f} MB")
                    last_say = time.monotonic()
        if batch:
            flush()
        build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
        tx = ps.begin()
        pending = sum(1 for _ in tx.range(WAKEUP, WAKEUP + b"\xff"))
        tx.fail()
        out["build"] = {
            "seconds": round(build_s, 1),
            "stage_seconds": round(stage_s, 1),
            "cpu_seconds": round(build_cpu, 1),
            "us_per_profile_stage": round(stage_s * 1e6 / profiles, 1),
            "events_per_s": round(profiles / build_s),
            "instances_entered": entered,
            "wakeup_index_entries": pending,
            "state_disk_mb": round(ps.store.disk_bytes() / 1e6, 1),
            "rss_mb": round(rss_mb(), 1),
            "rss_before_mb": round(rss_before, 1),
        }
        say(
            f"  built in {build_s:.0f}s ({profiles / build_s:,.0f} profiles/s; stage "
            f"{stage_s * 1e6 / profiles:.0f} µs each), {pending:,} wake-ups pending, "
            f"{entered:,} instances entered, RSS {rss_mb():,.0f} MB"
        )
        # -- fire, wave by wave ----------------------------------------------------------
        per = -(-profiles // waves)
        remaining = pending
        wave_rows: list[Wave] = []
        last = T0  # the latest instant a tick has fired everything up to
        for w in range(fire_waves or waves):
            start = T0 + w * WAVE_GAP_MS + WAIT_MS
            probe = _probe(ps, WAKEUP, start - 1)
            bounded = _probe(ps, WAKEUP + ts13(last + 1), start - 1)
            fired = outputs = ticks = 0
            gc.collect()
            a, c, pc = time.perf_counter(), time.thread_time(), time.process_time()
            for sec in range(1, WAVE_SPAN_MS // 1000 + 2):
                offset += 1
                tick = InputRecord(topic, 0, offset, start + sec * 1000, TICK_KEY, None)
                tx = ps.begin()
                res = stage.apply(tx, [tick])
                tx.prepare()
                ps.finish(tx, changelog_offset=offset)
                ticks += 1
                outputs += len(res.outputs)
                if side == "journey":
                    fired += sum(1 for o in res.journeys if o.type == "instance_completed")
                else:
                    fired += res.timers_fired
                last = tick.timestamp
            row = Wave(
                w,
                remaining,
                ticks,
                fired,
                time.perf_counter() - a,
                time.thread_time() - c,
                time.process_time() - pc,
                round(probe, 2),
                round(bounded, 2),
                outputs,
            )
            remaining -= fired
            wave_rows.append(row)
            say(
                f"  wave {w + 1}/{fire_waves or waves}: {fired:,} fired of {row.pending_before:,} pending in "
                f"{row.seconds:.1f}s = {row.per_s:,.0f}/s, CPU {row.cpu_us:.0f} µs each, "
                f"index read {probe:.1f} ms ({bounded:.2f} from the last tick), RSS "
                f"{rss_mb():,.0f} MB"
            )
            if fired != min(per, row.pending_before):
                say(f"  (expected {min(per, row.pending_before):,} in wave {w + 1})")
        fired_total = sum(r.fired for r in wave_rows)
        fire_s = sum(r.seconds for r in wave_rows)
        fire_cpu = sum(r.cpu_seconds for r in wave_rows)
        fire_pcpu = sum(r.process_cpu_seconds for r in wave_rows)
        out["fire"] = {
            "fired": fired_total,
            "ticks": sum(r.ticks for r in wave_rows),
            "seconds": round(fire_s, 1),
            "per_s": round(fired_total / fire_s) if fire_s else None,
            "cpu_us_per_wakeup": round(fire_cpu * 1e6 / fired_total, 1) if fired_total else None,
            "per_cpu_s": round(fired_total / fire_cpu) if fire_cpu else None,
            "process_cpu_us_per_wakeup": (
                round(fire_pcpu * 1e6 / fired_total, 1) if fired_total else None
            ),
            "outputs_per_wakeup": round(sum(r.outputs for r in wave_rows) / max(1, fired_total), 2),
            "left_pending": remaining,
            "rss_mb": round(rss_mb(), 1),
            "waves": [
                {
                    "wave": r.wave,
                    "pending_before": r.pending_before,
                    "fired": r.fired,
                    "ticks": r.ticks,
                    "seconds": round(r.seconds, 2),
                    "per_s": round(r.per_s),
                    "cpu_us": round(r.cpu_us, 1),
                    "process_cpu_us": round(r.process_cpu_seconds * 1e6 / max(1, r.fired), 1),
                    "due_probe_ms": r.due_probe_ms,
                    "bounded_probe_ms": r.bounded_probe_ms,
                }
                for r in wave_rows
            ],
        }
        if side == "journey":
            out["counts"] = journey_counts.read(ps.store).get("welcome_wait", {})
    finally:
        ps.store.close()
        shutil.rmtree(path, ignore_errors=True)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def run_timers(
    profiles: int, waves: int, fire_waves: int, work: Path, sides: tuple[str, ...]
) -> dict[str, Any]:
    """The journey side at N, the audience baseline at N, and the journey side with a
    small pending set (one wave's profiles, one wave) — same wave size, same ticks."""
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"profiles": profiles, "waves": waves, "fire_waves": fire_waves}
    if "journey" in sides:
        out["journey"] = run_timers_side("journey", profiles, waves, work, fire_waves)
    if "audience" in sides:
        out["audience"] = run_timers_side("audience", profiles, waves, work, fire_waves)
    if "small" in sides:
        out["journey_small"] = run_timers_side("journey", -(-profiles // waves), 1, work)
    return out


def report_timers(r: dict[str, Any]) -> str:
    L = [
        f"Timers: {r['profiles']:,} profiles, each with one pending wake-up, due in "
        f"{r['waves']} waves of {-(-r['profiles'] // r['waves']):,}; the first "
        f"{r['fire_waves'] or r['waves']} fired, one tick per second through each wave's "
        "minute; one RocksDB partition built through ProfileStage.apply"
    ]
    L.append(
        f"  {'':38s} {'build':>9s} {'fired':>8s} {'wake-ups/s':>10s} {'CPU µs':>7s} "
        f"{'/CPU-s':>7s} {'1st wave/s':>10s} {'last/s':>7s} {'index read ms':>14s} "
        f"{'RSS MB':>7s}"  # after the build: the state's working set, not the process peak
    )
    labels = {
        "journey": "journey wait (welcome_wait)",
        "audience": "audience window exit (signed_up_2d)",
        "journey_small": "journey wait, one wave pending",
    }
    for key, label in labels.items():
        s = r.get(key)
        if not isinstance(s, dict) or "fire" not in s:
            continue
        b, f = s["build"], s["fire"]
        ws = f["waves"]
        probe = f"{ws[0]['due_probe_ms']:.1f}→{ws[-1]['due_probe_ms']:.1f}"
        L.append(
            f"  {label:38s} {b['events_per_s']:>7,}/s {f['fired']:>8,} {f['per_s']:>10,} "
            f"{f['cpu_us_per_wakeup']:>7.1f} {f['per_cpu_s']:>7,} {ws[0]['per_s']:>10,} "
            f"{ws[-1]['per_s']:>7,} {probe:>14s} {b['rss_mb']:>7,.0f}"
        )
    for key, label in labels.items():
        s = r.get(key)
        if not isinstance(s, dict) or "build" not in s:
            continue
        b = s["build"]
        L.append(
            f"  {label}: built {s['profiles']:,} profiles in {b['seconds']}s "
            f"({b['us_per_profile_stage']} µs each in the stage), {b['wakeup_index_entries']:,} "
            f"wake-ups pending, state {b['state_disk_mb']} MB on disk, RSS after build "
            f"{b['rss_mb']:,.0f} MB ({b['rss_mb'] - b.get('rss_before_mb', 0):+,.0f} MB), "
            f"after firing {s['fire']['rss_mb']:,.0f} MB"
        )
    j, a = r.get("journey"), r.get("audience")
    if j and a and "fire" in j and "fire" in a:
        ws = j["fire"]["waves"]
        L.append(
            f"  journey ÷ audience: {j['fire']['per_s'] / a['fire']['per_s']:.2f}× wake-ups/s, "
            f"{j['fire']['cpu_us_per_wakeup'] / a['fire']['cpu_us_per_wakeup']:.2f}× CPU per "
            f"wake-up; output records per wake-up {j['fire']['outputs_per_wakeup']} vs "
            f"{a['fire']['outputs_per_wakeup']}"
        )
        L.append(
            "  the wake-up index read (`due()` from the index's start; no entry due): "
            + ", ".join(f"{w['due_probe_ms']:.1f}" for w in ws[:: max(1, len(ws) // 10)])
            + " ms across the waves; from the last tick's instant instead: "
            + ", ".join(f"{w['bounded_probe_ms']:.2f}" for w in ws[:: max(1, len(ws) // 10)])
            + " ms"
        )
        L.append(f"  journey counts: {j.get('counts')}")
    return "\n".join(L)


# -- end to end: the worker on a real broker ---------------------------------------------

INPUT_FIELDS = ("track", "identify", "group", "page", "screen", "alias", "mixed")


def side_settings(base: Any, label: str) -> Any:
    """The run's input topics, everything else its own (app id, state, changelogs,
    definitions, internal and output topics): each worker drains the same backlog from the
    start and sees only its own definitions."""
    t = base.topics
    own = {
        k: v + f"-{label}"
        for k, v in t.model_dump().items()
        if k not in INPUT_FIELDS and k != "output_prefix"
    }
    own["output_prefix"] = t.output_prefix.rstrip(".") + f"-{label}."
    return base.model_copy(
        update={"app_id": f"{base.app_id}-{label}", "topics": t.model_copy(update=own)}
    )


def apply_bench_set(settings: Any, journeys: bool, applied_at: int) -> int:
    """Publish the bench set + the journeys' audiences and trait (and the four journeys)
    to the run's definitions topic, as `engage-stream apply` does — but as applied at
    `applied_at` (the workload's first event): a classic journey takes only audience
    entries after it was published, so published now it would take none of a backlog of
    past events. Returns how many records were published."""
    from engage_stream.commands import plan_apply
    from engage_stream.definitions.checks import Item
    from engage_stream.definitions.problems import DefinitionErrors, Source
    from engage_stream.journeys.catalog import JourneyCatalog
    from engage_stream.journeys.loading import collect_journeys
    from engage_stream.stream import definitions_topic
    from engage_stream.stream.topics import ensure_topics

    ensure_topics(settings)
    items = [Item.parsed(d, Source("<bench>", d.key)) for d in definition_set.load_set(True)]
    found = collect_journeys(definition_set.JOURNEYS_DIR)[0] if journeys else []
    plan, problems = plan_apply(
        definitions_topic.read_all(settings).values(),
        items,
        prune=False,
        now_ms=applied_at,
        topic=settings.topics.definitions,
        journeys=found,
    )
    if problems:
        raise DefinitionErrors(problems)
    ensure_topics(settings, JourneyCatalog.from_definitions(j for j, _ in found).destinations())
    definitions_topic.publish(settings, plan)
    return len(plan.publish)


def _journey_metrics(m: Any) -> dict[str, dict[str, int]]:
    """Per journey: entered, completed, exited, messages requested / skipped (the worker's
    engage_journey_* counters)."""
    out: dict[str, dict[str, int]] = {}
    for name, field_ in (
        ("engage_journey_entered_total", "entered"),
        ("engage_journey_completed_total", "completed"),
        ("engage_journey_exited_total", "exited"),
    ):
        for labels, v in m.samples.get(name, []):
            j = out.setdefault(labels.get("journey", "?"), {})
            j[field_] = j.get(field_, 0) + int(v)
    for labels, v in m.samples.get("engage_journey_messages_total", []):
        j = out.setdefault(labels.get("journey", "?"), {})
        outcome = labels.get("outcome", "?")
        k = "requested" if outcome == "requested" else "skipped"
        j[k] = j.get(k, 0) + int(v)
        if k == "skipped":  # skipped_<reason>
            j[outcome] = j.get(outcome, 0) + int(v)
    return out


def run_e2e(
    port: int,
    web_port: int,
    profiles: int,
    events: int,
    rounds: int,
    timeout: float,
    broker_cfg: Any = None,
) -> dict[str, Any]:
    """The worker draining the same pre-produced journey-workload backlog, with and
    without the journeys (alternating), on a broker of its own on `port` (or on
    `broker_cfg`'s, already running: run_all's)."""
    from bench.common import bench_broker

    if broker_cfg is None:
        with bench_broker(port) as cfg:
            return run_e2e(port, web_port, profiles, events, rounds, timeout, cfg)
    from bench import e2e
    from bench.common import run_id
    from bench.workload import produce
    from engage_stream.stream.topics import ensure_topics

    spec = WorkloadSpec(profiles=profiles, events=events, seed=7, journey_events=True)
    spec = replace(spec, end_ms=spec.resolved_end_ms())
    tag = run_id()
    cfg = broker_cfg
    out: dict[str, Any] = {
        "events": events,
        "profiles": profiles,
        "rounds": rounds,
        "port": cfg.port,
    }
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    base = e2e.worker_settings(cfg.bootstrap, f"j{tag}", web_port=web_port)
    ensure_topics(base)
    # one topic for every type: a user's identify (its address, its subscriptions)
    # must reach the journeys before its Signed Up does, as in a live stream
    say(f"e2e: producing {events:,} journey-workload events into {base.topics.mixed} …")
    n, secs = produce(base, spec, mixed=True)
    say(f"  produced {n:,} in {secs:.1f}s")
    for r in range(rounds):
        order = ("without", "with") if r % 2 == 0 else ("with", "without")
        for side in order:
            settings = side_settings(base, f"{side}{r}")
            start = spec.resolved_end_ms() - int(spec.days * DAY)
            published = apply_bench_set(settings, side == "with", start - MINUTE)
            say(f"e2e {side} journeys (round {r + 1}): {published} definitions applied")
            worker = e2e.BenchWorker(settings, f"{settings.app_id}")
            with worker:
                tp = e2e.measure_throughput(worker, n, timeout, cfg, f"{side} journeys")
                time.sleep(2)  # journey counters move once a checkpoint is durable
                counts = _journey_metrics(worker.metrics())
            shutil.rmtree(e2e.state_dir(settings).parent, ignore_errors=True)
            say(
                f"  {tp.events_per_s:,.0f} events/s, worker CPU "
                f"{tp.worker_cpu_us_per_event} µs/event, RSS {tp.rss_hwm_mb:,.0f} MB"
            )
            runs[side].append(
                {
                    "events_per_s": tp.events_per_s,
                    "steady_events_per_s": tp.steady_events_per_s,
                    "worker_cpu_us_per_event": tp.worker_cpu_us_per_event,
                    "broker_cpu_s": tp.broker_cpu_s,
                    "rss_hwm_mb": tp.rss_hwm_mb,
                    "seconds": tp.seconds,
                    "complete": tp.complete,
                    "journeys": counts,
                }
            )
    for side, rs in runs.items():
        out[side] = {
            "events_per_s": round(statistics.median(x["events_per_s"] for x in rs)),
            "worker_cpu_us_per_event": round(
                statistics.median(x["worker_cpu_us_per_event"] or 0 for x in rs), 1
            ),
            "rss_hwm_mb": max(x["rss_hwm_mb"] for x in rs),
            "runs": rs,
        }
    out["ratio_events_per_s"] = round(
        out["with"]["events_per_s"] / out["without"]["events_per_s"], 3
    )
    w, wo = out["with"]["worker_cpu_us_per_event"], out["without"]["worker_cpu_us_per_event"]
    out["ratio_cpu_per_event"] = round(w / wo, 3) if wo else None
    return out


def report_e2e(r: dict[str, Any]) -> str:
    L = [
        f"End to end: worker draining a pre-produced backlog ({r['events']:,} journey-workload "
        f"events, {r['profiles']:,} profiles, 4 partitions, real broker on port {r['port']}; "
        f"median of {r['rounds']} alternating runs)"
    ]
    for side in ("without", "with"):
        s = r[side]
        runs = ", ".join(f"{x['events_per_s']:,.0f}" for x in s["runs"])
        L.append(
            f"  {side + ' journeys':17s} {s['events_per_s']:>7,} events/s ({runs}), worker CPU "
            f"{s['worker_cpu_us_per_event']} µs/event, RSS {s['rss_hwm_mb']:,.0f} MB"
        )
    L.append(
        f"  with ÷ without: {r['ratio_events_per_s']:.2f}× events/s, "
        f"{r['ratio_cpu_per_event']}× worker CPU per event"
    )
    for j, c in sorted(r["with"]["runs"][-1]["journeys"].items()):
        L.append(
            f"    {j:20s} entered {c.get('entered', 0):>7,}  completed {c.get('completed', 0):>7,}"
            f"  exited {c.get('exited', 0):>5,}  messages requested {c.get('requested', 0):>6,}"
            f"  skipped {c.get('skipped', 0):>6,}"
        )
    return "\n".join(L)


@dataclass(frozen=True)
class Sizes:
    events: int
    profiles: int
    rounds: int
    timer_profiles: int
    waves: int
    fire_waves: int
    e2e_events: int
    e2e_profiles: int
    e2e_rounds: int


# About 1.5 + 0.5 + 1.5 minutes; full: ~5 (stage) + ~8 (timers) + ~5 (e2e) on 2 cores.
QUICK = Sizes(10_000, 2_000, 1, 20_000, 20, 5, 20_000, 4_000, 1)
FULL = Sizes(100_000, 20_000, 1, 1_000_000, 100, 10, 100_000, 20_000, 2)
SECTIONS = ("stage", "timers", "e2e")


def run(
    sizes: Sizes,
    sections: set[str],
    clocks: tuple[str, ...] = ("live", "backlog"),
    tick_every: int = TICK_EVERY,
    timer_sides: tuple[str, ...] = ("journey", "audience", "small"),
    port: int = BROKER_PORT,
    web_port: int = WORKER_WEB_PORT,
    broker_cfg: Any = None,
) -> dict[str, Any]:
    """The sections asked for (run_all: the in-process ones after its broker stopped, e2e
    on its broker)."""
    out: dict[str, Any] = {"sizes": sizes.__dict__}
    if "stage" in sections:
        out["stage"] = run_stage(sizes.events, sizes.profiles, sizes.rounds, clocks, tick_every)
    if "timers" in sections:
        out["timers"] = run_timers(
            sizes.timer_profiles,
            sizes.waves,
            sizes.fire_waves,
            BENCH_DIR / "journey-timers",
            timer_sides,
        )
    if "e2e" in sections:
        out["e2e"] = run_e2e(
            port,
            web_port,
            sizes.e2e_profiles,
            sizes.e2e_events,
            sizes.e2e_rounds,
            900,
            broker_cfg,
        )
    return out


def report(r: dict[str, Any]) -> str:
    parts = []
    if isinstance(r.get("stage"), dict) and "clocks" in r["stage"]:
        parts.append(report_stage(r["stage"]))
    if isinstance(r.get("timers"), dict) and "profiles" in r["timers"]:
        parts.append(report_timers(r["timers"]))
    if isinstance(r.get("e2e"), dict) and "with" in r["e2e"]:
        parts.append(report_e2e(r["e2e"]))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.journey_bench")
    p.add_argument("--quick", action="store_true", help="small sizes (~3.5 minutes)")
    p.add_argument("--sections", default="stage,timers", help="of stage,timers,e2e")
    p.add_argument("--events", type=int, help="stage: events (100k; quick 10k)")
    p.add_argument("--profiles", type=int, help="stage: profiles (20k; quick 2k)")
    p.add_argument("--rounds", type=int, help="stage: alternating runs per side (1)")
    p.add_argument("--clocks", default="live,backlog")
    p.add_argument(
        "--tick-every",
        type=int,
        default=TICK_EVERY,
        help="stage: events between clock ticks (the worker: one per partition per second)",
    )
    p.add_argument("--timer-profiles", type=int, help="profiles pending (1M; quick 20k)")
    p.add_argument("--waves", type=int, help="of equal size, 20 minutes apart (100; quick 20)")
    p.add_argument("--fire-waves", type=int, help="fire the first K, 0: all (10; quick 5)")
    p.add_argument("--timer-sides", default="journey,audience,small")
    p.add_argument("--e2e-events", type=int, help="100k (quick 20k)")
    p.add_argument("--e2e-profiles", type=int, help="20k (quick 4k)")
    p.add_argument("--e2e-rounds", type=int, help="alternating runs per side (2; quick 1)")
    p.add_argument("--port", type=int, default=BROKER_PORT, help="e2e: the bench broker's port")
    p.add_argument("--web-port", type=int, default=WORKER_WEB_PORT, help="e2e: the worker's")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    base = QUICK if args.quick else FULL
    given = {
        "events": args.events,
        "profiles": args.profiles,
        "rounds": args.rounds,
        "timer_profiles": args.timer_profiles,
        "waves": args.waves,
        "fire_waves": args.fire_waves,
        "e2e_events": args.e2e_events,
        "e2e_profiles": args.e2e_profiles,
        "e2e_rounds": args.e2e_rounds,
    }
    sizes = replace(base, **{k: v for k, v in given.items() if v is not None})
    sections = {s for s in args.sections.split(",") if s}
    if unknown := sections - set(SECTIONS):
        p.error(f"unknown sections {sorted(unknown)} (of {', '.join(SECTIONS)})")
    quiet_kafka_logs()
    started = time.monotonic()
    out = run(
        sizes,
        sections,
        tuple(c for c in args.clocks.split(",") if c),
        args.tick_every,
        tuple(x for x in args.timer_sides.split(",") if x),
        args.port,
        args.web_port,
    )
    out["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(report(out))
    print(f"\n{out['seconds']}s")
    if args.json:
        args.json.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
