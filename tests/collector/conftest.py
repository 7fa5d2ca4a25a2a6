"""Fixtures of the collector's broker tests: a worker and a collector process on their own
topics (one pair for the session: starting a worker is the slow part), the Segment SDK runners,
and the JavaScript set-up that `make test` installs (tests/collector/js)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engage_stream.collector.process import CollectorProcess
from engage_stream.collector.settings import CollectorSettings
from engage_stream.config import Settings
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess
from tests.conftest import _ports

JS_DIR = Path(__file__).parent / "js"
WRITE_KEYS = {
    "wk_python_7f3a": "python-server",
    "wk_node_19c2": "node-server",
    "wk_web_a1b2": "website",
}


def js_ready() -> str | None:
    """None when the npm packages and the browser bundle are installed, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (JS_DIR / "node_modules" / "@segment").is_dir():
        return f"npm packages missing in {JS_DIR} (run `make js`, which `make test` runs)"
    if not (JS_DIR / "build" / "analytics-next.js").is_file():
        return f"analytics-next bundle missing in {JS_DIR}/build (run `make js`)"
    return None


def require_js() -> None:
    """Skip without the JS set-up, except in CI, where it must have been installed."""
    missing = js_ready()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the JS SDKs: {missing}")
        pytest.skip(missing)


@dataclass
class Stack:
    settings: Settings
    worker: WorkerProcess
    collector: CollectorProcess


def stack_settings(broker: str, name: str, data_dir: Path) -> Settings:
    run = f"{name}-{int(time.time() * 1000) % 10_000_000}"
    return Settings(
        broker=broker,
        app_id=f"t-{run}",
        partitions=2,
        data_dir=data_dir,
        web_port=next(_ports),
        topics=Settings().topics.with_suffix(f"-{run}"),
        batch_within_s=0.02,
        tick_interval_s=0.5,
    )


def write_keys_file(path: Path) -> Path:
    path.write_text("".join(f"{key}: {source}\n" for key, source in WRITE_KEYS.items()))
    return path


def collector_config(tmp: Path, **overrides: object) -> CollectorSettings:
    return CollectorSettings(
        port=next(_ports),
        write_keys_file=write_keys_file(tmp / "write-keys.yaml"),
        retry_after_s=1,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def stack(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("collector-stack")
    settings = stack_settings(kafka_broker, "collector", tmp / "state")
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp / "worker.log")
    collector = CollectorProcess(settings, collector_config(tmp), tmp / "collector.log")
    worker.start(timeout=90)
    try:
        collector.start(timeout=30)
        yield Stack(settings, worker, collector)
    finally:
        code = collector.stop()
        worker.stop()
        assert code == 0, f"the collector stops cleanly on SIGTERM:\n{collector.log_tail()}"
