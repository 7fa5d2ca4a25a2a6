"""Shared helpers for the broker tests: producing, waiting, building Segment messages, and
checking the worker's metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

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
