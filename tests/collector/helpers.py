"""Helpers of the collector's broker tests: Segment's SDKs as a user runs them, and what the
worker's Profile API and the topics then hold."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from kafka import KafkaConsumer

from engage_stream.config import Settings
from engage_stream.worker_process import WorkerProcess
from tests.collector.conftest import JS_DIR
from tests.stream.helpers import wait_for


def python_sdk_calls(client: Any, user: str) -> list[str]:
    """identify, track, page, screen, group and alias with analytics-python; their
    messageIds (the SDK generates them)."""
    now = datetime.now(UTC)
    results = [
        client.identify(
            user,
            {"email": f"{user}@example.com", "plan": "pro"},
            timestamp=now - timedelta(seconds=50),
        ),
        client.track(
            user, "Order Completed", {"revenue": 42.5}, timestamp=now - timedelta(seconds=40)
        ),
        client.page(
            user, "Docs", "Pricing", {"section": "plans"}, timestamp=now - timedelta(seconds=30)
        ),
        client.screen(user, "App", "Home", {"tab": "feed"}, timestamp=now - timedelta(seconds=20)),
        client.group(user, "acct-py", {"name": "Py Inc"}, timestamp=now - timedelta(seconds=10)),
        client.alias(f"{user}-anon", user, timestamp=now),
    ]
    assert all(ok for ok, _ in results), results
    return [msg["messageId"] for _, msg in results]


def node_sdk(url: str, write_key: str, user: str, flush_at: int) -> dict[str, list[str]]:
    env = {
        **os.environ,
        "COLLECTOR_URL": url,
        "WRITE_KEY": write_key,
        "USER_ID": user,
        "FLUSH_AT": str(flush_at),
    }
    proc = subprocess.run(
        ["node", "node_sdk.mjs"], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def profile_events(worker: WorkerProcess, profile: str) -> list[dict[str, Any]]:
    status, body = worker.profile(profile, "events", "limit=100&sort=asc")
    return body["data"] if status == 200 else []


def wait_events(
    worker: WorkerProcess, profile: str, n: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The profile's events once at least `n` are there and a moment passed with no more
    (a duplicate would show up in it)."""
    wait_for(lambda: len(profile_events(worker, profile)) >= n, timeout, f"{n} events of {profile}")
    time.sleep(0.5)
    return profile_events(worker, profile)


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] or e["type"] for e in events]


def topic_records(
    settings: Settings, topic: str, expected: int, timeout: float = 15.0
) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.broker,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=500,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(consumer)
    finally:
        consumer.close()
    return records


def post(
    url: str, body: Any, write_key: str | None = None, data: bytes | None = None
) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(
        url, data=data if data is not None else orjson.dumps(body), method="POST"
    )
    req.add_header("Content-Type", "application/json")
    if write_key is not None:
        req.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, orjson.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read() or b"null"), dict(err.headers)
