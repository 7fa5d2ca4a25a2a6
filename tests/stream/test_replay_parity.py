"""The worker and `replay` run one profiles stage: the same `profile-events` records give
byte-identical change records, whether a worker on the real broker processed them or
`Replay.apply_records` did in memory."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engage_stream.commands import apply_definitions
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.loader import parse_text
from engage_stream.records import InputRecord
from engage_stream.replay import Replay
from engage_stream.worker_process import WorkerProcess
from tests.stream.helpers import identify, now_iso, produce, read_topic, track, wait_for

pytestmark = pytest.mark.broker

DEFINITIONS = """
- kind: audience
  key: viewers
  conditions:
    - event: Product Viewed
      within: {minutes: 0.1}
  destinations: [{name: crm, identify: true, track: true}]
- kind: computed_trait
  key: spent
  type: sum
  event: Order Completed
  property: revenue
"""


def test_worker_and_replay_give_byte_identical_changes(worker: WorkerProcess) -> None:
    s = worker.settings
    defs, problems = parse_text(DEFINITIONS, "parity.yaml")
    assert not problems
    apply_definitions(s, [d for d, _ in defs])
    # the events must find the definitions applied: arriving first, they would be counted
    # by the backfill (one `definition:` change each) rather than one change per event
    # (a race a CI run hit once)
    wait_for(lambda: _status(worker, "viewers") == "Live", what="definitions live")
    messages = []
    for i in range(12):
        user = f"p{i % 4}"
        messages.append(track(user, "Product Viewed", now_iso(), f"v{i}"))
        messages.append(track(user, "Order Completed", now_iso(), f"o{i}", revenue=i + 0.5))
    messages.append(identify("p1", now_iso(), "i1", email="p1@example.com"))
    produce(s, messages)
    # entries now, exits once the 6-second window passed with no further input
    wait_for(
        lambda: sum(1 for r in read_topic(s, s.topics.changes) if b'"value":false' in r.value) >= 4,
        timeout=60,
        what="window exits on engage.changes",
    )
    time.sleep(2 * s.tick_interval_s)  # and a few more ticks, that must change nothing

    catalog = Catalog.from_definitions(d for d, _ in defs)
    replayed: list[bytes] = []
    by_partition: dict[int, list[Any]] = {}
    for rec in read_topic(s, s.topics.profile_events):
        by_partition.setdefault(rec.partition, []).append(rec)
    for part, recs in sorted(by_partition.items()):
        replay = Replay(catalog, s)
        outputs = replay.apply_records(
            [InputRecord(r.topic, part, r.offset, r.timestamp, r.key, r.value) for r in recs]
        )
        replayed.extend(o.value or b"" for o in outputs if o.topic == s.topics.changes)
    worker_changes = [r.value for r in read_topic(s, s.topics.changes)]
    assert len(worker_changes) >= 12 + 4 + 4
    assert sorted(worker_changes) == sorted(replayed)


def _status(worker: WorkerProcess, key: str) -> str | None:
    status, body = worker.request(f"/v1/audiences/{key}", token=worker.settings.api_token)
    return body.get("status") if status == 200 and isinstance(body, dict) else None
