"""In-process cost per event of each stage, without Kafka: ingest, profile state, engine.

Why: the end-to-end figure says how fast the worker is; this says where the time goes
before any Kafka client or asyncio cost — the worker's CPU µs/event minus these is the
transport/framework overhead. Stages, each timed over the same workload events:
- `ingest`: `parse_message` (pydantic validation, normalisation) + canonical id + `to_json`;
- `profile_memory`: `ProfileProcessor.apply` over an in-memory store (pure Python cost);
- `profile_rocksdb`: the same over the worker's RocksDB layout — `Transaction` over a
  `PartitionStore`, one WriteBatch per 500 events, as a checkpoint does (no changelog);
- `engine_only`: the engine alone with the bench definition set (bench/definitions/, 50
  audiences + 20 computed traits): events pre-parsed into `ProfileEvent`, profiles held
  in memory as `ProfileRecord` objects (custom traits and external ids applied outside
  the timed region), only `Engine.on_event` timed, per event (p50 / p99 too). The clock
  is the event time ("live": every event arrives when it happens, so every window that
  listens to it stores it and window edges fire as the clock moves);
- `engine_only_backlog`: the same with the clock fixed at the end of the workload (the
  end-to-end bench's pre-produced backlog: events older than a window are not stored);
- `engine_only_fresh`: the engine alone (live clock) with every record saved and
  loaded again after each event, as the profile stage does (only `on_event` timed);
- `record_roundtrip`: that `ProfileRecord.dumps` + `loads`, per event, engine state
  included — what every profile read and write costs;
- `profile_memory_live` / `processor_engine`: `ProfileProcessor.apply` without / with the
  engine over an in-memory store, live clock (the difference is what the engine and its
  state add to the profile stage);
- `engine`: `profile_rocksdb` with the engine (fixed clock, as `profile_rocksdb`);
- `profiles_stage`: the worker's whole profiles stage minus Kafka — `ProfileStage.apply`'s
  batch step (processor, engine, output records, audience sizes) over RocksDB, fixed clock.
Plus state bytes per profile after the run, and the engine alone over the same profiles
with 1× and k× the events each (history growth).

    python -m bench.engine_bench [--events 100000] [--profiles 20000]
        [--history-profiles 2000 --history-events 20000 --history-multiplier 10]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.workload import Workload, WorkloadSpec
from engage_stream.events import ProfileEvent
from engage_stream.identity.resolver import input_key
from engage_stream.ingest.validate import parse_message
from engage_stream.profiles.processor import (
    ProcessorSettings,
    ProfileProcessor,
    _apply_external_ids,
    _apply_metadata,
    _apply_traits,
)
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.memory import MemoryKV
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.transaction import Transaction

DEFINITIONS_DIR = Path(__file__).parent / "definitions"
CHECKPOINT_EVERY = 500


ENGINES = ("python", "native")


def make_engine(
    engine: str = "python", keys: set[str] | None = None
) -> tuple[Any, dict[str, int]] | str:
    """The engine (`python`: the reference `Engine`; `native`: `NativeEngine`, the native
    core where it applies) with the bench definition set (bench/definitions/*.yaml,
    written by `python -m bench.definition_set --write-yaml`), or only its `keys`; or why
    it is not available."""
    try:
        from engage_stream.engine import Engine
        from engage_stream.engine.native import NativeEngine, unavailable
    except ImportError:
        return "engine not available yet (engage_stream.engine.Engine cannot be imported)"
    if not sorted(DEFINITIONS_DIR.glob("*.y*ml")):
        return "bench definitions not written yet (python -m bench.definition_set --write-yaml)"
    from engage_stream.definitions import load_definitions

    definitions = load_definitions(DEFINITIONS_DIR)
    if keys is not None:
        definitions = [d for d in definitions if d.key in keys]
    versions = {d.key: 1 for d in definitions}
    if engine == "native":
        if unavailable:
            return f"native core not available: {unavailable}"
        return NativeEngine(definitions, versions), versions
    return Engine(definitions, versions), versions


def trait_subset() -> set[str]:
    """The bench set's trait-heavy part: the audiences that read only custom traits and
    memberships of each other (plan, country, age and their combinations)."""
    from engage_stream.definitions import load_definitions
    from engage_stream.definitions.models import (
        AudienceCondition,
        AudienceDefinition,
        GroupCondition,
        TraitCondition,
    )

    def rows(conds: Any) -> list[Any]:
        out = []
        for c in conds:
            out += rows(c.group) if isinstance(c, GroupCondition) else [c]
        return out

    audiences = [d for d in load_definitions(DEFINITIONS_DIR) if isinstance(d, AudienceDefinition)]
    keys: set[str] = set()
    grew = True
    while grew:  # memberships only of audiences already in
        grew = False
        for d in audiences:
            r = rows(d.conditions)
            ok = all(
                (isinstance(c, TraitCondition) and c.source == "custom")
                or (isinstance(c, AudienceCondition) and c.audience in keys)
                for c in r
            )
            if ok and d.key not in keys:
                keys.add(d.key)
                grew = True
    return keys


def paired(engines: list[Any], events: list[ProfileEvent], reps: int = 3) -> list[dict[str, Any]]:
    """The engines side by side on the same events (live clock), each on its own records:
    per event, each engine's `on_event` is timed `reps` times on the record as it was
    loaded (`loads` of its saved bytes, as the profile stage reads it; untimed) and the
    fastest counts — on a shared 2-core VM a run's mean is mostly other processes'
    preemptions, which hit whichever call is running. The engines alternate which goes
    first. Returns per engine: µs/event (sum of the per-event minima), p50/p99, changes."""
    n = len(engines)
    profiles: list[dict[str, bytes]] = [{} for _ in engines]
    times: list[list[int]] = [[] for _ in engines]
    changes = [0] * n
    clock = time.perf_counter_ns
    loads = ProfileRecord.loads
    gc.collect()
    gc.disable()
    try:
        for k, ev in enumerate(events):
            for i in range(k % n, k % n + n):
                i %= n
                saved = profiles[i].get(ev.profile_id)
                best = None
                for _ in range(reps):
                    created = saved is None
                    rec = ProfileRecord(profile_id=ev.profile_id) if created else loads(saved)
                    if ev.type == "identify":
                        _apply_traits(rec, ev)
                    _apply_external_ids(rec, ev)
                    _apply_metadata(rec, ev, created)
                    a = clock()
                    out = engines[i].on_event(rec, ev, ev.timestamp)
                    dt = clock() - a
                    best = dt if best is None or dt < best else best
                changes[i] += len(out)
                times[i].append(best)  # type: ignore[arg-type]
                profiles[i][ev.profile_id] = rec.dumps()
    finally:
        gc.enable()
    out_: list[dict[str, Any]] = []
    for i in range(n):
        ts = sorted(times[i])
        total = sum(ts)
        out_.append(
            {
                "us_per_event": round(total / 1000 / len(ts), 1),
                "events_per_s": round(len(ts) / (total / 1e9)),
                "p50_us": round(_pct(ts, 0.50), 1),
                "p99_us": round(_pct(ts, 0.99), 1),
                "changes": changes[i],
            }
        )
    return out_


def compare(events: int, profiles: int, reps: int = 3, seed: int = 7) -> dict[str, Any]:
    """The Python and the native engine side by side (`paired`), on the bench set and on
    its trait-heavy subset."""
    from engage_stream.engine.native import coverage

    internal, _ = _workload(WorkloadSpec(profiles=profiles, events=events, seed=seed))
    parsed = [ProfileEvent.from_json(raw) for raw in internal]
    out: dict[str, Any] = {"events": len(parsed), "profiles": profiles, "reps": reps}
    for name, keys in (("bench set", None), ("trait subset", trait_subset())):
        made = [make_engine(kind, keys) for kind in ENGINES]
        for m in made:
            if isinstance(m, str):
                return {"error": m}
        engines = [m[0] for m in made]  # type: ignore[index]
        n, total = coverage(engines[1])
        py, nat = paired(engines, parsed, reps)
        out[name] = {
            "coverage": f"{n} of {total} definitions native",
            "python": py,
            "native": nat,
            "speedup": round(py["us_per_event"] / nat["us_per_event"], 2),
            "same_changes": py["changes"] == nat["changes"],
        }
    return out


def format_compare(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  engine comparison: {r['error']}"
    lines = [
        f"Engine alone, native core vs the Python reference ({r['events']:,} events, "
        f"{r['profiles']:,} profiles; live clock, records loaded per event, fastest of "
        f"{r['reps']} runs per event):"
    ]
    for name in ("bench set", "trait subset"):
        c = r[name]
        lines.append(f"  {name} ({c['coverage']}):")
        for kind in ENGINES:
            e = c[kind]
            lines.append(
                f"    {kind:7s} {e['events_per_s']:>9,} events/s {e['us_per_event']:6.1f} µs/event "
                f"(p50 {e['p50_us']}, p99 {e['p99_us']}) {e['changes']:,} changes"
            )
        lines.append(
            f"    native / python: {c['speedup']}×, same change count: {c['same_changes']}"
        )
    return "\n".join(lines)


def _ingest(raws: list[tuple[bytes, int]]) -> list[bytes]:
    out = []
    for raw, received in raws:
        ev = parse_message(raw, received)
        ev.profile_id = input_key(ev)
        out.append(ev.to_json())
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def _workload(spec: WorkloadSpec) -> tuple[list[bytes], int]:
    """Internal (ingested) event JSON in event-time order, and the workload's end."""
    wl = Workload(spec)
    return _ingest([(r.value, wl.end_ms) for r in wl.records()]), wl.end_ms


def _pct(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return 0.0
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


class _NoEngine:
    """`engine_only`'s loop without the engine: its own cost, to subtract from CPU time."""

    def on_event(self, profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Any]:
        return []


def engine_only(
    engine: Any,
    events: list[ProfileEvent],
    now: int | None,
    roundtrip: bool = False,
    _cpu_base: bool = True,
) -> dict[str, Any]:
    """Only `engine.on_event` timed; the profile stage's own updates applied untimed.

    `now` None: the clock is each event's time (live); else fixed. `roundtrip`: after each
    event the record is saved and loaded again (`dumps` + `loads`, timed separately), as
    the profile stage does, so the engine always works on a freshly loaded record.

    Wall time per event gives the rate and the percentiles; `cpu_us_per_event` is the
    thread CPU time of the loop minus that of the same loop without the engine — steadier
    than wall time on a VM whose speed drifts (CPU steal), for comparing runs."""
    profiles: dict[str, ProfileRecord] = {}
    times: list[int] = []
    record = times.append
    clock = time.perf_counter_ns
    changes = 0
    rt_ns = 0
    loads = ProfileRecord.loads
    gc.collect()
    gc.disable()  # collections land on random events; the total includes them below
    try:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        for ev in events:
            rec = profiles.get(ev.profile_id)
            created = rec is None
            if rec is None:
                rec = profiles[ev.profile_id] = ProfileRecord(profile_id=ev.profile_id)
            if ev.type == "identify":
                _apply_traits(rec, ev)
            _apply_external_ids(rec, ev)
            _apply_metadata(rec, ev, created)
            t = ev.timestamp if now is None else now
            a = clock()
            changes += len(engine.on_event(rec, ev, t))
            b = clock()
            record(b - a)
            if roundtrip:
                profiles[ev.profile_id] = loads(rec.dumps())
                rt_ns += clock() - b
        cpu = time.thread_time() - c0
        wall = time.perf_counter() - t0
    finally:
        gc.enable()
    engine_s = sum(times) / 1e9
    times.sort()
    n = len(events)
    if _cpu_base and not roundtrip:  # (records without engine state round-trip cheaper)
        base = engine_only(_NoEngine(), events, now, _cpu_base=False)["_cpu_s"]
        cpu_us: float | None = round(max(0.0, cpu - base) * 1e6 / n, 1)
    else:
        cpu_us = None
    state = [len(orjson.dumps(r.engine)) for r in profiles.values()]
    whole = [len(r.dumps()) for r in profiles.values()]
    return {
        "events": n,
        "profiles": len(profiles),
        "events_per_s": round(n / engine_s),
        "us_per_event": round(engine_s * 1e6 / n, 1),
        "p50_us": round(_pct(times, 0.50), 1),
        "p99_us": round(_pct(times, 0.99), 1),
        "max_us": round(times[-1] / 1000, 1) if times else 0.0,
        "cpu_us_per_event": cpu_us,
        "loop_wall_s": round(wall, 2),
        "_cpu_s": cpu,
        "changes": changes,
        "roundtrip_us_per_event": round(rt_ns / 1000 / n, 1) if roundtrip else None,
        "engine_state_bytes_per_profile": round(sum(state) / max(1, len(state))),
        "record_bytes_per_profile": round(sum(whole) / max(1, len(whole))),
        "_profiles": profiles,
    }


def profiles_stage(internal: list[bytes], now: int) -> int:
    """The worker's profiles stage without Kafka: `ProfileStage.apply` per batch of
    CHECKPOINT_EVERY records (processor, engine, output records, audience sizes) over the
    RocksDB layout, each batch's transaction committed locally as a checkpoint's step 3
    does (no changelog sent). Returns the number of output records built."""
    from engage_stream.config import Settings
    from engage_stream.definitions import load_definitions
    from engage_stream.definitions.catalog import Catalog
    from engage_stream.profiles.stage import ProfileStage
    from engage_stream.records import InputRecord
    from engage_stream.state.partition import PartitionState

    catalog = Catalog.from_definitions(load_definitions(DEFINITIONS_DIR))
    tmp = Path(tempfile.mkdtemp(prefix="engage-bench-"))
    settings = Settings(data_dir=tmp)
    stage = ProfileStage(settings, catalog)
    ps = PartitionState(0, PartitionStore(tmp / "p0"))
    records = [InputRecord("profile-events", 0, i, now, b"", v) for i, v in enumerate(internal)]
    built = 0
    try:
        for i in range(0, len(records), CHECKPOINT_EVERY):
            tx = ps.begin()
            built += len(stage.apply(tx, records[i : i + CHECKPOINT_EVERY]).outputs)
            tx.prepare()
            ps.finish(tx, changelog_offset=i)
    finally:
        ps.store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return built


def run(
    events: int,
    profiles: int,
    seed: int = 7,
    history: tuple[int, int, int] | None = (2_000, 20_000, 10),
    engine_kind: str = "python",
) -> dict[str, Any]:
    spec = WorkloadSpec(profiles=profiles, events=events, seed=seed)
    wl = Workload(spec)
    now = wl.end_ms
    raws = [(r.value, now) for r in wl.records()]
    n = len(raws)
    out: dict[str, Any] = {"events": n, "profiles": profiles, "stages_us_per_event": {}}
    stages = out["stages_us_per_event"]

    secs, internal = _timed(lambda: _ingest(raws))
    stages["ingest"] = round(secs * 1e6 / n, 1)
    psettings = ProcessorSettings()

    def profile_memory(
        engine: Any = None, versions: dict[str, int] | None = None, live: bool = False
    ) -> None:
        proc = ProfileProcessor(engine, psettings, versions)
        store = ProfileStore(MemoryKV())
        for raw in internal:
            ev = ProfileEvent.from_json(raw)
            proc.apply(store, ev, ev.timestamp if live else now)

    secs, _ = _timed(profile_memory)
    stages["profile_memory"] = round(secs * 1e6 / n, 1)

    def profile_rocksdb(engine: Any = None, versions: dict[str, int] | None = None) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="engage-bench-"))
        ps = PartitionStore(tmp / "p0")
        try:
            proc = ProfileProcessor(engine, psettings, versions)
            for i in range(0, n, CHECKPOINT_EVERY):
                tx = Transaction(ps)
                store = ProfileStore(tx)
                for raw in internal[i : i + CHECKPOINT_EVERY]:
                    proc.apply(store, ProfileEvent.from_json(raw), now)
                ps.write(tx.writes, changelog_offset=i, source_offset=i)
        finally:
            ps.close()
            shutil.rmtree(tmp, ignore_errors=True)

    secs, _ = _timed(profile_rocksdb)
    stages["profile_rocksdb"] = round(secs * 1e6 / n, 1)

    made = make_engine(engine_kind)
    if isinstance(made, str):
        out["engine"] = made
        return out
    engine, versions = made
    parsed = [ProfileEvent.from_json(raw) for raw in internal]

    live = engine_only(engine, parsed, None)
    fresh = engine_only(make_engine(engine_kind)[0], parsed, None, roundtrip=True)  # type: ignore[index]
    backlog = engine_only(make_engine(engine_kind)[0], parsed, now)  # type: ignore[index]
    for r in (live, fresh, backlog):
        r.pop("_profiles"), r.pop("_cpu_s")
    stages["engine_only"] = live["us_per_event"]
    stages["engine_only_fresh"] = fresh["us_per_event"]
    stages["record_roundtrip"] = fresh["roundtrip_us_per_event"]
    stages["engine_only_backlog"] = backlog["us_per_event"]
    out["engine_only"] = live
    out["engine_only_fresh"] = fresh
    out["engine_only_backlog"] = backlog

    secs, _ = _timed(lambda: profile_memory(live=True))
    stages["profile_memory_live"] = round(secs * 1e6 / n, 1)
    secs, _ = _timed(lambda: profile_memory(make_engine(engine_kind)[0], versions, live=True))  # type: ignore[index]
    stages["processor_engine"] = round(secs * 1e6 / n, 1)
    secs, _ = _timed(lambda: profile_rocksdb(make_engine(engine_kind)[0], versions))  # type: ignore[index]
    stages["engine"] = round(secs * 1e6 / n, 1)
    secs, outputs = _timed(lambda: profiles_stage(internal, now))
    stages["profiles_stage"] = round(secs * 1e6 / n, 1)
    out["profiles_stage_outputs_per_event"] = round(outputs / n, 2)

    if history is not None:
        hp, he, k = history
        out["history"] = {}
        for mult in (1, k):
            hspec = WorkloadSpec(profiles=hp, events=he, seed=seed, history_multiplier=mult)
            hint, _ = _workload(hspec)
            hev = [ProfileEvent.from_json(raw) for raw in hint]
            r = engine_only(make_engine(engine_kind)[0], hev, None)  # type: ignore[index]
            r.pop("_profiles"), r.pop("_cpu_s")
            out["history"][f"x{mult}"] = r
        out["history"]["multiplier"] = k
    out["engine"] = summary(out, len(versions))
    return out


def summary(r: dict[str, Any], n_defs: int) -> str:
    """One line for run_all's table: the engine-only figures."""
    e = r["engine_only"]
    s = (
        f"{n_defs} definitions; engine alone {e['events_per_s']:,} events/s, "
        f"p50 {e['p50_us']} µs, p99 {e['p99_us']} µs per event, CPU {e['cpu_us_per_event']} "
        f"µs/event; fixed clock (backlog) {r['engine_only_backlog']['us_per_event']} µs/event; "
        f"engine state {e['engine_state_bytes_per_profile']:,} B/profile "
        f"(record {e['record_bytes_per_profile']:,} B)"
    )
    h = r.get("history")
    if h:
        k = h["multiplier"]
        x1, xk = h["x1"], h[f"x{k}"]
        s += (
            f"; history 1× vs {k}×: {x1['us_per_event']} → {xk['us_per_event']} µs/event "
            f"(CPU {x1['cpu_us_per_event']} → {xk['cpu_us_per_event']}), "
            f"state {x1['engine_state_bytes_per_profile']:,} → "
            f"{xk['engine_state_bytes_per_profile']:,} B/profile"
        )
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.engine_bench")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--profiles", type=int, default=20_000)
    p.add_argument("--history-profiles", type=int, default=2_000)
    p.add_argument("--history-events", type=int, default=20_000)
    p.add_argument("--history-multiplier", type=int, default=10)
    p.add_argument("--no-history", action="store_true", help="skip the 1× vs k× comparison")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--engine",
        choices=(*ENGINES, "compare"),
        default="python",
        help="the engine of the stages below; compare: only the engine alone, Python and "
        "native side by side (bench set and trait subset), with the ratio",
    )
    p.add_argument("--reps", type=int, default=3, help="compare: timed runs per event and engine")
    args = p.parse_args(argv)
    if args.engine == "compare":
        c = compare(args.events, args.profiles, args.reps)
        print(format_compare(c))
        if args.json:
            args.json.write_bytes(orjson.dumps(c, option=orjson.OPT_INDENT_2))
        return 0
    history = (
        None
        if args.no_history
        else (args.history_profiles, args.history_events, args.history_multiplier)
    )
    r = run(args.events, args.profiles, history=history, engine_kind=args.engine)
    print(f"{r['events']:,} events, {r['profiles']:,} profiles, in process (no Kafka):")
    for k, v in r["stages_us_per_event"].items():
        print(f"  {k:24s} {v:8.1f} µs/event  ({1e6 / v:,.0f} events/s)")
    for name in ("engine_only", "engine_only_fresh", "engine_only_backlog"):
        e = r.get(name)
        if e:
            print(
                f"  {name}: {e['events_per_s']:,} events/s, {e['us_per_event']} µs/event "
                f"(p50 {e['p50_us']}, p99 {e['p99_us']}, max {e['max_us']}; CPU "
                f"{e['cpu_us_per_event']}), "
                f"{e['changes']:,} changes, engine state "
                f"{e['engine_state_bytes_per_profile']:,} B/profile, record "
                f"{e['record_bytes_per_profile']:,} B/profile"
            )
    h = r.get("history")
    if h:
        k = h["multiplier"]
        print(f"  history (engine alone, live clock), same profiles, 1× vs {k}× events:")
        for name in ("x1", f"x{k}"):
            e = h[name]
            print(
                f"    {name:4s} {e['events']:>9,} events {e['events_per_s']:>9,}/s "
                f"{e['us_per_event']:6.1f} µs/event (CPU {e['cpu_us_per_event']}) p99 "
                f"{e['p99_us']:6.1f}  state "
                f"{e['engine_state_bytes_per_profile']:,} B/profile"
            )
    print(f"  engine: {r['engine']}")
    if args.json:
        args.json.write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
