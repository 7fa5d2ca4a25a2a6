"""What compressing the worker's batches costs and saves, on its own broker: the worker's own
`Sender` producing stored profile values (what a checkpoint puts on the changelog) to a
compacted topic in checkpoint-sized batches, then a consumer reading them back as
recovery does — per codec, alternating rounds, the client's and the broker's CPU per
record and the bytes the broker stores.

Why on its own: in the end-to-end runs the broker's CPU per event moved 4× between runs of
the same configuration (the log cleaner compacting earlier runs' changelogs, the first run
after the warm-up), more than any codec's effect; here nothing else runs on the broker.

    python -m bench.compression [--records 30000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import bench_broker, broker_pid, proc_cpu_seconds, quiet_kafka_logs, say
from bench.workload import WorkloadSpec

CODECS = ("none", "zstd", "lz4")
BATCH = 1000  # records per send_many: a backlog checkpoint's changelog part
PARTITIONS = 4


@dataclass
class CodecRound:
    codec: str
    records: int
    produce_s: float
    produce_cpu_us: float  # this process (the worker's Sender), per record
    produce_broker_cpu_us: float | None
    consume_cpu_us: float
    consume_broker_cpu_us: float | None
    stored_bytes: int  # on the broker, all partitions
    value_bytes: int  # the records' values, uncompressed


def profile_values(n: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """`n` stored profile values (key, value) as the bench workload's profiles stage writes
    them (the bench definition set, native engine), cycled if there are fewer."""
    from bench.engine_bench import DEFINITIONS_DIR, _workload
    from engage_stream.config import Settings
    from engage_stream.definitions import load_definitions
    from engage_stream.definitions.catalog import Catalog
    from engage_stream.profiles.stage import ProfileStage
    from engage_stream.records import InputRecord
    from engage_stream.state.keys import PROFILE
    from engage_stream.state.partition import PartitionState
    from engage_stream.state.partition_store import PartitionStore

    internal, now = _workload(WorkloadSpec(profiles=max(100, n // 6), events=n, seed=seed))
    tmp = Path(tempfile.mkdtemp(prefix="engage-bench-codec-"))
    values: list[tuple[bytes, bytes]] = []
    try:
        stage = ProfileStage(
            Settings(data_dir=tmp), Catalog.from_definitions(load_definitions(DEFINITIONS_DIR))
        )
        ps = PartitionState(0, PartitionStore(tmp / "p0"))
        records = [InputRecord("p", 0, i, now, b"", v) for i, v in enumerate(internal)]
        for i in range(0, len(records), BATCH):
            tx = ps.begin()
            stage.apply(tx, records[i : i + BATCH])
            writes = tx.prepare()
            values += [(k, v) for k, v in writes.items() if k.startswith(PROFILE) and v]
            ps.finish(tx, changelog_offset=i)
        ps.store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [values[i % len(values)] for i in range(n)]


async def _produce(
    bootstrap: str, topic: str, codec: str, values: list[tuple[bytes, bytes]]
) -> None:
    from engage_stream.records import OutgoingRecord
    from engage_stream.stream.options import ProducerOptions
    from engage_stream.stream.producing import Sender

    sender = Sender(bootstrap, ProducerOptions(compression_type=codec))
    await sender.start()
    try:
        for i in range(0, len(values), BATCH):
            await sender.send_many([OutgoingRecord(topic, k, v) for k, v in values[i : i + BATCH]])
    finally:
        await sender.stop()


async def _consume(bootstrap: str, topic: str, n: int) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        got = 0
        while got < n:
            for recs in (await consumer.getmany(timeout_ms=1000, max_records=BATCH)).values():
                got += len(recs)
    finally:
        await consumer.stop()


def _create(bootstrap: str, topic: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    PARTITIONS,
                    1,
                    topic_configs={"cleanup.policy": "compact", "segment.bytes": str(64 << 20)},
                )
            ]
        )
    finally:
        admin.close()


def stored_bytes(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> int:
    """What the broker holds of `topic` on disk, all partitions (the log dirs' sizes)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return sum(
            p["partition_size"]
            for broker in admin.describe_log_dirs({topic: list(range(partitions))})
            for d in broker["log_dirs"]
            for t in d["topics"]
            if t["name"] == topic
            for p in t["partitions"]
        )
    finally:
        admin.close()


def one_round(
    bootstrap: str, bpid: int | None, codec: str, tag: str, values: list[Any]
) -> CodecRound:
    topic = f"codec-{codec}-{tag}"
    _create(bootstrap, topic)
    n = len(values)

    def cpu() -> tuple[float, float | None]:
        return time.process_time(), proc_cpu_seconds(bpid) if bpid else None

    def per(b0: float | None, b1: float | None) -> float | None:
        return round((b1 - b0) * 1e6 / n, 2) if b0 is not None and b1 is not None else None

    c0, b0 = cpu()
    t0 = time.perf_counter()
    asyncio.run(_produce(bootstrap, topic, codec, values))
    secs = time.perf_counter() - t0
    c1, b1 = cpu()
    asyncio.run(_consume(bootstrap, topic, n))
    c2, b2 = cpu()
    return CodecRound(
        codec,
        n,
        round(secs, 2),
        round((c1 - c0) * 1e6 / n, 2),
        per(b0, b1),
        round((c2 - c1) * 1e6 / n, 2),
        per(b1, b2),
        stored_bytes(bootstrap, topic),
        sum(len(v) for _, v in values),
    )


def run(bootstrap: str, bpid: int | None, records: int, rounds: int, tag: str) -> dict[str, Any]:
    say(f"compression: making {records:,} stored profile values (the profiles stage, in process)")
    values = profile_values(records)
    out: list[CodecRound] = []
    for r in range(rounds):
        order = CODECS if r % 2 == 0 else CODECS[::-1]
        for codec in order:
            res = one_round(bootstrap, bpid, codec, f"{tag}-{r}", values)
            say(
                f"  {codec}: produce {res.produce_cpu_us} µs/record (broker "
                f"{res.produce_broker_cpu_us}), consume {res.consume_cpu_us} (broker "
                f"{res.consume_broker_cpu_us}), stored {res.stored_bytes / 1e6:.1f} MB"
            )
            out.append(res)
    return {"records": records, "rounds": [asdict(x) for x in out]}


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2]


def report(r: dict[str, Any]) -> str:
    rows = r["rounds"]
    by: dict[str, list[dict[str, Any]]] = {}
    for x in rows:
        by.setdefault(x["codec"], []).append(x)
    value_mb = rows[0]["value_bytes"] / 1e6
    lines = [
        f"Compressed batches: {r['records']:,} stored profile values ({value_mb:.1f} MB), "
        f"batches of {BATCH}, compacted topic; median of {len(by['none'])} alternating rounds, "
        "µs per record",
        f"  {'codec':8s} {'produce':>9s} {'broker':>8s} {'consume':>9s} {'broker':>8s} "
        f"{'stored MB':>10s} {'broker ÷ none':>14s}",
    ]
    base = None
    for codec in CODECS:
        xs = by.get(codec, [])
        if not xs:
            continue
        med = {k: _median([x[k] or 0.0 for x in xs]) for k in xs[0] if k != "codec"}
        broker = med["produce_broker_cpu_us"] + med["consume_broker_cpu_us"]
        base = broker if codec == "none" else base
        ratio = f"{broker / base:.2f}×" if base else "—"
        lines.append(
            f"  {codec:8s} {med['produce_cpu_us']:>9.2f} {med['produce_broker_cpu_us']:>8.2f} "
            f"{med['consume_cpu_us']:>9.2f} {med['consume_broker_cpu_us']:>8.2f} "
            f"{med['stored_bytes'] / 1e6:>10.1f} {ratio:>14s}"
        )
    return "\n".join(lines)


def run_own_broker(records: int, rounds: int, port: int = 39930) -> dict[str, Any]:
    with bench_broker(port) as cfg:
        return run(cfg.bootstrap, broker_pid(cfg), records, rounds, str(int(time.time())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.compression", description=__doc__.split("\n")[0]
    )
    p.add_argument("--records", type=int, default=30_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--port", type=int, default=39930, help="its own broker's port")
    args = p.parse_args(argv)
    quiet_kafka_logs()
    print(report(run_own_broker(args.records, args.rounds, args.port)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
