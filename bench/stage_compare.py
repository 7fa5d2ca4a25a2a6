"""The worker's hot path in process, this checkout against a baseline commit, side by side.

Why: the end-to-end figure needs a broker and says little about which change bought what;
this runs the same stages over the same events twice — once with `engage_stream` from a
baseline commit (exported with `git archive` into a temporary directory), once with the
working tree — each in its own fresh interpreter, and prints µs/event next to each other.
No broker: Kafka is replaced by a sender that only collects records.

Stages (the same workload events throughout, µs per event):
- `ingest`: `parse_message` + canonical id + `ProfileEvent.to_json`;
- `ingest_stage`: `IngestStage.handle` over consumer records in batches of 500 (adds the
  stage's own bookkeeping: metrics, output records);
- `decode`: `ProfileEvent.from_json` of ingest's output;
- `profile_memory`: `ProfileProcessor.apply` over `MemoryKV`;
- `profile_rocksdb`: the same over `Transaction` + `PartitionStore`, one WriteBatch per 500,
  with the clock fixed (draining a backlog: nothing ages out, as in the e2e run);
- `profile_steady`: the same with the clock following event time, 30-day history and 24 h
  dedup window, so history and dedup entries age out all the time (a long-running worker);
- `profiles_stage`: `StageBatches.handle` (stage + checkpoint) over a
  `PartitionStore` — decode, apply, metrics, changelog records, the local batch;
- `changelog/event`: changelog records the checkpoints produced per event (not µs).

    python -m bench.stage_compare [--baseline REF] [--events 100000] [--profiles 20000]

`--baseline` defaults to the commit before the hot-path work; `--baseline none` measures
this checkout only. The trees run alternately (`--rounds`, default 2) and each stage keeps
its best time: on a shared VM a slow spell otherwise lands on one side only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

BASELINE_REF = "42e983c"  # stream layer with batched stages, before the hot-path work
REPO = Path(__file__).resolve().parent.parent
BATCH = 500
STAGES = (
    "ingest",
    "ingest_stage",
    "decode",
    "profile_memory",
    "profile_rocksdb",
    "profile_steady",
    "profiles_stage",
)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


class _Sink:
    """Stands in for `Sender`: keeps nothing, answers with increasing offsets."""

    def __init__(self) -> None:
        self.records = 0
        self._next: dict[tuple[str, int], int] = {}
        self.ready = True

    async def send_many(self, records: list[Any]) -> dict[tuple[str, int], int]:
        last: dict[tuple[str, int], int] = {}
        for rec in records:
            tp = (rec.topic, rec.partition if rec.partition is not None else 0)
            off = self._next.get(tp, 0)
            self._next[tp] = off + 1
            last[tp] = off
        self.records += len(records)
        return last


def child(events: int, profiles: int, repeat: int) -> dict[str, Any]:
    """Runs in a fresh interpreter whose `engage_stream` is the tree under test."""
    from aiokafka import TopicPartition
    from aiokafka.structs import ConsumerRecord

    from bench.workload import Workload, WorkloadSpec
    from engage_stream.config import Settings
    from engage_stream.events import ProfileEvent
    from engage_stream.identity.resolver import input_key
    from engage_stream.ingest.validate import parse_message
    from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
    from engage_stream.profiles.stage import ProfileStage
    from engage_stream.profiles.store import ProfileStore
    from engage_stream.state.checkpoint import Committable
    from engage_stream.state.memory import MemoryKV
    from engage_stream.state.partition import PartitionState
    from engage_stream.state.partition_store import PartitionStore
    from engage_stream.state.transaction import Transaction
    from engage_stream.stream.ingest_stage import IngestStage
    from engage_stream.stream.partitions import PartitionManager
    from engage_stream.stream.stage_batches import StageBatches

    wl = Workload(WorkloadSpec(profiles=profiles, events=events, seed=7))
    now = int(time.time() * 1000)
    raws = [r.value for r in wl.records()]
    n = len(raws)
    tmp = Path(tempfile.mkdtemp(prefix="engage-stage-"))
    settings = Settings(data_dir=tmp / "state")

    def ingest() -> list[bytes]:
        out = []
        for raw in raws:
            ev = parse_message(raw, now)
            ev.profile_id = input_key(ev)
            out.append(ev.to_json())
        return out

    internal = ingest()

    def ingest_stage() -> int:
        sink = _Sink()
        stage = IngestStage(settings, sink, Committable())
        tp = TopicPartition("segment.track", 0)
        recs = [
            ConsumerRecord("segment.track", 0, i, now, 0, None, raw, None, 0, len(raw), ())
            for i, raw in enumerate(raws)
        ]

        async def go() -> None:
            for i in range(0, n, BATCH):
                await stage.handle({tp: recs[i : i + BATCH]})

        asyncio.run(go())
        return sink.records

    def decode() -> None:
        for raw in internal:
            ProfileEvent.from_json(raw)

    def profile_memory() -> None:
        proc = ProfileProcessor(None, ProcessorSettings())
        store = ProfileStore(MemoryKV())
        for raw in internal:
            proc.apply(store, ProfileEvent.from_json(raw), now)

    def profile_rocksdb(steady: bool = False) -> int:
        path = tmp / ("steady" if steady else "rocks")
        ps = PartitionStore(path)
        keys = 0
        try:
            psettings = (
                ProcessorSettings(history_ms=30 * 86_400_000) if steady else ProcessorSettings()
            )
            proc = ProfileProcessor(None, psettings)
            clock = 0
            for i in range(0, n, BATCH):
                tx = Transaction(ps)
                store = ProfileStore(tx)
                for raw in internal[i : i + BATCH]:
                    ev = ProfileEvent.from_json(raw)
                    clock = max(clock, ev.timestamp) if steady else now
                    proc.apply(store, ev, clock)
                keys += len(tx.writes)
                ps.write(tx.writes, changelog_offset=i, source_offset=i)
        finally:
            ps.close()
            shutil.rmtree(path, ignore_errors=True)
        return keys

    def profiles_stage() -> int:
        sink = _Sink()
        pm = PartitionManager(settings)
        pm.open[0] = PartitionState(0, PartitionStore(pm.path(0)))
        batches = StageBatches(ProfileStage(settings), pm, sink, Committable())
        batches.ready.set()
        tp = TopicPartition(settings.topics.profile_events, 0)
        recs = [
            ConsumerRecord(tp.topic, 0, i, now, 0, b"k", raw, None, 1, len(raw), ())
            for i, raw in enumerate(internal)
        ]

        async def go() -> None:
            for i in range(0, n, BATCH):
                await batches.handle({tp: recs[i : i + BATCH]})

        try:
            asyncio.run(go())
        finally:
            pm.close()
            shutil.rmtree(pm.path(0), ignore_errors=True)
        return sink.records

    runs: dict[str, Callable[[], Any]] = {
        "ingest": ingest,
        "ingest_stage": ingest_stage,
        "decode": decode,
        "profile_memory": profile_memory,
        "profile_rocksdb": profile_rocksdb,
        "profile_steady": lambda: profile_rocksdb(steady=True),
        "profiles_stage": profiles_stage,
    }
    import engage_stream

    out: dict[str, Any] = {"events": n, "code": str(Path(engage_stream.__file__).parent)}
    try:
        for name, fn in runs.items():
            best = None
            for _ in range(repeat):
                secs, result = _timed(fn)
                best = secs if best is None else min(best, secs)
                if name == "profile_rocksdb":
                    out["writes/event"] = round(result / n, 2)
                if name == "profile_steady":
                    out["writes/event (steady)"] = round(result / n, 2)
                if name == "profiles_stage":
                    out["changelog/event"] = round(result / n, 2)
            out[name] = round(best * 1e6 / n, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _run_tree(tree: Path | None, events: int, profiles: int, repeat: int) -> dict[str, Any]:
    # `python -m` puts the working directory first on sys.path: run the child from the
    # tree under test so its `engage_stream` wins; `bench` comes from this checkout.
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    cmd = [
        sys.executable,
        "-m",
        "bench.stage_compare",
        "--child",
        f"--events={events}",
        f"--profiles={profiles}",
        f"--repeat={repeat}",
    ]
    cwd = tree if tree is not None else REPO
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-4000:])
    return orjson.loads(proc.stdout.strip().splitlines()[-1])


def _export(ref: str, dest: Path) -> str:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, check=True
    )
    archive = subprocess.run(
        ["git", "archive", ref, "engage_stream"], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return sha.stdout.decode().strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stage_compare")
    p.add_argument("--baseline", default=BASELINE_REF, help="git ref, or 'none'")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--profiles", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=1, help="best of N per stage, per run")
    p.add_argument("--rounds", type=int, default=2, help="runs per tree, alternating")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(orjson.dumps(child(args.events, args.profiles, args.repeat)).decode())
        return 0
    results: dict[str, dict[str, Any]] = {}

    def keep_best(label: str, r: dict[str, Any]) -> None:
        prev = results.setdefault(label, r)
        for stage in STAGES:
            if stage in r and stage in prev:
                prev[stage] = min(prev[stage], r[stage])

    with tempfile.TemporaryDirectory(prefix="engage-baseline-") as d:
        trees: list[tuple[str, Path | None]] = []
        if args.baseline != "none":
            trees.append((f"baseline {_export(args.baseline, Path(d))}", Path(d)))
        trees.append(("this checkout", None))
        for _ in range(args.rounds):  # alternate, so a slow spell of the machine hits both
            for label, tree in trees:
                keep_best(label, _run_tree(tree, args.events, args.profiles, args.repeat))
    cols = list(results)
    print(
        f"{args.events:,} events, {args.profiles:,} profiles, in process (no Kafka), "
        f"µs/event, best of {args.rounds * args.repeat}:"
    )
    print(
        f"  {'stage':24s}"
        + "".join(f"{c:>22s}" for c in cols)
        + ("   ratio" if len(cols) > 1 else "")
    )
    rows = [*STAGES, "writes/event", "writes/event (steady)", "changelog/event"]
    for stage in rows:
        vals = [results[c].get(stage) for c in cols]
        line = f"  {stage:24s}" + "".join(
            f"{v:>22.1f}" if isinstance(v, float | int) else f"{'-':>22s}" for v in vals
        )
        if len(vals) == 2 and all(isinstance(v, float | int) and v for v in vals):
            line += f"   {vals[0] / vals[1]:5.2f}×"
        print(line)
    print(orjson.dumps(results).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
