"""Issue #15's fuzz suite against a real worker on the real broker (the short variant CI
runs): bad records of every category interleaved with valid ones, produced as raw bytes
to the input topic; every bad one must come out on the dead-letter topic with its reason,
every valid one show on its profile in the Profile API (the second body of a messageId
never), and the worker must still be the process that started."""

from __future__ import annotations

import time

import pytest

from engage_stream.worker_process import WorkerProcess
from tests.fuzz.generate import CATEGORIES, FuzzGenerator
from tests.fuzz.worker_run import check_worker, produce_cases

pytestmark = pytest.mark.broker

SEED = 1515
PER_CATEGORY = 20
VALID = 120


def test_a_worker_dead_letters_every_bad_record_and_processes_every_valid_one(
    worker: WorkerProcess,
) -> None:
    pid = worker.proc.pid if worker.proc else None
    gen = FuzzGenerator(SEED, int(time.time() * 1000), huge_bytes=60_000)
    cases = list(gen.stream(PER_CATEGORY, VALID))
    started = time.monotonic()
    produce_cases(worker.settings, cases)
    run = check_worker(worker, cases, timeout=60, started=started)
    print("\n" + run.tally.markdown(run.restarts))
    assert not run.problems, "\n".join(run.problems)
    for category in CATEGORIES[:-1]:
        row = run.tally.rows[category]
        assert row.bad == row.dead_lettered == PER_CATEGORY, category
        assert row.processed == row.valid, category
    dups = run.tally.rows["duplicate_message_ids"]
    assert dups.dropped == dups.duplicates == PER_CATEGORY
    assert run.tally.rows["valid"].processed == VALID
    assert run.tally.total.wrong == 0
    assert any(c.kind == "cut_to_size" for c in cases), "one beyond the dead-letter limit"
    assert worker.metric("engage_events_dead_lettered_total") == run.dead_letters
    assert worker.metric("engage_duplicates_dropped_total") == PER_CATEGORY
    assert run.restarts == 0 and worker.proc is not None and worker.proc.pid == pid
    assert worker.get_json("/health").get("partitions"), "still serving"
