"""In-process cost per event of each stage, without Kafka: ingest, profile state, engine.

Why: the end-to-end figure says how fast the worker is; this says where the time goes
before any Kafka client or asyncio cost — the worker's CPU µs/event minus these is the
transport/framework overhead. Stages, each timed over the same workload events:
- `ingest`: `parse_message` (pydantic validation, normalisation) + canonical id + `to_json`;
- `profile_memory`: `ProfileProcessor.apply` over an in-memory store (pure Python cost);
- `profile_rocksdb`: the same over the worker's RocksDB layout — `Transaction` over a
  `PartitionStore`, one WriteBatch per 500 events, as a checkpoint does (no changelog);
- `engine`: the same as `profile_rocksdb` with the engine and the bench definition set
  (bench/definitions/) — skipped with "engine not available yet" until
  `engage_stream.engine.Engine` imports and the definitions load.

    python -m bench.engine_bench [--events 100000] [--profiles 20000]
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

from bench.workload import Workload, WorkloadSpec
from engage_stream.config import Settings
from engage_stream.events import ProfileEvent
from engage_stream.identity.resolver import canonical_profile_id
from engage_stream.ingest.validate import parse_message
from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.memory import MemoryKV
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.transaction import Transaction

DEFINITIONS_DIR = Path(__file__).parent / "definitions"
CHECKPOINT_EVERY = 500


def make_engine(settings: Settings) -> tuple[Any, dict[str, int]] | str:
    """The engine with the bench definition set, or why it is not available.

    The one place to adapt when the engine lands: build `Engine(definitions, settings)`
    from the YAML under bench/definitions/ and return it with `{key: version}`.
    """
    try:
        from engage_stream.engine import Engine  # type: ignore[attr-defined]
    except ImportError:
        return "engine not available yet (engage_stream.engine.Engine cannot be imported)"
    yamls = sorted(DEFINITIONS_DIR.glob("*.y*ml"))
    if not yamls:
        return "bench definitions not written yet (bench/definitions/ has no YAML)"
    try:
        from engage_stream.definitions import load_definitions  # type: ignore[attr-defined]
    except ImportError:
        return "engine present, but engage_stream.definitions.load_definitions is missing"
    definitions = load_definitions(DEFINITIONS_DIR)
    versions = {getattr(d, "key", str(i)): 1 for i, d in enumerate(definitions)}
    return Engine(definitions, settings), versions


def _ingest(raws: list[tuple[bytes, int]]) -> list[bytes]:
    out = []
    for raw, received in raws:
        ev = parse_message(raw, received)
        ev.profile_id = canonical_profile_id(ev)
        out.append(ev.to_json())
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def run(events: int, profiles: int, seed: int = 7) -> dict[str, Any]:
    spec = WorkloadSpec(profiles=profiles, events=events, seed=seed)
    wl = Workload(spec)
    now = int(time.time() * 1000)
    raws = [(r.value, now) for r in wl.records()]
    n = len(raws)
    out: dict[str, Any] = {"events": n, "profiles": profiles, "stages_us_per_event": {}}
    stages = out["stages_us_per_event"]

    secs, internal = _timed(lambda: _ingest(raws))
    stages["ingest"] = round(secs * 1e6 / n, 1)
    psettings = ProcessorSettings()

    def profile_memory() -> None:
        proc = ProfileProcessor(None, psettings)
        store = ProfileStore(MemoryKV())
        for raw in internal:
            proc.apply(store, ProfileEvent.from_json(raw), now)

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

    made = make_engine(Settings())
    if isinstance(made, str):
        out["engine"] = made
    else:
        engine, versions = made
        secs, _ = _timed(lambda: profile_rocksdb(engine, versions))
        stages["engine"] = round(secs * 1e6 / n, 1)
        out["engine"] = f"{len(versions)} definitions"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.engine_bench")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--profiles", type=int, default=20_000)
    args = p.parse_args(argv)
    r = run(args.events, args.profiles)
    print(f"{r['events']:,} events, {r['profiles']:,} profiles, in process (no Kafka):")
    for k, v in r["stages_us_per_event"].items():
        print(f"  {k:16s} {v:8.1f} µs/event  ({1e6 / v:,.0f} events/s)")
    print(f"  engine: {r['engine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
