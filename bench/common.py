"""Shared harness pieces: the bench broker, ports, /proc sampling, /metrics parsing, waits.

Why its own broker: benchmark numbers from a broker that tests or demos also load are
noise, and the bench must never touch their ports (9092, 39092–39100, 39192–39400). Every
wait in the harness is bounded; everything started here is stopped in a `finally`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engage_stream.kafka_local import broker
from engage_stream.worker_process import wait_until  # noqa: F401 - re-exported for bench scripts

BENCH_DIR = Path("var/bench")
BROKER_PORT = 39900
CONTROLLER_PORT = 39901
WORKER_WEB_PORT = 39910
BASELINE_WEB_PORT = 39911
WARM_UP_S = 120.0  # the longest a bench broker is warmed up (bench.warmup)


def quiet_kafka_logs() -> None:
    """aiokafka logs each retried produce request (normal while new topics elect leaders)."""
    import logging

    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("kafka").setLevel(logging.ERROR)


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


@contextlib.contextmanager
def bench_broker(
    port: int = BROKER_PORT, fresh: bool = True, warm_s: float = WARM_UP_S
) -> Iterator[broker.BrokerConfig]:
    """A real Apache Kafka broker (KRaft) for this benchmark only; stopped on exit. On
    another port than the default it keeps its data apart (var/bench/kafka-<port>), so two
    bench brokers never share (or delete) one directory. Warmed up first for up to
    `warm_s` (`bench.warmup`; 0: not at all)."""
    data = BENCH_DIR / ("kafka" if port == BROKER_PORT else f"kafka-{port}")
    cfg = broker.BrokerConfig(port=port, controller_port=port + 1, data_dir=data, heap="1g")
    if broker.is_reachable(port=port):
        raise RuntimeError(f"port {port} is busy: stop whatever runs there (another bench run?)")
    if fresh and data.exists():
        shutil.rmtree(data)
    broker.start(cfg, timeout=120)
    try:
        if warm_s > 0:
            from bench.warmup import warm_broker

            say(f"broker warm-up (up to {warm_s:.0f}s until its CPU per round settles)")
            w = warm_broker(cfg, broker_pid(cfg), warm_s)
            say(f"  {w.records:,} records in {w.seconds:.0f}s; broker cores per round {w.cores}")
        yield cfg
    finally:
        broker.stop(cfg)


# -- process memory -------------------------------------------------------------------------


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS: now, VmHWM: peak over the process life)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples a process's RSS in a thread; `peak_mb` is the largest seen, `hwm_mb` the
    kernel's own high-water mark (read while the process is still alive)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.hwm_kb = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            self.sample(t0)
            self._stop.wait(self.interval)

    def sample(self, t0: float = 0.0) -> None:
        rss = proc_status_kb(self.pid, "VmRSS")
        hwm = proc_status_kb(self.pid, "VmHWM")
        if rss is not None:
            self.peak_kb = max(self.peak_kb, rss)
            self.samples.append((time.monotonic() - t0, rss))
        if hwm is not None:
            self.hwm_kb = max(self.hwm_kb, hwm)

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024

    @property
    def hwm_mb(self) -> float:
        return self.hwm_kb / 1024


# -- Prometheus text ------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Metrics:
    """One /metrics scrape: name → list of (labels, value)."""

    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Metrics:
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for line in text.splitlines():
            if not line or line[0] == "#":
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            labels = dict(_LABEL.findall(m.group(2) or ""))
            out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
        return cls(out)

    @classmethod
    def scrape(cls, url: str, timeout: float = 5.0) -> Metrics:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as resp:
            return cls.parse(resp.read().decode())

    def total(self, name: str, **labels: str) -> float:
        return sum(
            v
            for lab, v in self.samples.get(name, [])
            if all(lab.get(k) == want for k, want in labels.items())
        )

    def histogram(self, name: str) -> list[tuple[float, float]]:
        """Cumulative buckets (upper bound, count), summed over label sets."""
        acc: dict[float, float] = {}
        for lab, v in self.samples.get(name + "_bucket", []):
            le = float(lab["le"]) if lab.get("le") not in (None, "+Inf") else float("inf")
            acc[le] = acc.get(le, 0.0) + v
        return sorted(acc.items())


def histogram_quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float | None:
    """The bucket upper bound holding quantile q of the observations between two scrapes
    (Prometheus-style, without interpolation: an upper bound, as coarse as the buckets)."""
    b = dict(before)
    diff = [(le, c - b.get(le, 0.0)) for le, c in after]
    total = diff[-1][1] if diff else 0.0
    if total <= 0:
        return None
    for le, c in diff:
        if c >= q * total:
            return le
    return None


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


# -- machine --------------------------------------------------------------------------------


def machine_info(kafka_version: str | None = None) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    versions: dict[str, str] = {}
    for mod in ("faust", "aiokafka", "rocksdict", "orjson", "duckdb", "pydantic"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            dist = {"faust": "faust-streaming"}.get(mod, mod)
            versions[mod] = version(dist)
    java = ""
    with contextlib.suppress(Exception):
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        java = (out.stderr or out.stdout).splitlines()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kafka": kafka_version or broker.KAFKA_VERSION,
        "java": java,
        "packages": versions,
        "loadavg_at_start": os.getloadavg(),
    }


def code_info() -> dict[str, Any]:
    """Which code was measured: HEAD plus any uncommitted files under engage_stream/."""
    info: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "engage_stream"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        info["uncommitted"] = [line[3:] for line in status.splitlines()]
    return info


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, f))
    return total


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def broker_pid(cfg: broker.BrokerConfig) -> int | None:
    try:
        return int(cfg.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
