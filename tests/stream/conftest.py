"""The worker fixture of the broker tests: one worker child process per test, own topics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engage_stream.config import Settings
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess


@pytest.fixture
def worker(worker_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    ensure_topics(worker_settings)
    w = WorkerProcess(worker_settings, tmp_path / "worker.log")
    w.start(timeout=90)
    yield w
    w.stop()
