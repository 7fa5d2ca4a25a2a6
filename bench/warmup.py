"""Warm the bench broker's JVM up before anything is measured on it.

Why: a freshly started broker spends its first minute compiling itself. Measured here
(2026-12-03, 1,000 records/s into 4 partitions, librdkafka, 5 ms linger): the broker used
0.79 cores in the first 10 s, 0.50 in the next, then 0.30, 0.18, 0.17 — and `top -H` put
the HotSpot C2 compiler thread at ~50 % of a core during the bench's latency phases. On two
cores that compile time is taken from the worker being measured. A production broker runs
warm for weeks, so the bench measures against a warm one: it first drives the request
paths the worker uses (idempotent produce with acks=all, group fetches and offset commits,
a compacted topic) until the broker's CPU per round settles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from engage_stream.kafka_local.broker import BrokerConfig

TOPIC = "bench-warmup"
ROUND_S = 5.0  # one measured round of load
PARTITIONS = 4
RATE = 1_000  # records/s
SETTLED = 0.10  # a round within this (relative) of the two before: warm


@dataclass
class WarmUp:
    seconds: float = 0.0
    records: int = 0
    # the broker's CPU (cores) in each round: the first is the cold broker, the last the
    # one the measurements get
    cores: list[float] = field(default_factory=list)


LAST: list[WarmUp] = []  # the warm-ups of this process, for the reports


def warm_broker(cfg: BrokerConfig, pid: int | None, max_s: float, min_s: float = 30.0) -> WarmUp:
    """Load the broker in rounds of `ROUND_S` until its CPU in a round is within `SETTLED`
    of each of the two rounds before (and `min_s` has passed), or `max_s` has."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from bench.common import proc_cpu_seconds

    admin = AdminClient({"bootstrap.servers": cfg.bootstrap})
    topic = NewTopic(TOPIC, PARTITIONS, 1, config={"cleanup.policy": "compact"})
    for f in admin.create_topics([topic]).values():
        f.result(30)
    producer = Producer(
        {
            "bootstrap.servers": cfg.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,
        }
    )
    consumer = Consumer(
        {
            "bootstrap.servers": cfg.bootstrap,
            "group.id": "bench-warmup",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    out = WarmUp()
    value = b"w" * 400
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < max_s:
            c0 = proc_cpu_seconds(pid) if pid else None
            t0 = time.monotonic()
            sent = 0
            while (now := time.monotonic() - t0) < ROUND_S:
                # paced, in small requests: the request paths get hot, and the compiler
                # threads keep a core to compile them on
                while sent < now * RATE:
                    producer.produce(TOPIC, value, b"%d" % (out.records % 5000))
                    out.records += 1
                    sent += 1
                producer.poll(0)
                if consumer.consume(1000, timeout=0.005):
                    consumer.commit(asynchronous=True)
            c1 = proc_cpu_seconds(pid) if pid else None
            if c0 is None or c1 is None:
                continue
            out.cores.append(round((c1 - c0) / (time.monotonic() - t0), 2))
            last = out.cores[-3:]
            if elapsed >= min_s and len(last) == 3 and _settled(last):
                break
        producer.flush(30)
    finally:
        consumer.close()  # (the topic stays: deleting it loads the broker right after)
    out.seconds = round(time.monotonic() - started, 1)
    LAST.append(out)
    return out


def _settled(rounds: list[float]) -> bool:
    *before, now = rounds
    return all(abs(now - b) <= SETTLED * b for b in before)
