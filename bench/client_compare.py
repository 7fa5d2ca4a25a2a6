"""Data-path clients side by side: aiokafka (what the worker uses) vs confluent-kafka (librdkafka).

Why: issue #14 moves the batch consumer loops and producers to confluent-kafka only if it
measures cheaper per record on this machine. Both clients do what the worker does, on one
real broker of this module's own, in the same invocation, in alternating rounds:

- **consume**: a pre-produced topic of N records (the bench workload's event JSON, 4
  partitions), read in batches (aiokafka `getmany(max_records=B)` / confluent
  `consume(num_messages=B)`), each record's key and value touched (not decoded: decoding
  costs both the same), and the batch's next offsets committed explicitly (synchronously)
  after every batch, like the worker's checkpoint does.
- **produce**: N keyed records with a header through the idempotent producer (acks=all,
  enable.idempotence), B records at a time, each batch waited for until every record is
  acknowledged (the worker waits for its checkpoint's records before committing).
  aiokafka twice: `send()` per record, and per-partition `BatchBuilder`s submitted with
  `send_batch` (the worker's `Sender.send_many` way); confluent `produce()` + `flush()`.

Per side and phase: records/s from the first record received (consume; group join excluded)
or the first send (produce) to the last; process CPU µs/record (`time.process_time`, all
threads, librdkafka's included); the broker's CPU µs/record (/proc of the broker); p50/p99
of the per-batch latency (one getmany/consume + commit; one batch sent + acknowledged). Each
figure is the median over the rounds; `ratio` is confluent ÷ aiokafka (records/s: > 1 means
confluent is faster; CPU: < 1 means confluent is cheaper).

    python -m bench.client_compare [--quick] [--port 38900]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from bench.common import (
    BENCH_DIR,
    bench_broker,
    broker_pid,
    machine_info,
    percentile,
    proc_cpu_seconds,
    quiet_kafka_logs,
    run_id,
    say,
)
from bench.workload import BatchProducer, Workload, WorkloadSpec
from engage_stream.stream.options import ProducerOptions
from engage_stream.stream.producing import partition_for

DEFAULT_PORT = 38900
PARTITIONS = 4
HEADER = ("engage-source", b"bench-client-compare")
HEADERS = [HEADER]  # one list for every record, as the worker reuses its headers


@dataclass(frozen=True)
class ClientSettings:
    """One set of knobs, given to both clients in each one's spelling."""

    batch: int = 1000  # the worker's batch_size
    fetch_max_bytes: int = 32 * 1024 * 1024  # ConsumerOptions.fetch_max_bytes
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    linger_ms: int = ProducerOptions().linger_ms
    producer_batch_bytes: int = 1024 * 1024  # ProducerOptions.max_batch_bytes

    def aiokafka_consumer(self) -> dict[str, Any]:
        return {
            "fetch_max_bytes": self.fetch_max_bytes,
            "max_partition_fetch_bytes": self.max_partition_fetch_bytes,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
        }

    def confluent_consumer(self) -> dict[str, Any]:
        return {
            "fetch.max.bytes": self.fetch_max_bytes,
            "max.partition.fetch.bytes": self.max_partition_fetch_bytes,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }

    def aiokafka_producer(self) -> dict[str, Any]:
        return {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": self.linger_ms,
            "max_batch_size": self.producer_batch_bytes,
        }

    def confluent_producer(self) -> dict[str, Any]:
        return {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": self.linger_ms,
            "batch.size": self.producer_batch_bytes,
            "compression.type": "none",
        }


@dataclass
class PhaseResult:
    client: str
    phase: str
    records: int
    seconds: float
    records_per_s: float
    cpu_us_per_record: float
    broker_cpu_us_per_record: float | None
    batch_p50_ms: float | None
    batch_p99_ms: float | None


class _Meter:
    """Wall, process CPU and broker CPU between `start()` and `stop()`."""

    def __init__(self, bpid: int | None) -> None:
        self.bpid = bpid
        self.t0 = self.c0 = 0.0
        self.b0: float | None = None
        self.latencies: list[float] = []

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        self.b0 = proc_cpu_seconds(self.bpid) if self.bpid else None

    def result(self, client: str, phase: str, n: int) -> PhaseResult:
        secs = max(1e-9, time.perf_counter() - self.t0)
        cpu = time.process_time() - self.c0
        b1 = proc_cpu_seconds(self.bpid) if self.bpid else None
        lat = sorted(self.latencies)
        p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
        return PhaseResult(
            client=client,
            phase=phase,
            records=n,
            seconds=round(secs, 3),
            records_per_s=round(n / secs),
            cpu_us_per_record=round(cpu * 1e6 / max(1, n), 2),
            broker_cpu_us_per_record=(
                round((b1 - self.b0) * 1e6 / max(1, n), 2)
                if b1 is not None and self.b0 is not None
                else None
            ),
            batch_p50_ms=round(p50 * 1000, 2) if p50 is not None else None,
            batch_p99_ms=round(p99 * 1000, 2) if p99 is not None else None,
        )


# -- consume --------------------------------------------------------------------------------


async def consume_aiokafka(
    bootstrap: str, topic: str, group: str, n: int, s: ClientSettings, bpid: int | None
) -> PhaseResult:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, **s.aiokafka_consumer()
    )
    await consumer.start()
    meter = _Meter(bpid)
    seen = 0
    nbytes = 0
    try:
        deadline = time.monotonic() + 300
        while seen < n and time.monotonic() < deadline:
            t = time.perf_counter()
            batches = await consumer.getmany(timeout_ms=1000, max_records=s.batch)
            if not batches:
                continue
            if not seen:
                meter.start()
            offsets = {}
            for tp, records in batches.items():
                for rec in records:
                    nbytes += len(rec.value) + len(rec.key or b"")
                seen += len(records)
                offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
            await consumer.commit(offsets)
            meter.latencies.append(time.perf_counter() - t)
        return meter.result("aiokafka", "consume", seen)
    finally:
        await consumer.stop()


def consume_confluent(
    bootstrap: str, topic: str, group: str, n: int, s: ClientSettings, bpid: int | None
) -> PhaseResult:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, **s.confluent_consumer()}
    )
    consumer.subscribe([topic])
    meter = _Meter(bpid)
    seen = 0
    nbytes = 0
    try:
        deadline = time.monotonic() + 300
        while seen < n and time.monotonic() < deadline:
            t = time.perf_counter()
            msgs = consumer.consume(num_messages=s.batch, timeout=1.0)
            if not msgs:
                continue
            if not seen:
                meter.start()
            last: dict[int, int] = {}
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
                nbytes += len(m.value()) + len(m.key() or b"")
                last[m.partition()] = m.offset()
            seen += len(msgs)
            consumer.commit(
                offsets=[TopicPartition(topic, p, o + 1) for p, o in last.items()],
                asynchronous=False,
            )
            meter.latencies.append(time.perf_counter() - t)
        return meter.result("confluent", "consume", seen)
    finally:
        consumer.close()


# -- produce --------------------------------------------------------------------------------


def _outgoing(records: list[tuple[bytes, bytes]], n: int) -> list[tuple[bytes, bytes]]:
    return [records[i % len(records)] for i in range(n)]


async def _send_each(producer: Any, topic: str, chunk: list[tuple[bytes, bytes]]) -> list[Any]:
    """`send()` per record."""
    return [await producer.send(topic, value=v, key=k, headers=HEADERS) for k, v in chunk]


async def _send_batched(
    producer: Any, topic: str, chunk: list[tuple[bytes, bytes]], parts: dict[bytes, int]
) -> list[Any]:
    """Per-partition BatchBuilders + send_batch: the worker's `Sender.send_many` way."""
    builders: dict[int, Any] = {}
    futs = []
    for k, v in chunk:
        p = parts.get(k)
        if p is None:
            p = parts[k] = partition_for(k, PARTITIONS)
        b = builders.get(p)
        if b is None:
            b = builders[p] = producer.create_batch()
        if b.append(key=k, value=v, timestamp=None, headers=HEADERS) is None:
            futs.append(await producer.send_batch(b, topic, partition=p))
            b = builders[p] = producer.create_batch()
            b.append(key=k, value=v, timestamp=None, headers=HEADERS)
    for p, b in builders.items():
        futs.append(await producer.send_batch(b, topic, partition=p))
    return futs


async def produce_aiokafka(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes, bytes]],
    s: ClientSettings,
    bpid: int | None,
    batched: bool,
) -> PhaseResult:
    """aiokafka's idempotent producer, `s.batch` records at a time, each lot acknowledged."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **s.aiokafka_producer())
    await producer.start()
    await producer.client._wait_on_metadata(topic)
    meter = _Meter(bpid)
    parts: dict[bytes, int] = {}
    try:
        meter.start()
        for i in range(0, len(records), s.batch):
            t = time.perf_counter()
            chunk = records[i : i + s.batch]
            if batched:
                futs = await _send_batched(producer, topic, chunk, parts)
            else:
                futs = await _send_each(producer, topic, chunk)
            await asyncio.gather(*futs)
            meter.latencies.append(time.perf_counter() - t)
        return meter.result("aiokafka-batch" if batched else "aiokafka", "produce", len(records))
    finally:
        await producer.stop()


def produce_confluent(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes, bytes]],
    s: ClientSettings,
    bpid: int | None,
) -> PhaseResult:
    from confluent_kafka import KafkaException, Producer

    producer = Producer({"bootstrap.servers": bootstrap, **s.confluent_producer()})
    producer.list_topics(topic, timeout=10)
    errors: list[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    headers = [HEADER]
    meter = _Meter(bpid)
    meter.start()
    for i in range(0, len(records), s.batch):
        t = time.perf_counter()
        for k, v in records[i : i + s.batch]:
            producer.produce(topic, value=v, key=k, headers=headers, on_delivery=delivered)
        if producer.flush(30) != 0:
            raise TimeoutError("confluent producer: records not acknowledged in 30 s")
        if errors:
            raise KafkaException(errors[0])
        meter.latencies.append(time.perf_counter() - t)
    return meter.result("confluent", "produce", len(records))


# -- the run --------------------------------------------------------------------------------


def create_topics(bootstrap: str, names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futs = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names])
    for f in futs.values():
        f.result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=10).topics
        if all(
            t in md
            and len(md[t].partitions) == PARTITIONS
            and all(p.leader >= 0 for p in md[t].partitions.values())
            for t in names
        ):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no leaders for {names}")


async def preload(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = BatchProducer(bootstrap)
    await producer.start()
    try:
        for k, v in records:
            await producer.add(topic, partition_for(k, PARTITIONS), k, v)
        await producer.flush()
    finally:
        await producer.stop()


def summarize(rounds: list[PhaseResult]) -> dict[str, Any]:
    """Median per figure over the rounds of one client and phase."""

    def med(name: str) -> float | None:
        vals = [getattr(r, name) for r in rounds if getattr(r, name) is not None]
        return round(statistics.median(vals), 2) if vals else None

    return {
        "rounds": len(rounds),
        "records": rounds[0].records,
        **{
            k: med(k)
            for k in (
                "records_per_s",
                "cpu_us_per_record",
                "broker_cpu_us_per_record",
                "batch_p50_ms",
                "batch_p99_ms",
            )
        },
    }


def ratios(a: dict[str, Any], c: dict[str, Any]) -> dict[str, float | None]:
    """confluent ÷ aiokafka for each figure both have."""
    out: dict[str, float | None] = {}
    for k in (
        "records_per_s",
        "cpu_us_per_record",
        "broker_cpu_us_per_record",
        "batch_p50_ms",
        "batch_p99_ms",
    ):
        out[k] = round(c[k] / a[k], 2) if a.get(k) and c.get(k) is not None else None
    return out


ROUND_TRIP_LINGERS = (5, 0)  # the producer's former default, and the current one


async def checkpoint_round_trip(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], sends: int, rounds: int
) -> dict[str, Any]:
    """What a checkpoint waits for at a low rate: the worker's `Sender.send_many` of a small
    batch (32 workload records over the partitions), until acknowledged — per linger, the
    lingers alternating round by round; ms percentiles and new ÷ old."""
    from engage_stream.records import OutgoingRecord
    from engage_stream.stream.producing import Sender

    batch = [OutgoingRecord(topic, k, v) for k, v in records[:32]]
    times: dict[int, list[float]] = {linger: [] for linger in ROUND_TRIP_LINGERS}
    for i in range(rounds):
        for linger in ROUND_TRIP_LINGERS if i % 2 == 0 else ROUND_TRIP_LINGERS[::-1]:
            sender = Sender(bootstrap, ProducerOptions(linger_ms=linger))
            await sender.start()
            try:
                await sender.send_many(batch)  # connections and metadata
                for _ in range(sends):
                    t = time.perf_counter()
                    await sender.send_many(batch)
                    times[linger].append((time.perf_counter() - t) * 1000)
                    await asyncio.sleep(0.005)  # a quiet rate: nothing else to merge with
            finally:
                await sender.stop()
    out: dict[str, Any] = {"records_per_send": len(batch), "sends": sends * rounds}
    for linger, ts in times.items():
        ts.sort()
        out[f"linger_{linger}_ms"] = {
            q: round(percentile(ts, f) or 0.0, 2)
            for q, f in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        }
    old, new = (out[f"linger_{x}_ms"] for x in ROUND_TRIP_LINGERS)
    out["ratio"] = {q: round(new[q] / old[q], 2) if old[q] else None for q in old}
    return out


def run(
    n: int, rounds: int, port: int = DEFAULT_PORT, s: ClientSettings | None = None
) -> dict[str, Any]:
    s = s or ClientSettings()
    import aiokafka
    import confluent_kafka

    spec = WorkloadSpec(profiles=max(1000, n // 5), events=n)
    say(f"client compare: generating {n:,} workload events")
    records = [(r.key, r.value) for r in Workload(spec).records()]
    out: dict[str, Any] = {
        "records": n,
        "mean_value_bytes": round(sum(len(v) for _, v in records) / len(records)),
        "partitions": PARTITIONS,
        "rounds": rounds,
        "settings": asdict(s),
        "aiokafka_version": aiokafka.__version__,
        "confluent_kafka_version": confluent_kafka.__version__,
        "librdkafka_version": confluent_kafka.libversion()[0],
    }
    results: dict[str, list[PhaseResult]] = {}
    with bench_broker(port) as cfg:
        bpid = broker_pid(cfg)
        outs = [f"cc-out-{i}-{c}" for i in range(rounds) for c in ("a", "b", "c")]
        create_topics(cfg.bootstrap, ["cc-input", "cc-round-trip", *outs])
        say(f"client compare: preloading {n:,} records into cc-input")
        asyncio.run(preload(cfg.bootstrap, "cc-input", records))
        for i in range(rounds):
            steps: list[tuple[str, Callable[[], PhaseResult]]] = [
                (
                    "aiokafka consume",
                    lambda i=i: asyncio.run(
                        consume_aiokafka(cfg.bootstrap, "cc-input", f"cc-a-{i}", n, s, bpid)
                    ),
                ),
                (
                    "confluent consume",
                    lambda i=i: consume_confluent(
                        cfg.bootstrap, "cc-input", f"cc-c-{i}", n, s, bpid
                    ),
                ),
                (
                    "aiokafka produce",
                    lambda i=i: asyncio.run(
                        produce_aiokafka(cfg.bootstrap, f"cc-out-{i}-a", records, s, bpid, False)
                    ),
                ),
                (
                    "aiokafka-batch produce",
                    lambda i=i: asyncio.run(
                        produce_aiokafka(cfg.bootstrap, f"cc-out-{i}-b", records, s, bpid, True)
                    ),
                ),
                (
                    "confluent produce",
                    lambda i=i: produce_confluent(cfg.bootstrap, f"cc-out-{i}-c", records, s, bpid),
                ),
            ]
            if i % 2:  # alternate which client goes first in each phase
                steps = [steps[1], steps[0], steps[4], steps[3], steps[2]]
            for name, fn in steps:
                r = fn()
                results.setdefault(f"{r.client} {r.phase}", []).append(r)
                say(
                    f"  round {i + 1} {name}: {r.records_per_s:,.0f} records/s, "
                    f"{r.cpu_us_per_record} CPU µs/record, broker {r.broker_cpu_us_per_record}, "
                    f"batch p50 {r.batch_p50_ms} ms p99 {r.batch_p99_ms} ms"
                )
        say(f"client compare: a checkpoint's produce round trip, lingers {ROUND_TRIP_LINGERS} ms")
        out["checkpoint_round_trip"] = asyncio.run(
            checkpoint_round_trip(cfg.bootstrap, "cc-round-trip", records, 100, 2 * rounds)
        )
    summary = {k: summarize(v) for k, v in results.items()}
    out["results"] = summary
    out["ratio_consume"] = ratios(summary["aiokafka consume"], summary["confluent consume"])
    out["ratio_produce_vs_send"] = ratios(summary["aiokafka produce"], summary["confluent produce"])
    out["ratio_produce_vs_send_batch"] = ratios(
        summary["aiokafka-batch produce"], summary["confluent produce"]
    )
    out["rounds_raw"] = {k: [asdict(r) for r in v] for k, v in results.items()}
    return out


def report(r: dict[str, Any]) -> str:
    L = [
        f"Data-path clients: aiokafka {r['aiokafka_version']} vs confluent-kafka "
        f"{r['confluent_kafka_version']} (librdkafka {r['librdkafka_version']}); "
        f"{r['records']:,} workload records (~{r['mean_value_bytes']} B), {r['partitions']} "
        f"partitions, median of {r['rounds']} alternating rounds",
        f"  settings: {r['settings']}",
        f"  {'':28s} {'records/s':>10s} {'CPU µs/rec':>11s} {'broker µs/rec':>13s} "
        f"{'batch p50 ms':>12s} {'p99 ms':>8s}",
    ]

    def n(v: Any, f: str) -> str:
        return "—" if v is None else format(v, f)

    for k, v in r["results"].items():
        L.append(
            f"  {k:28s} {n(v['records_per_s'], ',.0f'):>10s} {n(v['cpu_us_per_record'], '.2f'):>11s} "
            f"{n(v['broker_cpu_us_per_record'], '.2f'):>13s} {n(v['batch_p50_ms'], '.2f'):>12s} "
            f"{n(v['batch_p99_ms'], '.2f'):>8s}"
        )
    for name in ("ratio_consume", "ratio_produce_vs_send", "ratio_produce_vs_send_batch"):
        x = r[name]
        L.append(
            f"  confluent ÷ aiokafka, {name[6:].replace('_', ' ')}: records/s "
            f"{n(x['records_per_s'], '.2f')}×, CPU/record {n(x['cpu_us_per_record'], '.2f')}×, "
            f"broker CPU/record {n(x['broker_cpu_us_per_record'], '.2f')}×, batch p99 "
            f"{n(x['batch_p99_ms'], '.2f')}×"
        )
    rt = r.get("checkpoint_round_trip")
    if rt:
        was, now = ROUND_TRIP_LINGERS
        old, new = rt[f"linger_{was}_ms"], rt[f"linger_{now}_ms"]
        L.append(
            f"  a checkpoint's round trip (send_many of {rt['records_per_send']} records, "
            f"{rt['sends']:,} sends each): linger {was} ms p50 {old['p50']} / p95 {old['p95']} / "
            f"p99 {old['p99']} ms; linger {now} ms (the worker's) p50 {new['p50']} / p95 "
            f"{new['p95']} / p99 {new['p99']} ms; ratio p50 {rt['ratio']['p50']}×, p99 "
            f"{rt['ratio']['p99']}×"
        )
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.client_compare", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="50k records, 2 rounds")
    p.add_argument("--records", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = p.parse_args(argv)
    quiet_kafka_logs()
    n = args.records or (50_000 if args.quick else 300_000)
    rounds = args.rounds or (2 if args.quick else 3)
    r = run(n, rounds, args.port)
    r["machine"] = machine_info()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"client-compare-{run_id()}.json"
    path.write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    print(report(r))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
