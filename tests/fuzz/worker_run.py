"""A fuzz stream through a real worker: produced as raw bytes, then read back from the
dead-letter topic and the Profile API, record by record.

Shared by the broker test (a few hundred records) and `bench/fuzz.py` (tens of
thousands). Every record goes to the mixed input topic under its own key (a duplicate
pair under one key, so on one partition, in order), exactly as generated: no stripping,
values and keys that are not UTF-8, records without a value.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from kafka import KafkaProducer

from engage_stream.config import Settings
from engage_stream.ingest.dead_letter import MAX_VALUE_BYTES, DeadLetter
from engage_stream.worker_process import WorkerProcess
from tests.fuzz.generate import DUPLICATE, PROCESSED, Case
from tests.fuzz.tally import LOST, Tally
from tests.stream.helpers import read_topic

# What a worker logs when a batch fails or a stage stops (it must never, on bad data)
NOT_DEAD_LETTERED = "not dead-lettered"
TROUBLE = ("batch failed", "stopping the worker", "Traceback")


def produce_cases(settings: Settings, cases: Iterable[Case]) -> int:
    producer = KafkaProducer(
        bootstrap_servers=settings.broker,
        acks="all",
        linger_ms=10,
        batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    n = 0
    try:
        for case in cases:
            producer.send(settings.topics.mixed, key=case.key, value=case.value)
            n += 1
        producer.flush()
    finally:
        producer.close()
    return n


def expected_id(case: Case) -> tuple[str, bytes]:
    """How a dead letter is matched to its record: reason and the original bytes, cut as
    the dead-letter topic cuts them (a later stage's too: the worker reads them back)."""
    return case.expect, (case.value or b"")[:MAX_VALUE_BYTES]


def events_of(worker: WorkerProcess, profile: str) -> list[dict[str, Any]] | None:
    """Every event the Profile API shows for `<id_type>:<value>` (None: not found yet)."""
    id_type, _, value = profile.partition(":")
    identifier = f"{id_type}:{quote(value, safe='')}"
    out: list[dict[str, Any]] = []
    query = "limit=100&sort=asc"
    while True:
        status, body = worker.profile(identifier, "events", query)
        if status != 200:
            return None
        out += body["data"]
        cursor = body.get("cursor") or {}
        if not cursor.get("has_more"):
            return out
        query = f"limit=100&sort=asc&next={quote(cursor['next'], safe='')}"


def _shown(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((e["message_id"], e.get("event") or e["type"]) for e in events)


@dataclass
class WorkerRun:
    tally: Tally = field(default_factory=Tally)
    problems: list[str] = field(default_factory=list)
    produced: int = 0
    seconds_to_settle: float = 0.0
    dead_letters: int = 0
    restarts: int = 0


def check_worker(
    worker: WorkerProcess, cases: list[Case], timeout: float, started: float
) -> WorkerRun:
    """Wait (up to `timeout`) until every bad record is dead-lettered and every valid one
    shows on its profile, then say record by record what became of each."""
    s = worker.settings
    run = WorkerRun(produced=len(cases))
    bad = [c for c in cases if c.bad]
    duplicates = sum(c.expect == DUPLICATE for c in cases)
    by_profile: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        if not c.bad:
            by_profile[str(c.profile)].append(c)
    deadline = time.monotonic() + timeout

    def alive() -> bool:
        return worker.proc is not None and worker.proc.poll() is None

    while alive() and time.monotonic() < deadline:
        if worker.metric("engage_events_dead_lettered_total") >= len(bad) and (
            worker.metric("engage_duplicates_dropped_total") >= duplicates
        ):
            break
        time.sleep(0.5)
    seen: dict[str, Counter[tuple[str, str]]] = {}
    pending = set(by_profile)
    while True:  # each profile looked at once at least, in time or not
        for profile in sorted(pending):
            shown = _shown(events_of(worker, profile) or [])
            seen[profile] = shown
            if all(_applied(c, shown) for c in by_profile[profile]):
                pending.discard(profile)
        if not pending or not alive() or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    run.seconds_to_settle = time.monotonic() - started
    if not alive():
        run.problems.append(f"the worker exited with {worker.proc and worker.proc.returncode}")
    records = read_topic(s, s.topics.dead_letter)
    run.dead_letters = len(records)
    dead = Counter[tuple[str, bytes]]()
    other_reasons: dict[bytes, str] = {}
    for rec in records:
        dl = DeadLetter.from_headers(rec.headers)
        if not dl.detail:
            run.problems.append(f"dead letter without a detail: {rec.value[:80]!r}")
        key = (dl.reason, rec.value)
        dead[key] += 1
        other_reasons[key[1]] = dl.reason
    for c in cases:
        if c.bad:
            key = expected_id(c)
            if dead[key] > 0:
                dead[key] -= 1
                result = c.expect
            else:
                result = other_reasons.get(key[1], NOT_DEAD_LETTERED)
        else:
            result = c.expect if _applied(c, seen.get(str(c.profile), Counter())) else LOST
        run.tally.add(c, result)
    unexplained = sum((+dead).values())
    if unexplained:
        run.problems.append(f"{unexplained} dead letters no bad record explains")
    for c, result in run.tally.wrong[:30]:
        value = (c.value or b"")[:100]
        run.problems.append(
            f"#{c.n} {c.category}/{c.kind}: expected {c.expect}, got {result}: {value!r}"
        )
    run.restarts = 0 if alive() else 1
    for line in worker.log_tail(10_000_000).splitlines():
        if any(t in line for t in TROUBLE):
            run.problems.append(f"worker log: {line[:200]}")
            break
    return run


def _applied(case: Case, shown: Counter[tuple[str, str]]) -> bool:
    """A processed record shows once with its own event; the second body of a messageId
    never shows: its messageId shows once, with the first body's event."""
    mid = str(case.message_id)
    if case.expect == PROCESSED:
        return shown[(mid, str(case.event))] == 1
    assert case.expect == DUPLICATE
    return (
        sum(n for (m, _), n in shown.items() if m == mid) == 1
        and shown[(mid, str(case.event))] == 1
    )
