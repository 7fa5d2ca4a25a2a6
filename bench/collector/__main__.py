"""Collector throughput and latency against producing the same events to Kafka directly.

    python -m bench.collector [--clients 1,4,16,64] [--seconds 10] [--json FILE]

Starts its own broker (port 39930, data in var/bench/collector-kafka) and a collector
process (`engage-stream collector`), then, in this process, N concurrent keep-alive HTTP
clients each POST 100-event `/v1/batch` requests (Basic auth, no gzip, like
analytics-node) for a fixed time and record every request's latency. In the same run,
two baselines send the same events, in the same 100-event batches with the same
concurrency, without HTTP or validation:

- **plain producer**: `AIOKafkaProducer.send()` per record then waiting for the batch's
  acknowledgements (acks=all, idempotent) — a service writing to Kafka directly;
- **collector delivery**: the collector's own produce path (group commit of concurrent
  requests on the project's `Sender`) in this process, minus HTTP, parsing and
  validation — what the HTTP layer and validation cost.

The load generator, the collector and the broker share the machine's cores, as they
would on one host; the figures are for comparing within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from bench.common import (
    BENCH_DIR,
    machine_info,
    percentile,
    proc_cpu_seconds,
    quiet_kafka_logs,
    run_id,
    say,
)
from engage_stream.collector.delivery import Delivery
from engage_stream.collector.process import CollectorProcess
from engage_stream.collector.settings import CollectorSettings
from engage_stream.config import DAY_MS, Settings
from engage_stream.kafka_local import broker
from engage_stream.sample_data import generate
from engage_stream.stream.producing import OutgoingRecord
from engage_stream.stream.topics import ensure_topics

BROKER_PORT = 39930
COLLECTOR_PORT = 39932
BATCH = 100
WRITE_KEY = "wk_bench_0001"
HTTP = "collector, HTTP /v1/batch"
PLAIN = "plain producer, send() per record"
DELIVERY = "collector delivery alone, in process"


@dataclass
class Result:
    name: str
    clients: int
    seconds: float
    requests: int
    events: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


@contextlib.contextmanager
def own_broker() -> Iterator[broker.BrokerConfig]:
    data = BENCH_DIR / "collector-kafka"
    cfg = broker.BrokerConfig(port=BROKER_PORT, controller_port=BROKER_PORT + 1, data_dir=data)
    if broker.is_reachable(port=BROKER_PORT):
        raise RuntimeError(f"port {BROKER_PORT} is busy: stop whatever runs there")
    shutil.rmtree(data, ignore_errors=True)
    broker.start(cfg, timeout=120)
    try:
        yield cfg
    finally:
        broker.stop(cfg)


def batches(n: int) -> list[list[dict[str, Any]]]:
    """`n` distinct 100-event batches of the sample shop traffic (~47 KB each)."""
    now = int(time.time() * 1000)
    events = list(generate(n * BATCH, users=5_000, end_ms=now, span_ms=DAY_MS, seed=11))
    return [events[i * BATCH : (i + 1) * BATCH] for i in range(n)]


async def drive(
    clients: int, seconds: float, send: Callable[[int], Awaitable[bool]]
) -> tuple[int, int, list[float], float]:
    """`clients` loops calling `send(i)` until the time is up: (ok, errors, latencies, s)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(c: int) -> None:
        nonlocal errors
        i = c
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            if await send(i):
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1
            i += clients

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return len(latencies), errors, latencies, time.perf_counter() - started


def result(name: str, clients: int, run: tuple[int, int, list[float], float]) -> Result:
    ok, errors, latencies, seconds = run
    latencies.sort()
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return Result(
        name,
        clients,
        seconds,
        ok,
        ok * BATCH,
        errors,
        p50 * 1000 if p50 is not None else None,
        p99 * 1000 if p99 is not None else None,
    )


async def bench_collector(url: str, bodies: list[bytes], clients: int, seconds: float) -> Result:
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
    }
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(url, connector=connector) as http:

        async def send(i: int) -> bool:
            async with http.post("/v1/batch", data=bodies[i % len(bodies)], headers=headers) as r:
                await r.read()
                return r.status == 200

        await send(0)  # connect and warm up
        return result(HTTP, clients, await drive(clients, seconds, send))


async def bench_plain(
    settings: Settings, records: list[list[tuple[bytes, bytes]]], clients: int, seconds: float
) -> Result:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.broker, acks="all", enable_idempotence=True, linger_ms=1
    )
    await producer.start()
    topic = settings.topics.mixed
    try:

        async def send(i: int) -> bool:
            futures = [
                await producer.send(topic, value=v, key=k) for k, v in records[i % len(records)]
            ]
            await asyncio.gather(*futures)
            return True

        await send(0)
        return result(PLAIN, clients, await drive(clients, seconds, send))
    finally:
        await producer.stop()


async def bench_delivery(
    settings: Settings, records: list[list[tuple[bytes, bytes]]], clients: int, seconds: float
) -> Result:
    """The collector's own produce path (group commit on the idempotent `Sender`) in this
    process, without HTTP, parsing or validation."""
    delivery = Delivery(settings, CollectorSettings())
    await delivery.start()
    topic = settings.topics.mixed
    try:
        deadline = time.monotonic() + 30
        while not delivery.available and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        groups = [
            ([OutgoingRecord(topic, k, v) for k, v in batch], sum(len(v) for _, v in batch))
            for batch in records
        ]

        async def send(i: int) -> bool:
            recs, size = groups[i % len(groups)]
            await delivery.deliver(recs, size)
            return True

        await send(0)
        return result(DELIVERY, clients, await drive(clients, seconds, send))
    finally:
        await delivery.stop()


def keyed(batch: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """(key, value) as the collector writes them: keyed by userId, else anonymousId."""
    out = []
    for e in batch:
        pid = f"user_id:{e['userId']}" if e.get("userId") else f"anonymous_id:{e['anonymousId']}"
        out.append((pid.encode(), orjson.dumps(e)))
    return out


def print_table(rows: list[Result], cpu: dict[int, float]) -> None:
    print()
    print(
        f"{'':38} {'clients':>7} {'requests/s':>11} {'events/s':>10} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6}"
    )
    for r in rows:
        p50 = f"{r.p50_ms:8.1f}" if r.p50_ms is not None else "       -"
        p99 = f"{r.p99_ms:8.1f}" if r.p99_ms is not None else "       -"
        print(
            f"  {r.name:36} {r.clients:7d} {r.requests_per_s:11,.0f} {r.events_per_s:10,.0f} "
            f"{p50} {p99} {r.errors:6d}"
        )
    print()
    by = {(r.name, r.clients): r for r in rows}
    for clients in sorted({r.clients for r in rows}):
        http = by.get((HTTP, clients))
        if http is None:
            continue
        ratios = [
            f"{http.events_per_s / base.events_per_s:.2f}x {name}"
            for name in (PLAIN, DELIVERY)
            if (base := by.get((name, clients))) is not None and base.events_per_s
        ]
        extra = f"; collector CPU {cpu[clients]:.0f} µs/event" if clients in cpu else ""
        print(f"  {clients:3d} clients: collector events/s = {', '.join(ratios)}{extra}")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    run = run_id()
    out: dict[str, Any] = {"run": run, "machine": machine_info(), "results": []}
    levels = [int(x) for x in args.clients.split(",")]
    bodies_src = batches(200)
    bodies = [orjson.dumps({"batch": b}) for b in bodies_src]
    records = [keyed(b) for b in bodies_src]
    say(
        f"200 distinct batches of {BATCH} events, {sum(map(len, bodies)) / len(bodies) / 1024:.0f} KB each"
    )
    with own_broker() as cfg:
        settings = Settings(
            broker=cfg.bootstrap, partitions=4, topics=Settings().topics.with_suffix(f"-cb-{run}")
        )
        ensure_topics(settings)
        config = CollectorSettings(port=COLLECTOR_PORT, write_keys=f"{WRITE_KEY}=bench")
        collector = CollectorProcess(settings, config, BENCH_DIR / f"collector-{run}.log")
        collector.start(timeout=30)
        rows: list[Result] = []
        cpu: dict[int, float] = {}
        try:
            assert collector.proc is not None
            for clients in levels:
                say(f"{clients} clients: collector over HTTP for {args.seconds:g}s")
                before = proc_cpu_seconds(collector.proc.pid) or 0.0
                r = await bench_collector(collector.url, bodies, clients, args.seconds)
                after = proc_cpu_seconds(collector.proc.pid) or 0.0
                if r.events:
                    cpu[clients] = (after - before) / r.events * 1e6
                rows.append(r)
                say(f"{clients} clients: plain producer, then the collector's delivery alone")
                rows.append(await bench_plain(settings, records, clients, args.seconds))
                rows.append(await bench_delivery(settings, records, clients, args.seconds))
        finally:
            collector.stop()
    print_table(rows, cpu)
    out["results"] = [
        {**asdict(r), "requests_per_s": r.requests_per_s, "events_per_s": r.events_per_s}
        for r in rows
    ]
    out["collector_cpu_us_per_event"] = cpu
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__)
    p.add_argument("--clients", default="1,4,16,64", help="concurrency levels, comma-separated")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each measurement")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    quiet_kafka_logs()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    out = asyncio.run(main_async(args))
    path = args.json or BENCH_DIR / f"collector-{out['run']}.json"
    path.write_text(json.dumps(out, indent=2))
    say(f"figures written to {path}")


if __name__ == "__main__":
    main()
