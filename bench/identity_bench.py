"""What identity resolution costs ingest, in process (no Kafka), against keying the old way.

Issue #10's benchmark. The workload is `bench.workload`'s anonymous-first traffic (most
persons browse anonymously first, ~30 % later identify, some on a second device whose
anonymous profile then merges into theirs, group calls from identified users); the
default workload (70 % known users that always send userId + anonymousId) for context.
Each ingest path handles the same raw Segment messages, in batches as the worker's ingest
consumes them:

- **keyed by `input_key`** (before #10): `parse_message`, the profile key from userId else
  anonymousId (`identity.resolver.input_key`), `to_json` — what ingest did per event;
- **replica route + identity stage**: `parse_message`, `IdentityReplica.route`; a routed
  event gets its profile id and `to_json`; the others (unknown identifier, identifiers of
  several profiles) are serialized for `identity-requests` and, per batch, go through
  `IdentityStage.apply` in one transaction (over a `MemoryStore`, as `replay` runs it, or
  over the worker's RocksDB layout), committed locally; the stage's `engage.identity`
  records then feed the replica as the worker's follower would — before the next batch
  (lag 0), or only after N more batches (lag N: a replica behind sends more events to the
  stage). What is not here: Kafka (the detour through `identity-requests` costs the
  worker one more produce and consume per such event, and the stage's changelog).

Reported: events/s both ways and the ratio, the share of events that needed the
serialized stage, the stage's cost per event it resolves, `route` alone on a complete
replica, the replica's memory per identifier (tracemalloc), and optionally `Replay` (the
identity stage for every event, then the profiles stage with a definition set) against
the same replay keyed by `input_key`.

    python -m bench.identity_bench [--events 100000] [--profiles 20000] [--batch 1000]
        [--repeat 3] [--lags 0,1] [--replay-events 20000] [--replay-definitions DIR]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import code_info, machine_info
from bench.workload import Workload, WorkloadSpec
from engage_stream.config import Settings
from engage_stream.events import ProfileEvent
from engage_stream.identity.replica import IdentityReplica
from engage_stream.identity.resolver import input_key
from engage_stream.identity.stage import IdentityStage
from engage_stream.ingest.validate import parse_message
from engage_stream.records import InputRecord
from engage_stream.state.memory import MemoryStore
from engage_stream.state.transaction import Transaction

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "topologies"
KEYED = "keyed by input_key (before #10)"
STORES = {"memory": "memory", "rocksdb": "RocksDB"}


@dataclass
class IdentityRun:
    """One pass of the identity ingest path over a workload."""

    events: int
    seconds: float
    stage_seconds: float  # IdentityStage.apply + local commit + feeding the replica
    to_stage: int  # events the replica could not route
    created: int
    merged: int
    dead_lettered: int
    identity_records: list[tuple[bytes, bytes]] = field(default_factory=list, repr=False)
    replica: IdentityReplica | None = field(default=None, repr=False)


def _raws(
    spec: WorkloadSpec,
) -> tuple[list[tuple[bytes | None, bytes]], int, dict[str, int], dict[str, int]]:
    """(key, value) of every input record, the receive time, the workload's mix, and how
    many persons sent anything / identified / used a second device."""
    wl = Workload(spec)
    raws, mix = [], {}
    seen: set[int] = set()
    identified: set[int] = set()
    second: set[int] = set()
    for r in wl.records():
        raws.append((r.key, r.value))
        mix[r.kind] = mix.get(r.kind, 0) + 1
        seen.add(r.profile)
        if r.kind == "identify":
            identified.add(r.profile)
        if spec.anonymous_first and b'-d1"' in r.value:
            second.add(r.profile)
    persons = {"seen": len(seen), "identified": len(identified), "second_device": len(second)}
    return raws, wl.end_ms, mix, persons


def keyed(raws: list[tuple[bytes | None, bytes]], received: int) -> float:
    """Ingest before #10: validate, key by input_key, serialize. Returns seconds."""
    gc.collect()
    t = time.perf_counter()
    for _, raw in raws:
        ev = parse_message(raw, received)
        ev.profile_id = input_key(ev)
        ev.to_json()
    return time.perf_counter() - t


class _Graph:
    """The identity stage's partition database: memory (as replay) or RocksDB (as the
    worker; local commit only, no changelog)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._tmp: Path | None = None
        if kind == "memory":
            self.db: Any = MemoryStore()
        else:
            from engage_stream.state.partition import PartitionState
            from engage_stream.state.partition_store import PartitionStore

            self._tmp = Path(tempfile.mkdtemp(prefix="engage-identity-bench-"))
            self.db = PartitionState(0, PartitionStore(self._tmp / "identity"), reported=False)
        self._commits = 0

    def begin(self) -> Transaction:
        if self.kind == "memory":
            return Transaction(self.db, source_offset=self.db.source_offset)
        return self.db.begin()

    def commit(self, tx: Transaction) -> None:
        tx.prepare()
        self._commits += 1
        if self.kind == "memory":
            tx.commit(changelog_offset=None)
        else:
            self.db.finish(tx, changelog_offset=self._commits)

    def close(self) -> None:
        if self._tmp is not None:
            self.db.store.close()
            shutil.rmtree(self._tmp, ignore_errors=True)


def with_identity(
    raws: list[tuple[bytes | None, bytes]],
    received: int,
    batch: int,
    lag: int = 0,
    store: str = "memory",
    keep: bool = False,
) -> IdentityRun:
    """The worker's ingest routing (`stream.ingest_stage`) plus the identity stage, per
    batch; the replica learns a batch's identity records `lag` batches later."""
    settings = Settings()
    identity_topic = settings.topics.identity
    requests_topic = settings.topics.identity_requests
    stage = IdentityStage(settings)
    replica = IdentityReplica(stage.rules)
    route = replica.route
    graph = _Graph(store)
    pending: list[list[tuple[bytes, bytes]]] = []
    kept: list[tuple[bytes, bytes]] = []
    offset = 0
    to_stage = created = merged = failed = 0
    stage_s = 0.0
    gc.collect()
    t0 = time.perf_counter()
    try:
        for i in range(0, len(raws), batch):
            slow: list[InputRecord] = []
            for key, raw in raws[i : i + batch]:
                ev = parse_message(raw, received)
                pid = route(ev)
                if pid is None:
                    slow.append(InputRecord(requests_topic, 0, offset, received, key, ev.to_json()))
                    offset += 1
                else:
                    ev.profile_id = pid
                    ev.to_json()
            s = time.perf_counter()
            learned: list[tuple[bytes, bytes]] = []
            if slow:
                tx = graph.begin()
                res = stage.apply(tx, slow)
                graph.commit(tx)
                to_stage += len(slow)
                created += res.created
                merged += res.merged
                failed += res.failed
                learned = [
                    (r.key, r.value)  # type: ignore[misc]
                    for r in res.outputs
                    if r.topic == identity_topic
                ]
            pending.append(learned)
            while len(pending) > lag:
                for k, v in pending.pop(0):
                    replica.apply(k, v)
            stage_s += time.perf_counter() - s
            if keep:
                kept.extend(learned)
        for learned in pending:  # the follower catches up in the end
            for k, v in learned:
                replica.apply(k, v)
        secs = time.perf_counter() - t0
    finally:
        graph.close()
    return IdentityRun(
        events=len(raws),
        seconds=secs,
        stage_seconds=stage_s,
        to_stage=to_stage,
        created=created,
        merged=merged,
        dead_lettered=failed,
        identity_records=kept,
        replica=replica if keep else None,
    )


def route_alone(replica: IdentityReplica, events: list[ProfileEvent]) -> float:
    """`route` over pre-parsed events on a complete replica: µs per event."""
    route = replica.route
    gc.collect()
    t = time.perf_counter()
    for ev in events:
        route(ev)
    return (time.perf_counter() - t) * 1e6 / max(1, len(events))


def replica_bytes(records: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """(identifiers, bytes) a replica fed these `engage.identity` records holds
    (tracemalloc: the dict, its key and value strings)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        replica = IdentityReplica()
        for k, v in records:
            replica.apply(k, v)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return len(replica), used


# -- replay: identity stage + profiles stage with definitions --------------------------------


def _replays(definitions: Path) -> tuple[Callable[[], Any], Callable[[], Any]]:
    from engage_stream.definitions import load_definitions
    from engage_stream.definitions.catalog import Catalog
    from engage_stream.profiles.stage import TICK_KEY
    from engage_stream.replay import Replay, ReplayRecord

    catalog = Catalog.from_definitions(load_definitions(definitions))

    class KeyedReplay(Replay):
        """Replay without identity resolution: events keyed by input_key, straight to the
        profiles stage (bench only: drives Replay's own batching through its internals)."""

        def _instant(self, requests: list[InputRecord]) -> Iterator[ReplayRecord]:
            at = requests[-1].timestamp
            batch = [self._record("profiles", TICK_KEY, None, at)]
            for rec in requests:
                ev = ProfileEvent.from_json(rec.value)  # type: ignore[arg-type]
                ev.profile_id = input_key(ev)
                batch.append(self._record("profiles", ev.profile_id.encode(), ev.to_json(), at))
            yield from self._profiles(batch)

    return (lambda: Replay(catalog)), (lambda: KeyedReplay(catalog))


def replay_once(make: Callable[[], Any], lines: list[bytes]) -> dict[str, Any]:
    replay = make()
    gc.collect()
    t = time.perf_counter()
    records = sum(1 for _ in replay.run(lines))
    secs = time.perf_counter() - t
    return {
        "seconds": secs,
        "events_per_s": len(lines) / secs,
        "records": records,
        "changes": replay.stats.changes,
    }


# -- the whole run ------------------------------------------------------------------------


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def _spread(xs: list[float]) -> float:
    """(max − min) / median: how much the repeats disagree."""
    m = _med(xs)
    return (max(xs) - min(xs)) / m if m else 0.0


def run_workload(
    name: str, spec: WorkloadSpec, batch: int, repeat: int, lags: list[int], stores: list[str]
) -> dict[str, Any]:
    raws, received, mix, persons = _raws(spec)
    n = len(raws)
    variants = [(lag, "memory") for lag in lags] + [(0, s) for s in stores if s != "memory"]
    base_s: list[float] = []
    runs: dict[str, list[IdentityRun]] = {f"lag{lag}-{s}": [] for lag, s in variants}
    for r in range(repeat):
        order = variants if r % 2 == 0 else variants[::-1]
        if r % 2 == 0:
            base_s.append(keyed(raws, received))
        for lag, store in order:
            runs[f"lag{lag}-{store}"].append(with_identity(raws, received, batch, lag, store))
        if r % 2 == 1:
            base_s.append(keyed(raws, received))
    kept = with_identity(raws, received, batch, 0, "memory", keep=True)  # untimed: state
    assert kept.replica is not None
    events = [parse_message(raw, received) for _, raw in raws]
    route_us = [route_alone(kept.replica, events) for _ in range(repeat)]
    ids, mem = replica_bytes(kept.identity_records)
    base = n / _med(base_s)
    out: dict[str, Any] = {
        "workload": name,
        "events": n,
        "persons": spec.profiles,
        "mix": mix,
        "persons_seen": persons,
        "keyed": {
            "events_per_s": round(base),
            "us_per_event": round(_med(base_s) * 1e6 / n, 2),
            "spread": round(_spread(base_s), 3),
        },
        "identity": {},
        "route_alone_us_per_event": round(_med(route_us), 2),
        "replica_identifiers": ids,
        "replica_bytes": mem,
        "replica_bytes_per_identifier": round(mem / max(1, ids), 1),
        "identity_records": len(kept.identity_records),
        "profiles_created": kept.created,
        "merges": kept.merged,
        "dead_lettered": kept.dead_lettered,
    }
    for key, rs in runs.items():
        secs = [x.seconds for x in rs]
        rate = n / _med(secs)
        to_stage = rs[0].to_stage
        stage_med = _med([x.stage_seconds for x in rs])
        out["identity"][key] = {
            "events_per_s": round(rate),
            "us_per_event": round(_med(secs) * 1e6 / n, 2),
            "spread": round(_spread(secs), 3),
            "ratio": round(rate / base, 3),
            "to_stage": to_stage,
            "to_stage_share": round(to_stage / n, 4),
            "stage_us_per_routed_event": round(stage_med * 1e6 / max(1, to_stage), 1),
            "stage_us_per_event": round(stage_med * 1e6 / n, 2),
            "route_path_us_per_event": round((_med(secs) - stage_med) * 1e6 / n, 2),
            "merges": rs[0].merged,
        }
    return out


def run(
    events: int = 100_000,
    profiles: int = 20_000,
    batch: int = 1000,
    repeat: int = 3,
    lags: tuple[int, ...] = (0, 1),
    stores: tuple[str, ...] = ("memory", "rocksdb"),
    workloads: tuple[str, ...] = ("anonymous-first", "default"),
    replay_events: int = 20_000,
    replay_definitions: Path = TOPOLOGIES,
    seed: int = 7,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": machine_info(),
        "code": code_info(),
        "batch": batch,
        "repeat": repeat,
        "workloads": {},
    }
    for name in workloads:
        spec = WorkloadSpec(
            profiles=profiles, events=events, seed=seed, anonymous_first=name == "anonymous-first"
        )
        out["workloads"][name] = run_workload(name, spec, batch, repeat, list(lags), list(stores))
    if replay_events:
        spec = WorkloadSpec(
            profiles=max(1, profiles * replay_events // max(1, events)),
            events=replay_events,
            seed=seed,
            anonymous_first=True,
        )
        wl = Workload(spec)
        lines = list(wl.lines())
        with_id, without = _replays(replay_definitions)
        a: list[dict[str, Any]] = []
        b: list[dict[str, Any]] = []
        for r in range(repeat):
            if r % 2 == 0:
                b.append(replay_once(without, lines))
                a.append(replay_once(with_id, lines))
            else:
                a.append(replay_once(with_id, lines))
                b.append(replay_once(without, lines))
        ra = _med([x["events_per_s"] for x in a])
        rb = _med([x["events_per_s"] for x in b])
        out["replay"] = {
            "events": len(lines),
            "persons": spec.profiles,
            "definitions": str(replay_definitions.relative_to(ROOT))
            if replay_definitions.is_relative_to(ROOT)
            else str(replay_definitions),
            "with_identity_events_per_s": round(ra),
            "keyed_events_per_s": round(rb),
            "ratio": round(ra / rb, 3),
            "spread": round(
                max(_spread([x["seconds"] for x in a]), _spread([x["seconds"] for x in b])), 3
            ),
            "with_identity_records": a[0]["records"],
            "keyed_records": b[0]["records"],
            "with_identity_changes": a[0]["changes"],
            "keyed_changes": b[0]["changes"],
        }
    return out


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    L: list[str] = []
    w0 = next(iter(r["workloads"].values()))
    L.append(
        f"Identity resolution, in process (no Kafka): {w0['events']:,} events, "
        f"{w0['persons']:,} persons, batches of {r['batch']:,}, median of {r['repeat']} "
        f"alternating runs; {m['cpu']}, {m['cores']} cores, Python {m['python']}"
    )
    L.append(
        f"  {'workload':16s} {'ingest path':52s} {'events/s':>9s} {'µs/ev':>7s} "
        f"{'÷ keyed':>8s} {'to stage':>9s} {'spread':>7s}"
    )
    for name, w in r["workloads"].items():
        k = w["keyed"]
        L.append(
            f"  {name:16s} {KEYED:52s} {k['events_per_s']:>9,} {k['us_per_event']:>7.2f} "
            f"{'1.00×':>8s} {'—':>9s} {k['spread'] * 100:>6.0f}%"
        )
        for key, v in w["identity"].items():
            lag, store = key.split("-")
            behind = "replica current" if lag == "lag0" else f"replica {lag[3:]} batch behind"
            label = f"route + identity stage, {STORES.get(store, store)}, {behind}"
            L.append(
                f"  {name:16s} {label:52s} {v['events_per_s']:>9,} {v['us_per_event']:>7.2f} "
                f"{v['ratio']:>7.2f}× {v['to_stage_share'] * 100:>8.1f}% "
                f"{v['spread'] * 100:>6.0f}%"
            )
    L.append("")
    for name, w in r["workloads"].items():
        v = w["identity"].get("lag0-memory") or next(iter(w["identity"].values()))
        mix = w["mix"]
        total = sum(mix.values())
        shares = ", ".join(f"{t} {c / total * 100:.1f} %" for t, c in sorted(mix.items()))
        p = w["persons_seen"]
        L.append(
            f"  {name}: {shares}; {p['seen']:,} persons sent events, {p['identified']:,} "
            f"({p['identified'] / max(1, p['seen']) * 100:.0f} %) identified"
            + (f", {p['second_device']:,} also on a second device" if p["second_device"] else "")
            + f"; {w['profiles_created']:,} profiles created, {w['merges']:,} merges, "
            f"{w['dead_lettered']} dead-lettered"
        )
        L.append(
            f"    identity stage {v['stage_us_per_routed_event']} µs per event it resolves "
            f"({v['to_stage']:,} events = {v['to_stage_share'] * 100:.1f} %, "
            f"{v['stage_us_per_event']} µs averaged over all events); parse + route + "
            f"to_json {v['route_path_us_per_event']} µs/event vs keyed "
            f"{w['keyed']['us_per_event']}; route alone (complete replica) "
            f"{w['route_alone_us_per_event']} µs/event"
        )
        L.append(
            f"    replica: {w['replica_identifiers']:,} identifiers, "
            f"{w['replica_bytes'] / 1e6:.2f} MB, {w['replica_bytes_per_identifier']:.0f} "
            f"B/identifier (tracemalloc)"
        )
    rp = r.get("replay")
    if rp:
        L.append("")
        L.append(
            f"  Replay ({rp['events']:,} anonymous-first events, {rp['persons']:,} persons, "
            f"definitions {rp['definitions']}): identity stage for every event + profiles "
            f"stage {rp['with_identity_events_per_s']:,} events/s; keyed by input_key "
            f"{rp['keyed_events_per_s']:,} events/s; ratio {rp['ratio']:.2f}× "
            f"(spread {rp['spread'] * 100:.0f}%; records {rp['with_identity_records']:,} vs "
            f"{rp['keyed_records']:,})"
        )
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.identity_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--profiles", type=int, default=20_000, help="persons")
    p.add_argument("--batch", type=int, default=1000, help="records per ingest batch")
    p.add_argument("--repeat", type=int, default=3, help="alternating runs per side")
    p.add_argument("--lags", default="0,1", help="replica lags to run, in batches")
    p.add_argument(
        "--stores", default="memory,rocksdb", help="identity stage databases (memory, rocksdb)"
    )
    p.add_argument("--workloads", default="anonymous-first,default")
    p.add_argument("--replay-events", type=int, default=20_000, help="0: skip the replay")
    p.add_argument("--replay-definitions", type=Path, default=TOPOLOGIES)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    r = run(
        events=args.events,
        profiles=args.profiles,
        batch=args.batch,
        repeat=args.repeat,
        lags=tuple(int(x) for x in args.lags.split(",") if x),
        stores=tuple(s for s in args.stores.split(",") if s),
        workloads=tuple(s for s in args.workloads.split(",") if s),
        replay_events=args.replay_events,
        replay_definitions=args.replay_definitions.resolve(),
        seed=args.seed,
    )
    print(report(r))
    if args.json:
        args.json.write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
