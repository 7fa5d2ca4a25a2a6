"""The Quix Streams peer baseline (#14), side by side with the worker on the same input.

What is compared: the bench workload pre-produced once into the worker's input topics;
`bench/quix_app.py` (a Quix Streams app computing 15 of the bench's 70 definitions in its
RocksDB state, see its docstring) drains it, and the real worker drains the same records
with all 70 definitions (a fresh app id each time: `e2e.with_app`). Both are timed the same
way — events/s from the first processed event to the last, CPU µs/event of the process
(/proc for the worker, the process's own clock for Quix: librdkafka threads included),
peak RSS — and "per definition evaluated" is events/s × definitions evaluated per event
(70 for the worker, 15 for Quix). Rounds alternate which one goes first, so a change in
the machine's load does not always hit the same side.

Why a subprocess in another venv: quixstreams pins versions of pydantic and others the
project does not use, so it lives in bench/.venv-quix (ignored by git), created here on
first use with the pinned version; its app imports only the standard library and
quixstreams.

    python -m bench.baseline_quix [--quick] [--rounds N] [--port 38700]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import orjson

from bench import e2e
from bench.baseline_faust import drain_child
from bench.common import (
    BENCH_DIR,
    bench_broker,
    code_info,
    machine_info,
    quiet_kafka_logs,
    run_id,
    say,
)
from bench.definition_set import audiences, computed_traits
from bench.quix_app import DEFINITIONS as QUIX_DEFINITIONS
from bench.workload import WorkloadSpec

QUIX_VERSION = "3.28.1"
QUIX_VENV = Path(__file__).resolve().parent / ".venv-quix"
QUIX_APP = Path(__file__).resolve().parent / "quix_app.py"
WORKER_DEFINITIONS = len(audiences()) + len(computed_traits())
LABEL = f"Quix Streams app, {QUIX_DEFINITIONS} definitions in RocksDB State"


def quix_python(venv: Path = QUIX_VENV) -> Path:
    """The Quix venv's interpreter, with quixstreams at the pinned version; made (or
    fixed) here when missing, so a fresh machine needs nothing but network access."""
    py = venv / "bin" / "python"
    if py.exists():
        probe = subprocess.run(
            [str(py), "-c", "import quixstreams; print(quixstreams.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if probe.returncode == 0 and probe.stdout.strip() == QUIX_VERSION:
            return py
    else:
        say(f"{venv} is missing: creating it for the Quix Streams baseline (once)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    say(f"installing quixstreams=={QUIX_VERSION} into {venv} (its pins conflict with .venv)")
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"quixstreams=={QUIX_VERSION}"],
        check=True,
        timeout=900,
    )
    return py


def run_quix(
    bootstrap: str,
    topics: list[str],
    partitions: int,
    total: int,
    max_seconds: float,
    work_dir: Path,
    tag: str,
) -> dict[str, Any]:
    """Drain the pre-produced input with the Quix app; the same figures as a Faust baseline
    (`BaselineResult`) plus the definitions it evaluates and the change records it wrote."""
    py = quix_python()
    # Only the topics that carry the workload: Quix names its changelog topic after every
    # input topic, and the seven of them exceed Kafka's 255 characters.
    topics = [t for t in topics if e2e.topic_records(bootstrap, t) > 0]
    work_dir.mkdir(parents=True, exist_ok=True)
    status_path = work_dir / f"quix-{tag}.status.json"
    status_path.unlink(missing_ok=True)
    log_path = work_dir / f"quix-{tag}.log"
    output = f"quix-changes-{tag}"
    cmd = [
        str(py),
        str(QUIX_APP),
        "--broker",
        bootstrap,
        "--topics",
        ",".join(topics),
        "--partitions",
        str(partitions),
        "--group",
        f"quix-{tag}",
        "--output",
        output,
        "--expect",
        str(total),
        "--status",
        str(status_path),
        "--state-dir",
        str(work_dir / f"quix-{tag}-state"),
    ]
    result, status = drain_child(
        cmd, "quix", total, max_seconds, log_path, status_path, startup_s=120.0
    )
    steady = None
    if status.get("t10") and status.get("t90") and status["t90"] > status["t10"]:
        steady = round(0.8 * total / (status["t90"] - status["t10"]))
    changes = e2e.topic_records(bootstrap, output)
    shutil.rmtree(work_dir / f"quix-{tag}-state", ignore_errors=True)
    return {
        **asdict(result),
        "steady_events_per_s": steady,
        "definitions": QUIX_DEFINITIONS,
        "per_definition_per_s": result.events_per_s * QUIX_DEFINITIONS,
        "changes_records": changes,
        "quixstreams": QUIX_VERSION,
    }


def run(
    bootstrap: str,
    topics: list[str],
    partitions: int,
    total: int,
    max_seconds: float,
    tag: str,
) -> dict[str, Any]:
    """run_all's `quix` section: the Quix app once over the input already in the topics;
    run_all compares it with its own worker section (same records, same invocation)."""
    work_dir = BENCH_DIR / "baselines" / tag
    try:
        return run_quix(bootstrap, topics, partitions, total, max_seconds, work_dir, tag)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def per_definition_ratio(worker_events_per_s: float, quix: dict[str, Any]) -> float | None:
    """Worker ÷ Quix in definitions evaluated per second (events/s × definitions)."""
    if not quix.get("per_definition_per_s"):
        return None
    return round(worker_events_per_s * WORKER_DEFINITIONS / quix["per_definition_per_s"], 2)


def report_lines(worker_events_per_s: float | None, quix: dict[str, Any]) -> list[str]:
    """run_all's throughput-table row for Quix (its columns) and the per-definition ratio."""
    if "error" in quix:
        return [f"  {LABEL:56s} failed: {quix['error'][:60]}"]
    ratio = (
        f"{worker_events_per_s / quix['events_per_s']:.2f}×"
        if worker_events_per_s and quix["events_per_s"]
        else "—"
    )
    cpu = quix["cpu_us_per_event"]
    part = "" if quix["complete"] else f"  (first {quix['events']:,} events, time cap)"
    lines = [
        f"  {LABEL:56s} {quix['events_per_s']:>9,} "
        f"{'—' if cpu is None else format(cpu, ',.1f'):>10s} {quix['rss_hwm_mb']:>7,.0f} "
        f"{ratio:>11s}{part}"
    ]
    if worker_events_per_s:
        ours = worker_events_per_s * WORKER_DEFINITIONS
        lines.append(
            f"    per definition evaluated: worker {worker_events_per_s:,.0f} events/s × "
            f"{WORKER_DEFINITIONS} = {ours:,.0f}/s, Quix {quix['events_per_s']:,} × "
            f"{quix['definitions']} = {quix['per_definition_per_s']:,}/s: worker ÷ Quix "
            f"{per_definition_ratio(worker_events_per_s, quix):.2f}× "
            f"({quix['changes_records']:,} Quix change records)"
        )
    return lines


# -- standalone: both sides, alternating rounds, on a broker of its own ---------------------


def _settled_records(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    """A topic's record count once it stops growing: the last batches' changes are still
    being produced when the worker's metrics already count their events as applied."""
    n, deadline = e2e.topic_records(bootstrap, topic), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        m = e2e.topic_records(bootstrap, topic)
        if m == n:
            break
        n = m
    return n


def _worker_round(cfg: Any, settings: Any, total: int, timeout: float, name: str) -> dict:
    worker_settings = e2e.with_app(settings, name)
    with e2e.BenchWorker(worker_settings, worker_settings.app_id) as worker:
        tp = e2e.measure_throughput(worker, total, timeout, cfg, f"worker {name}")
        changes = _settled_records(cfg.bootstrap, worker_settings.topics.changes)
    shutil.rmtree(e2e.state_dir(worker_settings).parent, ignore_errors=True)
    return {
        "events_per_s": tp.events_per_s,
        "steady_events_per_s": tp.steady_events_per_s,
        "cpu_us_per_event": tp.worker_cpu_us_per_event,
        "rss_hwm_mb": tp.rss_hwm_mb,
        "seconds": tp.seconds,
        "complete": tp.complete,
        "broker_cpu_s": tp.broker_cpu_s,
        "definitions": WORKER_DEFINITIONS,
        "per_definition_per_s": tp.events_per_s * WORKER_DEFINITIONS,
        "changes_records": changes,
    }


def side_by_side(
    port: int, web_port: int, profiles: int, events: int, rounds: int, cap_s: float
) -> dict[str, Any]:
    """Produce once, then `rounds` × (Quix, worker), the order alternating per round."""
    tag = run_id()
    spec = WorkloadSpec(profiles=profiles, events=events)
    spec = replace(spec, end_ms=spec.resolved_end_ms())
    quix_python()  # before the broker starts: a fresh machine installs it first
    out: dict[str, Any] = {
        "run": tag,
        "machine": machine_info(),
        "code": code_info(),
        "workload": asdict(spec),
        "rounds": rounds,
        "port": port,
        "quix": [],
        "worker": [],
        "loadavg": [],
    }
    work_dir = BENCH_DIR / "baselines" / f"quix-{tag}"
    with bench_broker(port) as cfg:
        settings = e2e.worker_settings(cfg.bootstrap, f"q{tag}", web_port=web_port)
        e2e.prepare_inputs(settings, spec)
        for r in range(rounds):
            order = ("quix", "worker") if r % 2 == 0 else ("worker", "quix")
            for side in order:
                out["loadavg"].append((f"{side}{r}", os.getloadavg()))
                say(f"round {r + 1}/{rounds}: {side} draining {spec.total_events:,} events")
                if side == "quix":
                    res = run_quix(
                        cfg.bootstrap,
                        settings.topics.inputs(),
                        settings.partitions,
                        spec.total_events,
                        cap_s,
                        work_dir,
                        f"{tag}-r{r}",
                    )
                else:
                    res = _worker_round(cfg, settings, spec.total_events, cap_s, f"r{r}")
                say(
                    f"  {side}: {res['events_per_s']:,} events/s, {res['cpu_us_per_event']} "
                    f"CPU µs/event, RSS {res['rss_hwm_mb']:,.0f} MB, "
                    f"{res['changes_records']:,} change records"
                )
                out[side].append(res)
    shutil.rmtree(work_dir, ignore_errors=True)
    shutil.rmtree(BENCH_DIR / f"kafka-{port}", ignore_errors=True)
    out["summary"] = summary(out)
    return out


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """Medians of the rounds and the ratios worker ÷ Quix."""
    s: dict[str, Any] = {}
    for side in ("quix", "worker"):
        runs = r[side]
        s[side] = {
            "events_per_s": round(statistics.median(x["events_per_s"] for x in runs)),
            "steady_events_per_s": round(
                statistics.median(x["steady_events_per_s"] or 0 for x in runs)
            ),
            "cpu_us_per_event": round(
                statistics.median(x["cpu_us_per_event"] or 0 for x in runs), 1
            ),
            "rss_hwm_mb": max(x["rss_hwm_mb"] for x in runs),
            "definitions": runs[0]["definitions"],
        }
        s[side]["per_definition_per_s"] = s[side]["events_per_s"] * s[side]["definitions"]
    q, w = s["quix"], s["worker"]
    s["worker_vs_quix_events_per_s"] = round(w["events_per_s"] / q["events_per_s"], 3)
    if q["steady_events_per_s"]:
        s["worker_vs_quix_steady_events_per_s"] = round(
            w["steady_events_per_s"] / q["steady_events_per_s"], 3
        )
    s["worker_vs_quix_per_definition"] = round(
        w["per_definition_per_s"] / q["per_definition_per_s"], 3
    )
    s["worker_vs_quix_cpu_per_event"] = round(w["cpu_us_per_event"] / q["cpu_us_per_event"], 3)
    s["worker_vs_quix_cpu_per_definition"] = round(
        (w["cpu_us_per_event"] / w["definitions"]) / (q["cpu_us_per_event"] / q["definitions"]),
        3,
    )
    return s


def report(r: dict[str, Any]) -> str:
    s = r["summary"]
    w = r["workload"]
    L = [
        f"Quix Streams baseline ({r['run']}): {w['events']:,} events, {w['profiles']:,} "
        f"profiles, real broker on port {r['port']}, median of {r['rounds']} alternating rounds",
        f"  {'':50s} {'events/s':>9s} {'steady':>7s} {'CPU µs/ev':>10s} {'RSS MB':>7s} "
        f"{'defs':>5s} {'evaluations/s':>14s}",
    ]
    for side, label in (
        ("worker", "engage-stream worker (all definitions)"),
        ("quix", LABEL),
    ):
        x = s[side]
        runs = ", ".join(f"{y['events_per_s']:,}" for y in r[side])
        L.append(
            f"  {label:50s} {x['events_per_s']:>9,} {x['steady_events_per_s']:>7,} "
            f"{x['cpu_us_per_event']:>10,.1f} "
            f"{x['rss_hwm_mb']:>7,.0f} {x['definitions']:>5d} {x['per_definition_per_s']:>14,}"
            f"  ({runs})"
        )
    L.append(
        f"  worker ÷ Quix: per event {s['worker_vs_quix_events_per_s']:.2f}× (steady "
        f"{s.get('worker_vs_quix_steady_events_per_s') or 0:.2f}×), per definition "
        f"evaluated {s['worker_vs_quix_per_definition']:.2f}×; CPU per event "
        f"{s['worker_vs_quix_cpu_per_event']:.2f}×, CPU per definition "
        f"{s['worker_vs_quix_cpu_per_definition']:.2f}×"
    )
    L.append(
        "  load average before each run: "
        + ", ".join(f"{name} {la[0]:.1f}" for name, la in r["loadavg"])
    )
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_quix", description=__doc__)
    p.add_argument("--quick", action="store_true", help="20k events, one round")
    p.add_argument("--events", type=int)
    p.add_argument("--profiles", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--cap", type=float, default=600, help="time cap per run, seconds")
    p.add_argument("--port", type=int, default=38700, help="the broker's port (its own)")
    p.add_argument("--web-port", type=int, default=38710, help="the worker's web port")
    args = p.parse_args(argv)
    quiet_kafka_logs()
    events = args.events or (20_000 if args.quick else 50_000)
    profiles = args.profiles or max(1, events // 5)
    rounds = args.rounds or (1 if args.quick else 2)
    res = side_by_side(args.port, args.web_port, profiles, events, rounds, args.cap)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"quix-{res['run']}.json"
    path.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    print(report(res))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
