"""Follows topics in a background thread: `TopicFeed` any of them (the demo's journey
records), `ChangeFeed` the all-changes topic — the demo prints audience entries and exits
as they happen from it, and tools can wait on it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from engage_stream.config import Settings


class TopicFeed:
    """Follows topics from their start in a background thread (no consumer group, nothing
    committed) and hands each record's (topic, JSON value, timestamp ms) to `on_record`."""

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        on_record: Callable[[str, dict[str, Any], int], None],
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.on_record = on_record
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-feed", daemon=True)

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            *self.topics,
            bootstrap_servers=self.settings.broker,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        try:
            consumer.poll(timeout_ms=100)
            self._ready.set()
            while not self._stop.is_set():
                for batch in consumer.poll(timeout_ms=300).values():
                    for rec in batch:
                        self.on_record(rec.topic, orjson.loads(rec.value), rec.timestamp)
        finally:
            consumer.close()


class ChangeFeed:
    def __init__(self, settings: Settings, on_change: Callable[[dict[str, Any]], None]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.changes: list[dict[str, Any]] = []
        self.counts: Counter[tuple[str, str]] = Counter()  # (key, entered|exited|changed)
        self._lock = threading.Lock()
        self._feed = TopicFeed(settings, [settings.topics.changes], self._record)

    def start(self, timeout: float = 20.0) -> None:
        self._feed.start(timeout)

    def stop(self) -> None:
        self._feed.stop()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.changes)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(c) for c in self.snapshot()):
                return True
            time.sleep(0.2)
        return False

    def _record(self, topic: str, change: dict[str, Any], timestamp: int) -> None:
        with self._lock:
            self.changes.append(change)
            self.counts[(change["key"], describe(change))] += 1
        self.on_change(change)


def describe(change: dict[str, Any]) -> str:
    if change.get("kind") == "audience":
        return "entered" if change.get("value") is True else "exited"
    return "changed"
