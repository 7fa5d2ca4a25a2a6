"""The long bad-input fuzz run of issue #15 on a real broker and a real worker.

The generator of the fuzz tests (`tests/fuzz/generate.py`, seeded) makes `--per-category`
bad records of each category — truncated JSON, wrong types, missing and blocked ids, huge
values, deep values, binary, NUL, invalid timestamps, unicode, duplicate messageIds with
another body — interleaved with `--valid` valid ones and the edge cases each category
accepts. All go as raw bytes to the worker's mixed input topic; then the dead-letter topic
and the Profile API say what became of each record (`tests/fuzz/worker_run.py`): every bad
one must be dead-lettered with its reason and its original bytes, every valid one shown on
its profile, the second body of a messageId never, and the worker must be the process that
started, with no failed batch in its log. Prints the table the README shows.

    python -m bench.fuzz [--per-category 1200] [--valid 6000] [--seed 20261203]
"""

from __future__ import annotations

import argparse
import time

from bench.common import BENCH_DIR, bench_broker, quiet_kafka_logs, run_id, say
from bench.e2e import worker_settings
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess
from tests.fuzz.generate import FuzzGenerator
from tests.fuzz.worker_run import WorkerRun, check_worker, produce_cases

BROKER_PORT = 26792
WEB_PORT = 26800


def run(per_category: int, valid: int, seed: int) -> WorkerRun:
    quiet_kafka_logs()
    with bench_broker(BROKER_PORT, warm_s=0) as cfg:  # (correctness, not speed)
        tag = f"fuzz-{run_id()}"
        settings = worker_settings(cfg.bootstrap, tag, web_port=WEB_PORT)
        ensure_topics(settings)
        worker = WorkerProcess(settings, BENCH_DIR / f"{tag}.log")
        worker.start(timeout=120)
        try:
            pid = worker.proc.pid if worker.proc else None
            cases = list(FuzzGenerator(seed, int(time.time() * 1000)).stream(per_category, valid))
            say(f"producing {len(cases):,} records (seed {seed})")
            started = time.monotonic()
            produce_cases(settings, cases)
            say(f"produced in {time.monotonic() - started:.1f} s; checking every record")
            result = check_worker(worker, cases, timeout=900, started=started)
            if worker.proc is None or worker.proc.pid != pid:
                result.restarts += 1
            return result
        finally:
            worker.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-category", type=int, default=1_200)
    p.add_argument("--valid", type=int, default=6_000)
    p.add_argument("--seed", type=int, default=20261203)
    args = p.parse_args()
    result = run(args.per_category, args.valid, args.seed)
    print(result.tally.markdown(result.restarts))
    print(
        f"\n{result.produced:,} records, {result.dead_letters:,} dead letters; every record "
        f"accounted for {result.seconds_to_settle:.1f} s after the first was produced."
    )
    for problem in result.problems:
        print("PROBLEM:", problem)
    if result.problems or result.restarts:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
