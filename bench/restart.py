"""Restart and takeover times of the worker on a real broker (issues #15.2, #16.1).

What is measured (a real Apache Kafka, real worker processes, the bench definitions):
- **Restart**: a worker with its state on disk and nothing left to recover is SIGKILLed
  (no leave-group, no final commit) and started again at once; the time from the new
  process's start to `/health` saying `ready` with every partition, and to an event
  produced right after the start being applied (`engage_events_processed_total` grew).
  A crashed member is still in every consumer group it was in: without static
  membership the group waits for its session to expire before it rebalances.
- **Graceful restart**: the same after SIGTERM (the member leaves its groups).
- **Baseline**: the crash restart again with dynamic membership (`instance_id=""`), the
  Kafka default, in the same invocation.
- **Takeover**: two workers share the partitions; one is SIGKILLed; the time until the
  survivor owns every partition and is ready, and until an event on a partition the
  dead one owned is applied.

    python -m bench.restart [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.common import BENCH_DIR, bench_broker, machine_info, quiet_kafka_logs, say
from bench.e2e import BENCH_DEFINITIONS, worker_settings
from engage_stream.commands import apply_definitions
from engage_stream.config import Settings
from engage_stream.definitions.loader import load_definitions
from engage_stream.kafka_local.broker import BrokerConfig
from engage_stream.produce import produce_lines
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess, wait_until

BROKER_PORT = 26592
WEB_PORT = 26600


def _event(i: int) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": f"restart-user-{i % 97}",
        "event": "Order Completed",
        "messageId": f"restart-{time.time_ns()}-{i}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "properties": {"revenue": 10},
    }


def _produce(settings: Settings, n: int) -> None:
    produce_lines(settings, [orjson.dumps(_event(i)) for i in range(n)])


def _ready(w: WorkerProcess, partitions: int) -> bool:
    try:
        h = w.get_json("/health")
    except (OSError, ValueError):
        return False
    return h.get("status") == "ready" and len(h.get("owned", [])) == partitions


def _applied(w: WorkerProcess) -> float:
    try:
        return w.metric("engage_events_processed_total")
    except (OSError, ValueError):
        return -1.0


def _time_to(check: Callable[[], bool], t0: float, timeout: float, what: str) -> float:
    wait_until(check, timeout, what, interval=0.05)
    return time.monotonic() - t0


def _restart_round(w: WorkerProcess, settings: Settings, crash: bool) -> dict[str, float]:
    (w.kill if crash else w.stop)()
    t0 = time.monotonic()
    w.start(timeout=120)  # returns once /health lists a partition
    _produce(settings, 10)
    ready = _time_to(lambda: _ready(w, settings.partitions), t0, 120, "ready after restart")
    applied = _time_to(lambda: _applied(w) >= 10, t0, 120, "an event applied after restart")
    return {"ready_s": ready, "applied_s": applied}


def _takeover_round(tag: str, bootstrap: str, partitions: int, n: int) -> dict[str, float]:
    settings = worker_settings(bootstrap, tag, partitions=partitions, web_port=WEB_PORT + 10)
    second = settings.model_copy(
        update={"web_port": WEB_PORT + 11, "data_dir": BENCH_DIR / "worker-b"}
    )
    a = WorkerProcess(settings, BENCH_DIR / "logs" / f"{tag}-a.log")
    b = WorkerProcess(second, BENCH_DIR / "logs" / f"{tag}-b.log")
    a.start(timeout=120)
    b.start(timeout=120)
    try:
        both = lambda: len(a.get_json("/health")["owned"]) + len(b.get_json("/health")["owned"])  # noqa: E731
        wait_until(
            lambda: both() == partitions and _ready(a, len(a.get_json("/health")["owned"])),
            120,
            "split",
        )
        before = _applied(b)
        a.kill()
        t0 = time.monotonic()
        _produce(settings, n)  # spread over all partitions, the dead one's included
        owned = _time_to(lambda: _ready(b, partitions), t0, 120, "survivor owns every partition")
        applied = _time_to(lambda: _applied(b) >= before + n, t0, 120, "every event applied")
        return {"owned_s": owned, "applied_s": applied}
    finally:
        a.stop()
        b.stop()


def _summary(rounds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in rounds[0]:
        vals = sorted(r[key] for r in rounds)
        out[key] = {
            "min": round(vals[0], 2),
            "median": round(statistics.median(vals), 2),
            "max": round(vals[-1], 2),
        }
    return out


def run(
    rounds: int = 5, partitions: int = 4, broker_cfg: BrokerConfig | None = None
) -> dict[str, Any]:
    """On `broker_cfg` when given (run_all's broker), else on a broker of its own."""
    quiet_kafka_logs()
    results: dict[str, Any] = {"machine": machine_info(), "rounds": rounds}
    with (
        contextlib.nullcontext(broker_cfg) if broker_cfg else bench_broker(port=BROKER_PORT) as cfg
    ):
        tag = f"restart-{int(time.time())}"
        settings = worker_settings(cfg.bootstrap, tag, partitions=partitions, web_port=WEB_PORT)
        ensure_topics(settings)
        apply_definitions(settings, load_definitions(Path(BENCH_DEFINITIONS)))
        w = WorkerProcess(settings, BENCH_DIR / "logs" / f"{tag}.log")
        w.start(timeout=120)
        _produce(settings, 500)
        wait_until(lambda: _applied(w) >= 500, 120, "the first 500 events applied")
        # the baseline, in the same invocation: dynamic membership (a new member id each start)
        dynamic = WorkerProcess(
            settings.model_copy(update={"instance_id": ""}), BENCH_DIR / "logs" / f"{tag}-dyn.log"
        )
        for kind, worker, crash in (
            ("crash", w, True),
            ("graceful", w, False),
            ("crash_dynamic", dynamic, True),
        ):
            if worker is dynamic:
                w.stop()
                dynamic.start(timeout=120)
            got = []
            for i in range(rounds):
                got.append(_restart_round(worker, settings, crash))
                say(f"restart after {kind} {i + 1}/{rounds}: {got[-1]}")
            results[f"restart_after_{kind}"] = _summary(got)
        w = dynamic
        w.stop()
        takeovers = []
        for i in range(max(1, rounds // 2)):
            takeovers.append(_takeover_round(f"{tag}-t{i}", cfg.bootstrap, partitions, 50))
            say(f"takeover {i + 1}: {takeovers[-1]}")
        results["takeover_after_crash"] = _summary(takeovers)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="2 rounds")
    args = p.parse_args()
    print(report(run(rounds=2 if args.quick else args.rounds)))


def report(res: dict[str, Any]) -> str:
    lines = [f"Restart and takeover (median of {res['rounds']}, min–max):"]
    for key in (
        "restart_after_crash",
        "restart_after_graceful",
        "restart_after_crash_dynamic",
        "takeover_after_crash",
    ):
        parts = [
            f"{m} {v['median']:.2f} s ({v['min']:.2f}–{v['max']:.2f})" for m, v in res[key].items()
        ]
        lines.append(f"  {key:24} " + "; ".join(parts))
    static, dynamic = res["restart_after_crash"], res["restart_after_crash_dynamic"]
    lines.append(
        f"  crash → ready, static ÷ dynamic membership: "
        f"{static['ready_s']['median'] / dynamic['ready_s']['median']:.2f}×"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
