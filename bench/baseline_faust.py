"""Baselines on the same broker and the same pre-produced input events as our worker.

Why these four: they bracket our worker from both sides.
- `faust-table`: the straightforward Faust path — one agent over the input topics, a
  RocksDB-backed Faust table (rocksdict driver), one `table[key] = profile` per event
  (which in Faust is a RocksDB put plus a changelog send, per event).
- `faust-trivial`: the same agent with no table: decode and count. Faust's own
  per-event stream overhead, the ceiling for anything built as a Faust agent.
- `aiokafka`: plain `AIOKafkaConsumer.getmany` + `orjson.loads`: the client ceiling.
- `aiokafka-rocksdict`: the same plus a hand-written profile update in rocksdict (get,
  decode, update, encode, one WriteBatch per fetch): the ceiling of "decode + state" with
  no validation, no changelog, no checkpoint — what reference §3.5 measured without Kafka.

Each runs as its own process (`python -m bench.baseline_faust MODE …`), reports through a
status file (count, wall and CPU time at the first and at the latest event), and is stopped
by the harness when it has seen every event or its time cap ran out (then the rate is over
the prefix it got through).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

MODES = ("aiokafka", "aiokafka-rocksdict", "faust-trivial", "faust-table")


class Status:
    """Progress, written atomically to a JSON file the harness polls."""

    def __init__(self, path: Path, expect: int) -> None:
        self.path = path
        self.expect = expect
        self.count = 0
        self.first: float | None = None
        self.cpu_first: float | None = None
        self.count_first = 0
        self.last = 0.0
        self.cpu_last = 0.0
        self._written = 0.0

    def seen(self, n: int = 1) -> None:
        self.count += n
        if self.first is None:  # the clock starts once the first batch is done
            self.first, self.cpu_first = time.time(), time.process_time()
            self.count_first = self.count
        if self.count >= self.expect or time.monotonic() - self._written > 0.2:
            self.write()

    def write(self) -> None:
        self.last, self.cpu_last = time.time(), time.process_time()
        self._written = time.monotonic()
        data = {
            "count": self.count,
            "first": self.first,
            "count_first": self.count_first,
            "cpu_first": self.cpu_first,
            "last": self.last,
            "cpu_last": self.cpu_last,
            "done": self.count >= self.expect,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(data))
        os.replace(tmp, self.path)


def _update_profile(profile: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The same small per-event update every stateful baseline does."""
    profile["n"] = profile.get("n", 0) + 1
    profile["last_ts"] = event.get("timestamp")
    profile["last_event"] = event.get("event") or event.get("type")
    traits = event.get("traits")
    if traits and event.get("type") == "identify":
        profile.setdefault("traits", {}).update(traits)
    if event.get("event") == "Order Completed":
        profile["revenue"] = profile.get("revenue", 0.0) + float(
            event.get("properties", {}).get("revenue") or 0
        )
    return profile


# -- children -------------------------------------------------------------------------------


async def _aiokafka(args: argparse.Namespace, status: Status, rocks: bool) -> None:
    from aiokafka import AIOKafkaConsumer

    db = None
    if rocks:
        from rocksdict import Options, Rdict, WriteBatch

        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
        db = Rdict(str(Path(args.data_dir) / "profiles"), options=opts)
    consumer = AIOKafkaConsumer(
        *args.topics.split(","),
        bootstrap_servers=args.broker,
        group_id=args.group,
        auto_offset_reset="earliest",
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    loads, dumps = orjson.loads, orjson.dumps
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            n = 0
            dirty: dict[bytes, dict[str, Any]] = {}
            for recs in batch.values():
                n += len(recs)
                for r in recs:
                    event = loads(r.value)
                    if db is not None:
                        key = r.key
                        prof = dirty.get(key)
                        if prof is None:
                            raw = db.get(key)
                            prof = loads(raw) if raw is not None else {}
                        dirty[key] = _update_profile(prof, event)
            if db is not None and dirty:
                wb = WriteBatch(raw_mode=True)
                for k, v in dirty.items():
                    wb.put(k, dumps(v))
                db.write(wb)
            if n:
                status.seen(n)
    finally:
        await consumer.stop()
        if db is not None:
            db.close()


def _faust(args: argparse.Namespace, status: Status, table: bool) -> None:
    import logging

    import faust
    from faust.worker import Worker

    app = faust.App(
        args.group,
        broker=f"kafka://{args.broker}",
        store="rocksdb://" if table else "memory://",
        datadir=args.data_dir,
        topic_partitions=args.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        web_port=args.web_port,
        key_serializer="raw",
        value_serializer="json",  # the table's values: profile dicts, as a Faust user writes
    )
    source = app.topic(*args.topics.split(","), key_serializer="raw", value_serializer="raw")
    profiles = (
        app.Table("profiles", partitions=args.partitions, options={"driver": "rocksdict"})
        if table
        else None
    )
    loads = orjson.loads

    @app.agent(source)
    async def consume(stream: Any) -> None:
        async for key, value in stream.items():
            event = loads(value)
            if profiles is not None:
                profiles[key] = _update_profile(profiles.get(key) or {}, event)
            status.seen()

    @app.timer(0.2)
    async def report() -> None:
        if status.count:
            status.write()

    @app.task
    async def quiet_clients() -> None:
        for name in ("aiokafka", "kafka"):
            logging.getLogger(name).setLevel(logging.WARNING)

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_faust")
    p.add_argument("mode", choices=MODES)
    p.add_argument("--broker", required=True)
    p.add_argument("--topics", required=True, help="comma-separated input topics")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--group", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--status", type=Path, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--web-port", type=int, default=39911)
    args = p.parse_args(argv)
    status = Status(args.status, args.expect)
    if args.mode.startswith("aiokafka"):
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_aiokafka(args, status, rocks=args.mode == "aiokafka-rocksdict"))
    else:
        _faust(args, status, table=args.mode == "faust-table")
    return 0


# -- harness side ---------------------------------------------------------------------------


@dataclass
class BaselineResult:
    mode: str
    events_target: int
    events: int
    complete: bool
    seconds: float
    events_per_s: float
    cpu_us_per_event: float | None
    startup_s: float
    rss_hwm_mb: float


def run_baseline(
    mode: str,
    bootstrap: str,
    topics: list[str],
    partitions: int,
    total: int,
    max_seconds: float,
    work_dir: Path,
    tag: str,
    web_port: int = 39911,
) -> BaselineResult:
    """Run one baseline child over the pre-produced input and read its rate."""

    work_dir.mkdir(parents=True, exist_ok=True)
    status_path = work_dir / f"{mode}.status.json"
    status_path.unlink(missing_ok=True)
    log_path = work_dir / f"{mode}.log"
    cmd = [
        sys.executable,
        "-m",
        "bench.baseline_faust",
        mode,
        "--broker",
        bootstrap,
        "--topics",
        ",".join(topics),
        "--partitions",
        str(partitions),
        "--group",
        f"bl-{mode}-{tag}",
        "--expect",
        str(total),
        "--status",
        str(status_path),
        "--data-dir",
        str(work_dir / f"{mode}-data"),
        "--web-port",
        str(web_port),
    ]
    result, _ = drain_child(cmd, mode, total, max_seconds, log_path, status_path)
    return result


def drain_child(
    cmd: list[str],
    mode: str,
    total: int,
    max_seconds: float,
    log_path: Path,
    status_path: Path,
    startup_s: float = 90.0,
) -> tuple[BaselineResult, dict[str, Any]]:
    """Run a baseline child that drains the input and writes its progress to `status_path`
    (first/last instants, count, CPU); its rate from that file, and the file's last state."""
    from bench.common import RssSampler, say

    t_spawn = time.time()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    status: dict[str, Any] = {}
    sampler = RssSampler(proc.pid)
    try:
        with sampler:
            deadline = time.monotonic() + startup_s + max_seconds
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"baseline {mode} exited {proc.returncode}: {_tail(log_path)}"
                    )
                with contextlib.suppress(OSError, ValueError):
                    status = json.loads(status_path.read_bytes())
                if status.get("done"):
                    break
                first = status.get("first")
                if first and time.time() - first > max_seconds:
                    say(f"  {mode}: time cap {max_seconds:.0f}s reached at {status['count']:,}")
                    break
                time.sleep(0.2)
            sampler.sample()
    finally:
        _stop(proc)
    if not status.get("first"):
        raise RuntimeError(f"baseline {mode} saw no events: {_tail(log_path)}")
    secs = max(1e-6, status["last"] - status["first"])
    count = int(status["count"])
    cpu = status["cpu_last"] - status["cpu_first"]
    measured_from = int(status.get("count_first") or 0)
    result = BaselineResult(
        mode=mode,
        events_target=total,
        events=count,
        complete=bool(status.get("done")),
        seconds=round(secs, 2),
        events_per_s=round(max(0, count - measured_from) / secs),
        cpu_us_per_event=(
            round(cpu * 1e6 / (count - measured_from), 1) if count > measured_from else None
        ),
        startup_s=round(status["first"] - t_spawn, 2),
        rss_hwm_mb=round(sampler.hwm_mb, 1),
    )
    return result, status


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def results_dict(r: BaselineResult) -> dict[str, Any]:
    return asdict(r)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
