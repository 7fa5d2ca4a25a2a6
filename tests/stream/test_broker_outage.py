"""A broker outage while the worker drains a backlog (issue #16.2): it waits quietly and
loses nothing.

Before, every Kafka client logged each retry (~100 ms apart, five clients): ~118k lines
(12.5 MB) in a 24 s outage, and formatting them kept a core busy (22.9 CPU s in 24 s);
then aiokafka's producer asked for metadata in a tight loop while it held records for a
partition without a known leader (35.3 CPU s in 35.9 s; `stream.client_backoff`).
This test has a broker of its own, as it stops it.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from bench.common import proc_cpu_seconds
from engage_stream.config import Settings
from engage_stream.kafka_local import broker
from engage_stream.produce import produce_lines
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess
from tests.stream.helpers import wait_for

pytestmark = pytest.mark.broker

OUTAGE_S = 15
EVENTS = 20_000


def test_an_outage_during_a_backlog_is_waited_out_quietly_and_loses_nothing(
    own_broker: broker.BrokerConfig, worker_settings: Settings, tmp_path: Path
) -> None:
    s = worker_settings.model_copy(update={"broker": own_broker.bootstrap})
    ensure_topics(s)
    produce_lines(
        s,
        (
            orjson.dumps(
                {
                    "type": "track",
                    "userId": f"u{i % 2000}",
                    "event": "Order Completed",
                    "messageId": f"m{i}",
                    "timestamp": "2026-12-01T00:00:00Z",
                    "properties": {"revenue": i % 100},
                }
            )
            for i in range(EVENTS)
        ),
    )
    w = WorkerProcess(s, tmp_path / "worker.log")
    w.start(timeout=90)
    try:
        wait_for(lambda: w.metric("engage_events_processed_total") > 1000, what="the drain started")
        assert w.proc is not None
        lines_before = len(w.log_path.read_bytes().splitlines())
        broker.stop(own_broker)
        cpu0, t0 = proc_cpu_seconds(w.proc.pid), time.monotonic()
        time.sleep(OUTAGE_S)
        cpu1, t1 = proc_cpu_seconds(w.proc.pid), time.monotonic()
        assert w.proc.poll() is None, "the worker survives the outage"
        logged = len(w.log_path.read_bytes().splitlines()) - lines_before
        broker.start(own_broker)
        assert cpu0 is not None and cpu1 is not None
        busy = (cpu1 - cpu0) / (t1 - t0)
        # Waiting costs a few percent of a core; the retry logs alone took a whole one.
        assert busy < 0.5, f"the worker was busy {busy:.0%} of a core while the broker was down"
        assert logged < 200, f"{logged} log lines in a {OUTAGE_S} s outage"
        wait_for(
            lambda: w.metric("engage_events_processed_total") >= EVENTS,
            timeout=180,
            what="every event applied after the outage",
        )
        assert w.proc.poll() is None
    finally:
        w.stop()
