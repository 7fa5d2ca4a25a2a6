"""Producing Segment JSON lines into the input topics, with a progress line on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import orjson
from kafka import KafkaProducer

from engage_stream.config import Settings


class Progress:
    """A one-line progress display; quiet when stderr is not a terminal except every 10%."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total = label, total
        self.done = 0
        self.started = time.monotonic()
        self._last_pct = -10
        self._tty = sys.stderr.isatty()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.total:
            pct = int(self.done * 100 / self.total)
            if self._tty and (self.done % 200 == 0 or self.done == self.total):
                self._draw(pct)
            elif not self._tty and pct >= self._last_pct + 10:
                self._last_pct = pct
                self._draw(pct)

    def _draw(self, pct: int) -> None:
        rate = self.done / max(1e-6, time.monotonic() - self.started)
        bar = "#" * (pct // 4) + "." * (25 - pct // 4)
        end = "\r" if self._tty else "\n"
        print(
            f"{self.label} [{bar}] {pct:3d}% {self.done}/{self.total} ({rate:,.0f}/s)",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self._tty:
            print(file=sys.stderr)


def route(settings: Settings, raw: bytes, mixed: bool) -> tuple[str, bytes | None]:
    """Topic by message type (unparseable → the mixed topic, where ingest dead-letters it);
    keyed by userId/anonymousId so one user's events stay in order."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return settings.topics.mixed, None
    if not isinstance(obj, dict):
        return settings.topics.mixed, None
    uid = obj.get("userId") or obj.get("anonymousId")
    key = uid.encode() if isinstance(uid, str) else None
    kind = obj.get("type")
    if mixed or kind not in ("track", "identify", "group", "page", "screen", "alias"):
        return settings.topics.mixed, key
    return getattr(settings.topics, kind), key


def produce_lines(
    settings: Settings,
    lines: Iterable[bytes],
    total: int | None = None,
    mixed: bool = False,
    label: str = "producing",
) -> int:
    producer = KafkaProducer(
        bootstrap_servers=settings.broker,
        linger_ms=10,
        acks="all",
        batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    progress = Progress(label, total)
    n = 0
    try:
        for raw in lines:
            raw = raw.strip()
            if not raw:
                continue
            topic, key = route(settings, raw, mixed)
            producer.send(topic, key=key, value=raw)
            n += 1
            progress.update()
        producer.flush()
    finally:
        progress.close()
        producer.close()
    return n
