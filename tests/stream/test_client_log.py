"""The Kafka clients' retry logs: once per interval and kind, with the count of the rest."""

from __future__ import annotations

import logging

import pytest

from engage_stream.stream import client_log
from engage_stream.stream.client_log import RepeatedClientLog, quiet_client_retries


def test_repeats_within_the_interval_are_counted_not_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [100.0]
    monkeypatch.setattr(client_log.time, "monotonic", lambda: clock[0])
    f = RepeatedClientLog(interval_s=30)
    logger = logging.getLogger("aiokafka.test-repeats")
    logger.addFilter(f)
    try:
        with caplog.at_level(logging.INFO, logger="aiokafka.test-repeats"):
            for node in range(500):  # one outage: the same kind, other arguments
                logger.error("Unable connect to node with id %s: %s", node, "refused")
                logger.error("Unable to update metadata from %s", [node])
                clock[0] += 0.05
            logger.info("informational lines pass: %s", 1)
            clock[0] += 30
            logger.error("Unable connect to node with id %s: %s", 7, "refused")
    finally:
        logger.removeFilter(f)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == [
        "Unable connect to node with id 0: refused",
        "Unable to update metadata from [0]",
    ]
    # 500 × 0.05 s = 25 s: still within the first interval
    assert lines[2] == "informational lines pass: 1"
    assert (
        lines[3]
        == "Unable connect to node with id 7: refused (and 499 more like it in the last 55 s)"
    )
    assert len(lines) == 4


def test_installed_on_every_client_logger() -> None:
    quiet_client_retries()
    quiet_client_retries()
    for name in (
        "aiokafka",
        "aiokafka.conn",
        "aiokafka.consumer.fetcher",
        "aiokafka.consumer.group_coordinator",
    ):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(x, RepeatedClientLog) for x in filters) == 1, name
