"""Each hot-path change on its own: the old way and the new way of one step, same process,
same inputs, interleaved, best of N — µs per event (per record where that is the unit).

Why: `engine_bench` says how much the stages cost together, on a shared VM whose speed
drifts by 2× between minutes; a per-step A/B in one process is stable enough to say which
change bought what. "Old" is written out here (or is the path still used as a fallback),
so this keeps working after the old code is gone.

    python -m bench.hotpath_micro [--events 20000] [--rounds 5]
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
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from sortedcontainers import SortedDict

from bench.workload import Workload, WorkloadSpec
from engage_stream import metrics
from engage_stream.events import ProfileEvent
from engage_stream.identity.resolver import input_key
from engage_stream.ingest.validate import parse_message, parse_object
from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.transaction import Transaction
from engage_stream.stream.producing import KeyPartitioner, murmur2


def _best(fn: Callable[[], Any], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e6 / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hotpath_micro")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--profiles", type=int, default=4_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    wl = Workload(WorkloadSpec(profiles=args.profiles, events=args.events, seed=7))
    raws = [r.value for r in wl.records()]
    n = len(raws)
    events = [parse_message(r, 0) for r in raws]
    for e in events:
        e.profile_id = input_key(e)
    internal = [e.to_json() for e in events]
    keys = [e.profile_id.encode() for e in events]
    rows: list[tuple[str, Callable[[], Any], Callable[[], Any], int]] = []

    # ingest validation: the pydantic models for every message vs the checked fast path
    rows.append(
        (
            "ingest: validate + normalise",
            lambda: [parse_object(orjson.loads(r), 0, r) for r in raws],
            lambda: [parse_message(r, 0) for r in raws],
            n,
        )
    )

    # ProfileEvent (de)serialisation
    def construct_old(raw: bytes) -> ProfileEvent:  # the former from_json
        d = orjson.loads(raw)
        d.setdefault("profile_id", "")
        for k in ("event", "user_id", "anonymous_id", "group_id", "previous_id"):
            d.setdefault(k, None)
        for k in ("properties", "traits", "context"):
            d.setdefault(k, {})
        return ProfileEvent.model_construct(**d)

    rows.append(
        (
            "ProfileEvent.from_json",
            lambda: [construct_old(r) for r in internal],
            lambda: [ProfileEvent.from_json(r) for r in internal],
            n,
        )
    )
    rows.append(
        (
            "ProfileEvent.to_json",
            lambda: [orjson.dumps(e.model_dump(exclude_defaults=True)) for e in events],
            lambda: [e.to_json() for e in events],
            n,
        )
    )

    # placing ingest's output records: murmur2 per record vs the cached partitioner
    def place_cached() -> None:
        part = KeyPartitioner(4)
        for k in keys:
            part(k)

    rows.append(
        (
            "partition by key (murmur2)",
            lambda: [(aiokafka_murmur2(k) & 0x7FFFFFFF) % 4 for k in keys],
            place_cached,
            n,
        )
    )
    rows.append(
        (
            "  murmur2 alone (cache misses)",
            lambda: [aiokafka_murmur2(k) for k in keys],
            lambda: [murmur2(k) for k in keys],
            n,
        )
    )

    # metrics: labels() per event vs counted per batch, one cached child
    def per_event() -> None:
        for e in events:
            metrics.events_consumed.labels(e.type).inc()

    def per_batch() -> None:
        for i in range(0, n, 500):
            counts: dict[str, int] = {}
            for e in events[i : i + 500]:
                counts[e.type] = counts.get(e.type, 0) + 1
            for kind, c in counts.items():
                metrics.labelled(metrics.events_consumed, kind).inc(c)

    rows.append(("ingest metrics", per_event, per_batch, n))

    # the transaction's write buffer: SortedDict vs dict (+ sorted index only when ranged)
    tx_keys = [b"h:" + k + b"\x00%013d" % i for i, k in enumerate(keys)]

    def sorted_writes() -> None:
        w: SortedDict = SortedDict()
        for i in range(0, n, 500):
            w = SortedDict()
            for k in tx_keys[i : i + 500]:
                w[k] = b"v"
                w[k[:-4]] = b"v"
                _ = k in w

    def dict_writes() -> None:
        tx = Transaction(None)  # type: ignore[arg-type]
        for i in range(0, n, 500):
            tx = Transaction(None)  # type: ignore[arg-type]
            for k in tx_keys[i : i + 500]:
                tx.put(k, b"v")
                tx.put(k[:-4], b"v")
                _ = k in tx.writes

    rows.append(("Transaction put (2 keys/event)", sorted_writes, dict_writes, n))

    # prune + forget per event over RocksDB: two range scans vs the header's answer
    tmp = Path(tempfile.mkdtemp(prefix="engage-micro-"))
    ps = PartitionStore(tmp / "p")
    proc = ProfileProcessor(None, ProcessorSettings())
    now = max(e.timestamp for e in events) + 1
    for i in range(0, n, 500):
        tx = Transaction(ps)
        store = ProfileStore(tx)
        for e in events[i : i + 500]:
            proc.apply(store, e, now)
        ps.write(tx.writes, changelog_offset=i, source_offset=i)
    pids = [e.profile_id for e in events]

    def scans() -> None:
        tx = Transaction(ps)
        for pid in pids:
            h = b"h:" + pid.encode() + b"\x00"
            list(tx.range(h, h + b"%013d" % (now - 90 * 86_400_000)))
            d = b"e:" + pid.encode() + b"\x00"
            list(tx.range(d, d + b"%013d" % (now - 86_400_000)))

    def header() -> None:
        store = ProfileStore(Transaction(ps))
        for pid in pids:
            store.get(pid)
            store.prune_history(pid, now - 90 * 86_400_000)
            store.forget_seen_before(pid, now - 86_400_000, 21_600_000)

    def header_read_only() -> None:
        store = ProfileStore(Transaction(ps))
        for pid in pids:
            store.get(pid)

    rows.append(("prune + dedup sweep check", scans, header, n))
    try:
        print(
            f"{n:,} workload events, in process, µs per event, best of {args.rounds} "
            f"(old and new interleaved):"
        )
        print(f"  {'step':34s}{'old':>10s}{'new':>10s}{'saved':>10s}")
        for name, old, new, count in rows:
            o = n_ = float("inf")
            for _ in range(args.rounds):  # interleave, so a slow spell hits both
                o = min(o, _best(old, count, 1))
                n_ = min(n_, _best(new, count, 1))
            if name.startswith("prune"):
                base = min(_best(header_read_only, count, 1) for _ in range(args.rounds))
                n_ = max(0.0, n_ - base)  # the profile read is needed anyway; count the rest
            print(f"  {name:34s}{o:10.2f}{n_:10.2f}{o - n_:10.2f}")
    finally:
        ps.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
