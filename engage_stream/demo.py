"""`engage-stream demo`: a local broker, a worker, a realistic sample stream, and what happened.

Every run uses its own topic names, app id and data directory, so it can be repeated on the
same broker. It stops what it started and exits 0 when everything checked out.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson

from engage_stream.config import DAY_MS, Settings
from engage_stream.kafka_local import broker
from engage_stream.produce import produce_lines
from engage_stream.sample_data import bad_records, generate
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess


def _say(msg: str) -> None:
    print(msg, flush=True)


def _read_dead_letters(settings: Settings, expected: int, timeout: float = 20.0) -> Counter[str]:
    from kafka import KafkaConsumer

    from engage_stream.ingest.dead_letter import DeadLetter

    consumer = KafkaConsumer(
        settings.topics.dead_letter,
        bootstrap_servers=settings.broker,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
    )
    reasons: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    try:
        while sum(reasons.values()) < expected and time.monotonic() < deadline:
            for rec in consumer:
                reasons[DeadLetter.from_headers(rec.headers).reason] += 1
    finally:
        consumer.close()
    return reasons


def run_demo(settings: Settings, events: int, users: int, kafka_dir: Path, port: int) -> int:
    run = time.strftime("%Y%m%d-%H%M%S")
    bcfg = broker.BrokerConfig(port=port, controller_port=port + 1, data_dir=kafka_dir)
    settings = settings.model_copy(
        update={
            "broker": bcfg.bootstrap if settings.broker == Settings().broker else settings.broker,
            "app_id": f"engage-demo-{run}",
            "data_dir": Path("var/demo"),
            "topics": settings.topics.with_suffix(f"-demo-{run}"),
        }
    )
    _say("== engage-stream demo ==")
    started_broker = False
    host, _, bport = settings.broker.partition(":")
    if broker.is_reachable(host, int(bport)):
        _say(f"broker: using the Kafka broker already on {settings.broker}")
    else:
        _say(
            f"broker: starting Apache Kafka {bcfg.version} on {bcfg.bootstrap} (data in {kafka_dir})"
        )
        broker.start(bcfg)
        started_broker = True
    worker = WorkerProcess(settings, Path("var/demo") / f"worker-{run}.log")
    try:
        created = ensure_topics(settings)
        _say(f"topics: {len(created)} created for this run (suffix -demo-{run})")
        worker.start(timeout=90)
        _say(
            f"worker: running (pid {worker.proc.pid if worker.proc else '?'}), API and metrics on {worker.url}"
        )

        now = int(time.time() * 1000)
        sample = [orjson.dumps(e) for e in generate(events, users, now, 14 * DAY_MS)]
        bad = bad_records()
        _say(
            f"producing {len(sample)} sample Segment events for {users} users "
            f"(pages, products, orders, identifies, groups) + {len(bad)} invalid records"
        )
        t0 = time.monotonic()
        produce_lines(settings, sample + bad, total=len(sample) + len(bad), label="  producing")

        processed, first_seen, done_at = 0.0, None, None
        deadline = time.monotonic() + 180
        last_print = 0.0
        while time.monotonic() < deadline:
            processed = worker.metric("engage_events_processed_total") + worker.metric(
                "engage_duplicates_dropped_total"
            )
            if processed and first_seen is None:
                first_seen = time.monotonic()
            if time.monotonic() - last_print > 2:
                _say(f"  processing: {int(processed)}/{len(sample)} events applied to profiles")
                last_print = time.monotonic()
            if processed >= len(sample):
                done_at = time.monotonic()
                break
            time.sleep(0.2)
        if done_at is None:
            _say(f"FAILED: only {int(processed)}/{len(sample)} events processed in time")
            _say(worker.log_tail())
            return 1
        elapsed = done_at - (first_seen or t0)
        _say(
            f"processed {len(sample)} events in {done_at - t0:.1f}s after producing started; "
            f"worker throughput {len(sample) / max(elapsed, 1e-3):,.0f} events/s"
        )

        reasons = _read_dead_letters(settings, len(bad))
        _say(
            f"dead-letter topic {settings.topics.dead_letter}: {sum(reasons.values())} records "
            f"({', '.join(f'{k}={v}' for k, v in sorted(reasons.items()))})"
        )

        who = _busiest_user(sample)
        _say(f"\nsample profile {who} through the Profile API:")
        for section, query in (
            ("traits", ""),
            ("external_ids", ""),
            ("metadata", ""),
            ("events", "limit=3"),
        ):
            status, body = worker.profile(who, section, query)
            _say(f"  GET .../profiles/{who}/{section}{'?' + query if query else ''} -> {status}")
            _say("    " + orjson.dumps(_brief(section, body)).decode())
        status, body = worker.request(
            f"/v1/spaces/{settings.space_id}/collections/users/profiles/{who}/traits",
            token="wrong-token",
        )
        _say(f"  with a wrong access token -> {status} {orjson.dumps(body).decode()}")
        if len(reasons) != len(bad) or sum(reasons.values()) != len(bad):
            _say("FAILED: dead-letter records missing")
            return 1
        _say(
            "\ndemo finished: every event processed, every invalid record dead-lettered with a reason"
        )
        return 0
    finally:
        _say("stopping worker" + (" and broker" if started_broker else ""))
        worker.stop()
        if started_broker:
            broker.stop(bcfg)


def _busiest_user(sample: list[bytes]) -> str:
    counts: Counter[str] = Counter()
    for raw in sample:
        e = orjson.loads(raw)
        if "userId" in e:
            counts[e["userId"]] += 1
    return f"user_id:{counts.most_common(1)[0][0]}"


def _brief(section: str, body: dict) -> object:  # type: ignore[type-arg]
    if section == "events":
        return [
            {
                "event": e.get("event") or e.get("type"),
                "timestamp": e["timestamp"],
                "properties": e.get("properties"),
            }
            for e in body.get("data", [])
        ]
    return body.get("traits") or body.get("data") or body.get("metadata") or body
