"""Delivery on the real broker, with the collector in process: bounded in-flight bytes
(429 instead of buffering) and a stop that does not hang while Kafka is away."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from engage_stream.collector.app import Collector
from engage_stream.collector.settings import CollectorSettings
from engage_stream.kafka_local import broker
from engage_stream.stream.topics import ensure_topics
from tests.collector.conftest import stack_settings
from tests.collector.helpers import topic_records

pytestmark = pytest.mark.broker

AUTH = {
    "Authorization": "Basic " + base64.b64encode(b"wk:").decode(),
    "Content-Type": "application/json",
}


def batch(user: str, n: int = 100) -> bytes:
    return orjson.dumps(
        {
            "batch": [
                {"type": "track", "userId": user, "event": "E", "properties": {"pad": "x" * 300}}
                for _ in range(n)
            ]
        }
    )


async def started(collector: Collector) -> Collector:
    await collector.start()
    deadline = time.monotonic() + 30
    while not collector.delivery.available:
        assert time.monotonic() < deadline, collector.delivery.reason
        await asyncio.sleep(0.05)
    return collector


def test_past_the_inflight_budget_requests_get_429_not_buffered(
    kafka_broker: str, tmp_path: Path
) -> None:
    settings = stack_settings(kafka_broker, "budget", tmp_path / "state")
    ensure_topics(settings)
    body = batch("budget")  # ~40 KB of events; the budget holds one such request
    config = CollectorSettings(
        port=0, write_keys="wk=web", max_inflight_bytes=len(body) + 1000, retry_after_s=3
    )

    async def main() -> list[tuple[int, Any, Any]]:
        collector = await started(Collector(settings, config))
        try:
            async with aiohttp.ClientSession(collector.url) as http:

                async def one() -> tuple[int, Any, Any]:
                    async with http.post("/v1/batch", data=body, headers=AUTH) as resp:
                        return resp.status, await resp.json(), resp.headers.get("Retry-After")

                answers = await asyncio.gather(*(one() for _ in range(30)))
                assert collector.delivery.inflight_bytes == 0, "released once acknowledged"
                return answers
        finally:
            await collector.stop()

    answers = asyncio.run(main())
    accepted = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] == 429]
    assert len(accepted) + len(refused) == 30
    assert accepted and refused, [a[0] for a in answers]
    assert all(b["code"] == "backpressure" and ra == "3" for _, b, ra in refused)
    records = topic_records(settings, settings.topics.mixed, len(accepted) * 100)
    assert len(records) == len(accepted) * 100, "exactly the accepted requests' events"


def test_stop_returns_while_kafka_is_away_with_unacknowledged_records(
    own_broker: broker.BrokerConfig, tmp_path: Path
) -> None:
    settings = stack_settings(own_broker.bootstrap, "stop-down", tmp_path / "state")
    ensure_topics(settings)
    config = CollectorSettings(port=0, write_keys="wk=web", produce_timeout_s=1.0)

    async def main() -> float:
        collector = await started(Collector(settings, config))
        async with aiohttp.ClientSession(collector.url) as http:
            # the freshly started broker's first acknowledgement can take longer than the
            # 1 s produce timeout on a loaded machine: what is tested is the stop, below
            for _ in range(40):
                async with http.post("/v1/batch", data=batch("up", 5), headers=AUTH) as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("the broker never acknowledged a batch")
            broker.stop(own_broker)
            async with http.post("/v1/batch", data=batch("down", 5), headers=AUTH) as resp:
                assert resp.status == 503, "never 200 without Kafka's acknowledgement"
        assert collector.delivery.inflight_bytes > 0, "the producer still holds them"
        t0 = time.monotonic()
        await collector.stop()
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < 5, f"stop took {took:.1f}s"
