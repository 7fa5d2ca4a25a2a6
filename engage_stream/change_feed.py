"""Follows the all-changes topic in a background thread: the demo prints audience entries and
exits as they happen from it, and tools can wait on it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from engage_stream.config import Settings


class ChangeFeed:
    def __init__(self, settings: Settings, on_change: Callable[[dict[str, Any]], None]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.changes: list[dict[str, Any]] = []
        self.counts: Counter[tuple[str, str]] = Counter()  # (key, entered|exited|changed)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

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

    def _run(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            self.settings.topics.changes,
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
                        change = orjson.loads(rec.value)
                        with self._lock:
                            self.changes.append(change)
                            self.counts[(change["key"], describe(change))] += 1
                        self.on_change(change)
        finally:
            consumer.close()


def describe(change: dict[str, Any]) -> str:
    if change.get("kind") == "audience":
        return "entered" if change.get("value") is True else "exited"
    return "changed"
