"""Shared fixtures. Broker tests get a real Apache Kafka broker, started once per session by
the project's own launcher on a dedicated port and data directory."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engage_stream.config import Settings
from engage_stream.kafka_local import broker
from engage_stream.profiles.stage import ProfileStage
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess

# Every stage test checks each decoded profile the record cache hands back against a decode
# of its bytes (profiles.store.RecordCache): a profile changed without being stored fails.
ProfileStage.verify_record_cache = True

# Below Linux's ephemeral range (32768–60999): a port in it can be taken at any moment by
# an outgoing connection (a Kafka client's), and a worker then fails to bind its web port.
BROKER_PORT = int(os.environ.get("ENGAGE_TEST_BROKER_PORT", "29192"))
_ports = itertools.count(int(os.environ.get("ENGAGE_TEST_WEB_PORT", "29300")))


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    data = Path(tempfile.mkdtemp(prefix="engage-test-kafka-"))
    cfg = broker.BrokerConfig(port=BROKER_PORT, controller_port=BROKER_PORT + 1, data_dir=data)
    started = False
    try:
        if not broker.is_reachable(port=BROKER_PORT):
            started = True
            broker.start(cfg)
        yield cfg.bootstrap
    finally:
        if started:
            broker.stop(cfg)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def own_broker() -> Iterator[broker.BrokerConfig]:
    """A broker for one test that stops and starts it (the session's stays up for the
    others); about 3 s to start."""
    port = BROKER_PORT + 30
    data = Path(tempfile.mkdtemp(prefix="engage-test-own-kafka-"))
    cfg = broker.BrokerConfig(port=port, controller_port=port + 1, data_dir=data)
    broker.start(cfg)
    try:
        yield cfg
    finally:
        broker.stop(cfg)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def worker_settings(kafka_broker: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings isolated per test: own topics, app id (consumer group), state dir, web port."""
    run = f"{request.node.name[:40]}-{int(time.time() * 1000) % 10_000_000}"
    run = "".join(c if c.isalnum() or c in "-_" else "-" for c in run)
    return Settings(
        broker=kafka_broker,
        app_id=f"t-{run}",
        partitions=2,
        data_dir=tmp_path / "state",
        web_port=next(_ports),
        topics=Settings().topics.with_suffix(f"-{run}"),
        batch_within_s=0.02,
        tick_interval_s=0.5,
        internal_secret="test-cluster-secret",  # workers of one test share it (api.peer_auth)
    )


@pytest.fixture
def worker(worker_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """One worker child process for the test, on its own topics (broker tests)."""
    ensure_topics(worker_settings)
    w = WorkerProcess(worker_settings, tmp_path / "worker.log")
    w.start(timeout=90)
    yield w
    w.stop()
