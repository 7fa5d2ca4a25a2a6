"""Shared helpers for the broker tests: producing, waiting, building Segment messages,
checking the worker's metrics, reading topics back and running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from engage_stream.config import Settings
from engage_stream.produce import produce_lines
from engage_stream.worker_process import WorkerProcess, wait_until


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    try:
        return wait_until(check, timeout, what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def produce(settings: Settings, messages: list[dict[str, Any] | bytes]) -> None:
    lines = [m if isinstance(m, bytes) else orjson.dumps(m) for m in messages]
    produce_lines(settings, lines)


def identify(uid: str, ts: str, mid: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": uid, "traits": traits, "timestamp": ts, "messageId": mid}


def track(uid: str, event: str, ts: str, mid: str, **props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": uid,
        "event": event,
        "properties": props,
        "timestamp": ts,
        "messageId": mid,
    }


def now_iso(offset_s: float = 0) -> str:
    from engage_stream.api.profiles import iso

    return iso(int((time.time() + offset_s) * 1000))


def processed(w: WorkerProcess) -> float:
    return w.metric("engage_events_processed_total")


def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every record of `topic` from the beginning to its end offsets now (all partitions,
    each in offset order)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[ConsumerRecord] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


def source_offsets(settings: Settings) -> tuple[dict[int, int], dict[int, int]]:
    """(committed, end) offsets of the profiles stage's input (`profile-events`), by
    partition: whether a crash now would re-deliver what the worker already applied."""
    admin = KafkaAdminClient(bootstrap_servers=settings.broker)
    consumer = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    try:
        topic = settings.topics.profile_events
        committed = {
            tp.partition: meta.offset
            for tp, meta in admin.list_group_offsets(settings.app_id)
            .get(settings.app_id, {})
            .items()
            if tp.topic == topic
        }
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        return committed, ends
    finally:
        admin.close()
        consumer.close()


def run_cli(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`engage-stream <args>` as a child process with these settings (and `env` added), as an
    operator would run it: what the command validates happens in its own environment."""
    return subprocess.run(
        [sys.executable, "-m", "engage_stream", *args],
        env={**os.environ, **settings.env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
