"""Kafka stops while an SDK is sending: the collector answers 503 with Retry-After, never
200, the SDK keeps its events and retries, and once the broker is back every event
arrives exactly once (the retried copies share messageIds, which the worker dedups).

A broker of its own, so stopping it disturbs no other test."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from segment.analytics import Client

from engage_stream.collector.process import CollectorProcess
from engage_stream.kafka_local import broker
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess
from tests.collector.conftest import collector_config, stack_settings
from tests.collector.helpers import post, topic_records, wait_events
from tests.stream.helpers import wait_for

pytestmark = pytest.mark.broker

KEY = "wk_python_7f3a"


def track_all(client: Client, user: str, first: int, n: int) -> list[str]:
    start = datetime.now(UTC) - timedelta(minutes=5)
    ids = []
    for i in range(first, first + n):
        ok, msg = client.track(user, "Step", {"i": i}, timestamp=start + timedelta(seconds=i))
        assert ok
        ids.append(msg["messageId"])
    return ids


def test_broker_stopped_503_sdk_retries_every_event_arrives_once(
    own_broker: broker.BrokerConfig, tmp_path: Path
) -> None:
    settings = stack_settings(own_broker.bootstrap, "outage", tmp_path / "state")
    ensure_topics(settings)
    collector = CollectorProcess(
        settings, collector_config(tmp_path, produce_timeout_s=2.0), tmp_path / "collector.log"
    )
    collector.start(timeout=30)
    errors: list[object] = []
    client = Client(
        KEY,
        host=collector.url,
        gzip=True,
        upload_size=10,
        upload_interval=0.1,
        on_error=lambda e, batch: errors.append(e),
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        sent = track_all(client, "outage", 0, 10)
        client.flush()
        assert errors == []

        broker.stop(own_broker)

        # the collector notices (its probe, or a produce that times out) and says 503
        def refused() -> bool:
            status, body, headers = post(
                f"{collector.url}/v1/track", {"userId": "probe", "event": "P"}, KEY
            )
            assert status != 200, "a 200 while Kafka is down would be a lie"
            return status == 503 and headers.get("Retry-After") == "1"

        wait_for(refused, timeout=15, what="503 with Retry-After while Kafka is down")
        assert collector.health()[0] == 503

        sent += track_all(client, "outage", 10, 20)
        flushed = threading.Thread(target=client.flush, daemon=True)
        flushed.start()
        wait_for(
            lambda: collector.metric("engage_collector_requests_total", 'status="503"') >= 4,
            timeout=15,
            what="the SDK's batches refused while Kafka is down",
        )
        assert flushed.is_alive(), "the SDK holds its events while it is refused"

        broker.start(own_broker)
        flushed.join(60)
        assert not flushed.is_alive(), (
            f"the SDK delivered after the broker came back\n{collector.log_tail()}"
        )
        assert errors == [], "no batch was given up"
        collector.wait_health(15)

        worker.start(timeout=90)
        events = wait_events(worker, "user_id:outage", len(sent), timeout=45)
        assert sorted(e["message_id"] for e in events) == sorted(sent), "every event, once"
        assert [e["properties"]["i"] for e in events] == list(range(30))
        copies = [
            r
            for r in topic_records(settings, settings.topics.mixed, len(sent))
            if b'"userId":"outage"' in r.value
        ]
        assert len(copies) >= len(sent)  # duplicates in Kafka are allowed; in profiles, not
    finally:
        assert collector.stop() == 0, collector.log_tail()
        worker.stop()
