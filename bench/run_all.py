"""Every benchmark figure from one command, each beside its baseline where it has one.

    python -m bench.run_all            # full run, about an hour on 2 cores
    python -m bench.run_all --quick    # small sizes, about 7 minutes: for developing

Starts its own Apache Kafka broker (port 39900, data in var/bench/kafka) and runs the
sections that need it (produce, baselines, quix, worker, worker_python, worker_pair, profile,
history, scale, journeys_e2e, restart) one after the other: never two workers at once (but
worker_pair's and the takeover's pairs), as the machine has two cores and the broker needs
one. Then it stops the broker, runs the client and codec comparisons on brokers of their own
(clients, compression) and the sections without Kafka (duckdb, inprocess, engines, identity, journeys),
prints a table and writes everything to var/bench/results-<timestamp>.json. A failing
section is recorded and the rest still run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from bench import (
    baseline_duckdb,
    baseline_faust,
    baseline_quix,
    client_compare,
    compression,
    e2e,
    engine_bench,
    identity_bench,
    journey_bench,
    profile_worker,
    restart,
    warmup,
)
from bench.common import (
    BASELINE_WEB_PORT,
    BENCH_DIR,
    BROKER_PORT,
    WORKER_WEB_PORT,
    bench_broker,
    code_info,
    machine_info,
    quiet_kafka_logs,
    run_id,
    say,
)
from bench.workload import WorkloadSpec, write_file


@dataclass(frozen=True)
class Sizes:
    profiles: int
    events: int
    latency_s: float
    baseline_cap_s: float
    history_profiles: int
    history_events: int
    history_multiplier: int
    profile_s: float
    inprocess_events: int
    throughput_timeout_s: float
    scale_profiles: int
    journeys: journey_bench.Sizes


QUICK = Sizes(
    profiles=5_000,
    events=30_000,
    latency_s=6,
    baseline_cap_s=10,
    history_profiles=2_000,
    history_events=10_000,
    history_multiplier=5,
    profile_s=8,
    inprocess_events=20_000,
    throughput_timeout_s=300,
    scale_profiles=50_000,
    journeys=journey_bench.QUICK,
)
FULL = Sizes(
    profiles=100_000,
    events=500_000,
    latency_s=20,
    baseline_cap_s=45,
    history_profiles=10_000,
    history_events=100_000,
    history_multiplier=10,
    profile_s=30,
    inprocess_events=100_000,
    throughput_timeout_s=900,
    scale_profiles=1_000_000,
    journeys=journey_bench.FULL,
)

BASELINE_LABELS = {
    "aiokafka": "plain aiokafka getmany + orjson decode",
    "aiokafka-rocksdict": "aiokafka + orjson + rocksdict update (no changelog)",
    "faust-trivial": "trivial Faust agent (decode + count)",
    "faust-table": "naive Faust agent, RocksDB table write per event",
}


def section(
    results: dict[str, Any], name: str, fn: Callable[[], Any], timings: dict[str, float]
) -> Any:
    """Run one section; on failure record the error and go on with the next."""
    t = time.monotonic()
    try:
        value = fn()
    except Exception as exc:  # a broken section must not cost the others
        traceback.print_exc()
        say(f"section {name} FAILED: {exc!r}")
        results[name] = {"error": repr(exc)[:2000]}
        value = None
    else:
        results[name] = value
    timings[name] = round(time.monotonic() - t, 1)
    return value


def run(
    quick: bool, skip: set[str], port: int = BROKER_PORT, web_port: int = WORKER_WEB_PORT
) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    tag = run_id()
    spec = WorkloadSpec(profiles=sizes.profiles, events=sizes.events)
    spec = replace(spec, end_ms=spec.resolved_end_ms())
    timings: dict[str, float] = {}
    results: dict[str, Any] = {
        "run": tag,
        "mode": "quick" if quick else "full",
        "command": "python -m bench.run_all"
        + (" --quick" if quick else "")
        + (f" --port {port}" if port != BROKER_PORT else ""),
        "machine": machine_info(),
        "code": code_info(),
        "sizes": asdict(sizes),
        "workload": asdict(spec),
        "section_seconds": timings,
    }
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with bench_broker(port) as cfg:
        if warmup.LAST:
            results["broker_warm_up"] = asdict(warmup.LAST[-1])
        settings = e2e.worker_settings(cfg.bootstrap, tag, web_port=web_port)
        baseline_port = BASELINE_WEB_PORT if web_port == WORKER_WEB_PORT else web_port + 1
        # The input topics hold exactly the workload while the baselines read them; the
        # worker's latency phase adds its paced events only afterwards.
        produced = section(results, "produce", lambda: e2e.prepare_inputs(settings, spec), timings)
        if produced is not None and "baselines" not in skip:
            results["baselines"] = {}
            for mode in baseline_faust.MODES:
                say(f"baseline {mode}: {BASELINE_LABELS[mode]}")
                r = section(
                    results["baselines"],
                    mode,
                    lambda mode=mode: asdict(
                        baseline_faust.run_baseline(
                            mode,
                            cfg.bootstrap,
                            settings.topics.inputs(),
                            settings.partitions,
                            spec.total_events,
                            sizes.baseline_cap_s,
                            BENCH_DIR / "baselines" / tag,
                            tag,
                            web_port=baseline_port,
                        )
                    ),
                    timings,
                )
                if r:
                    say(f"  {mode}: {r['events_per_s']:,.0f} events/s over {r['events']:,}")
            shutil.rmtree(BENCH_DIR / "baselines" / tag, ignore_errors=True)
        if produced is not None and "quix" not in skip:
            say(f"baseline quix: {baseline_quix.LABEL} (its own venv, bench/.venv-quix)")
            q = section(
                results,
                "quix",
                lambda: baseline_quix.run(
                    cfg.bootstrap,
                    settings.topics.inputs(),
                    settings.partitions,
                    spec.total_events,
                    sizes.baseline_cap_s,
                    tag,
                ),
                timings,
            )
            if q:
                say(f"  quix: {q['events_per_s']:,.0f} events/s over {q['events']:,}")
        if produced is not None:
            section(
                results,
                "worker",
                lambda: e2e.run_main(
                    cfg,
                    spec,
                    tag,
                    sizes.latency_s,
                    sizes.throughput_timeout_s,
                    produced=produced,
                    web_port=web_port,
                ),
                timings,
            )
        if produced is not None and "worker_python" not in skip:
            section(
                results,
                "worker_python",
                lambda: e2e.run_engine_baseline(
                    cfg, spec, tag, sizes.throughput_timeout_s, "python", web_port
                ),
                timings,
            )
        if produced is not None and "worker_pair" not in skip:
            section(
                results,
                "worker_pair",
                lambda: e2e.run_worker_pair(cfg, spec, tag, sizes.throughput_timeout_s, web_port),
                timings,
            )
        if produced is not None and "profile" not in skip:
            section(
                results,
                "profile",
                lambda: profile_worker.profile(settings, sizes.profile_s, tag),
                timings,
            )
        if "history" not in skip:
            section(
                results,
                "history",
                lambda: e2e.run_history(
                    cfg,
                    sizes.history_profiles,
                    sizes.history_events,
                    sizes.history_multiplier,
                    spec.seed,
                    tag,
                    sizes.throughput_timeout_s,
                    web_port,
                ),
                timings,
            )
        if "scale" not in skip:
            n = sizes.scale_profiles
            section(
                results,
                "scale",
                lambda: e2e.run_scale(
                    cfg,
                    n,
                    n + n // 5,
                    spec.seed,
                    tag,
                    max(sizes.throughput_timeout_s, n / 500),
                    web_port,
                ),
                timings,
            )
        if "journeys_e2e" not in skip:
            say("journeys end to end: the worker with and without the four example journeys")
            section(
                results,
                "journeys_e2e",
                lambda: journey_bench.run(
                    sizes.journeys, {"e2e"}, web_port=web_port, broker_cfg=cfg
                )["e2e"],
                timings,
            )
        if "restart" not in skip:
            say("restart and takeover times (SIGKILL / SIGTERM, two workers)")
            section(
                results,
                "restart",
                lambda: restart.run(rounds=2 if quick else 5, broker_cfg=cfg),
                timings,
            )
    if "clients" not in skip:
        say("data-path clients: aiokafka vs confluent-kafka (own broker)")
        section(
            results,
            "clients",
            lambda: client_compare.run(50_000 if quick else 300_000, 2 if quick else 3),
            timings,
        )
    if "compression" not in skip:
        say("compressed batches: none vs zstd vs lz4 (own broker)")
        section(
            results,
            "compression",
            lambda: compression.run_own_broker(10_000 if quick else 30_000, 3),
            timings,
        )
    if "duckdb" not in skip:
        section(results, "duckdb", lambda: _duckdb(spec, sizes, tag), timings)
    in_process = (  # (the engine alone and the stages, no Kafka; the same sizes)
        ("inprocess", "in-process stage costs (no Kafka)", engine_bench.run),
        ("engines", "the engine alone: native core and the Python reference", engine_bench.compare),
    )
    for name, what, measure in in_process:
        if name not in skip:
            say(what)
            section(
                results,
                name,
                lambda m=measure: m(sizes.inprocess_events, min(sizes.profiles, 20_000)),
                timings,
            )
    if "identity" not in skip:
        say("identity resolution: ingest routing + identity stage vs keyed by input_key")
        n = sizes.inprocess_events
        section(
            results,
            "identity",
            lambda: identity_bench.run(
                n, min(sizes.profiles, 20_000), replay_events=n // 5, repeat=1 if quick else 3
            ),
            timings,
        )
    if "journeys" not in skip:
        say("journeys in process: profiles stage with / without, timers with pending waits")
        section(
            results,
            "journeys",
            lambda: journey_bench.run(sizes.journeys, {"stage", "timers"}),
            timings,
        )
    results["comparisons"] = comparisons(results)
    results["total_seconds"] = round(time.monotonic() - started, 1)
    shutil.rmtree(BENCH_DIR / ("kafka" if port == BROKER_PORT else f"kafka-{port}"), True)
    return results


def _duckdb(spec: WorkloadSpec, sizes: Sizes, tag: str) -> dict[str, Any]:
    """Full recompute over the main workload, and over the 1× / k× history workloads."""
    out: dict[str, Any] = {}
    files = {"main": spec}
    for k in (1, sizes.history_multiplier):
        files[f"history_x{k}"] = replace(
            spec,
            profiles=sizes.history_profiles,
            events=sizes.history_events,
            history_multiplier=k,
        )
    for name, s in files.items():
        path = BENCH_DIR / f"events-{tag}-{name}.jsonl"
        say(f"duckdb: writing {s.total_events:,} events to {path}")
        write_file(s, path)
        try:
            say(f"duckdb: load + full recompute of the bench definition set ({name})")
            r = asdict(baseline_duckdb.run(path.resolve(), s.resolved_end_ms()))
        finally:
            path.unlink(missing_ok=True)
        if name != "main":
            r.pop("audience_members")
            r.pop("trait_profiles")
        out[name] = r
        say(f"  {name}: load {r['load_s']:.2f}s, recompute {r['recompute_s']:.3f}s")
    return out


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def comparisons(r: dict[str, Any]) -> dict[str, Any]:
    """The ratios the table prints, kept in the JSON too."""
    out: dict[str, Any] = {}
    ours = _get(r, "worker", "throughput", "events_per_s")
    if ours:
        for mode, b in (r.get("baselines") or {}).items():
            if isinstance(b, dict) and b.get("events_per_s"):
                out[f"worker_vs_{mode}"] = round(ours / b["events_per_s"], 2)
        quix = r.get("quix")
        if isinstance(quix, dict) and quix.get("events_per_s"):
            out["worker_vs_quix"] = round(ours / quix["events_per_s"], 2)
            out["worker_vs_quix_per_definition"] = baseline_quix.per_definition_ratio(ours, quix)
    py = _get(r, "worker_python", "throughput", "events_per_s")
    if ours and py:
        out["worker_native_vs_python_engine"] = round(ours / py, 2)
    pair = _get(r, "worker_pair", "throughput", "events_per_s")
    if ours and pair:
        out["two_workers_vs_one"] = round(pair / ours, 2)
    h1 = _get(r, "history", "x1", "events_per_s")
    k = _get(r, "sizes", "history_multiplier")
    hk = _get(r, "history", f"x{k}", "events_per_s")
    if h1 and hk:
        out["history_xk_vs_x1_throughput"] = round(hk / h1, 2)
    duck = _get(r, "duckdb", "main", "recompute_s")
    events = _get(r, "worker", "throughput", "events")
    if duck and ours and events:
        us = 1e6 / ours
        out["worker_us_per_event_wall"] = round(us, 1)
        out["incremental_total_s"] = round(events * us / 1e6, 1)
        out["duckdb_recompute_s"] = duck
        out["events_per_duckdb_recompute"] = round(duck * 1e6 / us)
        out["incremental_total_vs_recompute"] = round(events * us / 1e6 / duck, 1)
    return out


# -- printing -------------------------------------------------------------------------------


def _n(v: Any, fmt: str = ",.0f") -> str:
    return "—" if v is None else format(v, fmt)


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    w = r["workload"]
    L: list[str] = []
    L.append(
        f"engage-stream bench {r['run']} ({r['mode']}): {m['cpu']}, {m['cores']} cores, "
        f"{m['ram_gb']} GB RAM, Python {m['python']}, Apache Kafka {m['kafka']}; "
        f"load average at start {', '.join(f'{x:.1f}' for x in m['loadavg_at_start'])}"
    )
    L.append(
        f"workload: {w['events'] * w['history_multiplier']:,} Segment events, "
        f"{w['profiles']:,} profiles, event times over {w['days']:.0f} days, seed {w['seed']}"
    )
    code = r.get("code") or {}
    dirty = code.get("uncommitted") or []
    L.append(
        f"code: {code.get('commit', '?')}"
        + (f" + {len(dirty)} uncommitted files under engage_stream/" if dirty else "")
    )
    L.append(f"reproduce: {r['command']}")
    wu = r.get("broker_warm_up")
    if wu:
        L.append(
            f"broker warmed up first: {wu['records']:,} records in {wu['seconds']:.0f}s, its "
            f"CPU per {warmup.ROUND_S:.0f}s round (cores) {' → '.join(map(str, wu['cores']))}"
        )
    L.append("")
    tp = _get(r, "worker", "throughput")
    if isinstance(tp, dict):
        ours = tp["events_per_s"]
        L.append(
            f"{'Throughput: pre-produced backlog drained':58s} {'events/s':>9s} "
            f"{'CPU µs/ev':>10s} {'RSS MB':>7s} {'worker ÷ it':>11s}"
        )
        L.append(
            f"  {'engage-stream worker (ingest+profiles, RocksDB+changelog)':56s} "
            f"{_n(ours):>9s} {_n(tp['worker_cpu_us_per_event'], ',.1f'):>10s} "
            f"{_n(tp['rss_hwm_mb']):>7s} {'1.00×':>11s}"
        )
        for mode, b in (r.get("baselines") or {}).items():
            label = BASELINE_LABELS.get(mode, mode)
            if not isinstance(b, dict) or "error" in b:
                b = b if isinstance(b, dict) else {"error": str(b)}
                L.append(f"  {label:56s} failed: {b['error'][:60]}")
                continue
            ratio = ours / b["events_per_s"] if b["events_per_s"] else None
            part = "" if b["complete"] else f"  (first {b['events']:,} events, time cap)"
            L.append(
                f"  {label:56s} {_n(b['events_per_s']):>9s} "
                f"{_n(b['cpu_us_per_event'], ',.1f'):>10s} {_n(b['rss_hwm_mb']):>7s} "
                f"{_n(ratio, '.2f') + '×':>11s}{part}"
            )
        for section_name, label in (
            ("worker_python", "the same worker with the Python engine (ENGAGE_ENGINE=python)"),
            ("worker_pair", "two workers, one group, two partitions each (their sum)"),
        ):
            other = _get(r, section_name, "throughput")
            if isinstance(other, dict) and other.get("events_per_s"):
                L.append(
                    f"  {label:56s} {_n(other['events_per_s']):>9s} "
                    f"{_n(other['worker_cpu_us_per_event'], ',.1f'):>10s} "
                    f"{_n(other['rss_hwm_mb']):>7s} "
                    f"{_n(ours / other['events_per_s'], '.2f') + '×':>11s}"
                )
        if isinstance(r.get("quix"), dict):
            L.extend(baseline_quix.report_lines(ours, r["quix"]))
        L.append(
            f"  worker: {tp['applied']:,} events in {tp['seconds']}s, steady (10–90%) "
            f"{_n(tp['steady_events_per_s'])}/s, start-up {tp['startup_s']}s, broker CPU "
            f"{tp['broker_cpu_s']}s, state {tp['state_disk_mb']} MB on disk, "
            f"{_n(tp['changelog_records'])} changelog records"
        )
        if tp.get("identity_detour") is not None:
            L.append(
                f"  routed by ingest to the identity stage (ids not yet known): "
                f"{100 * tp['identity_detour']:.1f} % of events; seconds on batches by stage: "
                + e2e.stage_seconds_text(tp.get("stage_seconds", {}))
            )
        L.append("")
    elif _get(r, "worker", "error"):
        L.append(f"worker section failed: {r['worker']['error'][:300]}")
    for phase, what in (("latency", "half the sustained rate"), ("latency_fixed", "fixed rate")):
        lat = _get(r, "worker", phase)
        if isinstance(lat, dict):
            L.extend(_latency_lines(lat, what))
            L.append(f"  worker RSS peak incl. this phase: {_n(lat['rss_peak_mb'])} MB")
            L.append("")
    rec = _get(r, "worker", "recovery")
    if isinstance(rec, dict):
        L.append(
            f"Recovery (local state deleted, {rec['state_disk_mb_deleted']} MB): ready in "
            f"{rec['seconds_to_ready']}s (web up {rec['seconds_to_web']}s), "
            f"{rec['records_applied']:,} changelog records replayed "
            f"({rec['records_skipped']:,} skipped) in {rec['recovery_seconds_sum']}s of "
            f"partition recovery; probe profiles identical: {rec['probes_identical']}; "
            f"RSS peak {rec['rss_hwm_mb']} MB"
        )
        replayed = rec["records_applied"] + rec["records_skipped"]
        if rec["seconds_to_ready"]:
            L.append(
                f"  {replayed / rec['seconds_to_ready']:,.0f} changelog records/s from the "
                "restart until ready (process start included; partitions recover side by side)"
            )
        L.append("")
    hist = r.get("history")
    if isinstance(hist, dict) and "error" not in hist:
        k = r["sizes"]["history_multiplier"]
        x1, xk = hist.get("x1"), hist.get(f"x{k}")
        if x1 and xk:
            L.append(
                f"History: same {r['sizes']['history_profiles']:,} profiles, 1× vs {k}× the "
                "events each"
            )
            for name, t in (("1×", x1), (f"{k}×", xk)):
                L.append(
                    f"  {name:4s} {t['events']:>10,} events {_n(t['events_per_s']):>8s}/s  "
                    f"CPU {_n(t['worker_cpu_us_per_event'], ',.1f')} µs/ev  RSS "
                    f"{_n(t['rss_hwm_mb'])} MB  state {t['state_disk_mb']} MB"
                )
            L.append(f"  throughput {k}× ÷ 1×: {hk_ratio(x1, xk)}")
            L.append("")
    scale = r.get("scale")
    if isinstance(scale, dict) and "throughput" in scale:
        t = scale["throughput"]
        L.append(
            f"Scale: {scale['profiles']:,} profiles ({scale['profiles_stored']:,} stored), "
            f"{t['events']:,} events: {_n(t['events_per_s'])} events/s, worker RSS peak "
            f"{_n(t['rss_peak_mb'])} MB, state {t['state_disk_mb']} MB on disk"
        )
        L.append("")
    duck = r.get("duckdb")
    comp = r.get("comparisons", {})
    if isinstance(duck, dict) and "main" in duck:
        d = duck["main"]
        L.append(
            f"DuckDB full recompute of 50 audiences + 20 computed traits ({d['events']:,} "
            f"events, {d['profiles']:,} profiles): {d['recompute_s']:.3f}s on {d['threads']} "
            f"threads, {_n(d['recompute_1thread_s'], '.3f')}s on 1 (+ {d['load_s']:.2f}s to "
            "load the JSON)"
        )
        if "events_per_duckdb_recompute" in comp:
            L.append(
                f"  ours: {comp['worker_us_per_event_wall']} µs/event (wall, whole pipeline, "
                f"engine included) → {comp['incremental_total_s']}s for the same events, "
                f"{comp['incremental_total_vs_recompute']}× one recompute; one recompute costs "
                f"as much as {comp['events_per_duckdb_recompute']:,} events incrementally"
            )
        k = r["sizes"]["history_multiplier"]
        if "history_x1" in duck and f"history_x{k}" in duck:
            a, b = duck["history_x1"], duck[f"history_x{k}"]
            L.append(
                f"  recompute grows with history: {a['events']:,} events {a['recompute_s']:.3f}s"
                f" → {b['events']:,} events {b['recompute_s']:.3f}s"
            )
        L.append("")
    inproc = r.get("inprocess")
    if isinstance(inproc, dict) and "stages_us_per_event" in inproc:
        L.append(f"In-process stage cost, no Kafka ({inproc['events']:,} events):")
        for k2, v in inproc["stages_us_per_event"].items():
            L.append(f"  {k2:20s} {v:8.1f} µs/event  ({1e6 / v:,.0f}/s)")
        L.append(f"  engine: {inproc['engine']}")
        L.append("")
    engines = r.get("engines")
    if isinstance(engines, dict) and "bench set" in engines:
        L.append(engine_bench.format_compare(engines))
        L.append("")
    ident = r.get("identity")
    if isinstance(ident, dict) and "workloads" in ident:
        L.append(identity_bench.report(ident))
        L.append("")
    journeys = {**(r.get("journeys") or {}), "e2e": r.get("journeys_e2e")}
    text = journey_bench.report(journeys)
    if text:
        L.append(text)
        L.append("")
    cc = r.get("clients")
    if isinstance(cc, dict) and "results" in cc:
        L.append(client_compare.report(cc))
        L.append("")
    codecs = r.get("compression")
    if isinstance(codecs, dict) and "rounds" in codecs:
        L.append(compression.report(codecs))
        L.append("")
    rs = r.get("restart")
    if isinstance(rs, dict) and "restart_after_crash" in rs:
        L.append(restart.report(rs))
        L.append("")
    prof = r.get("profile")
    if isinstance(prof, dict):
        L.append(profile_worker.format_profile(prof) if "error" not in prof else str(prof))
        L.append("")
    L.append(f"total {r.get('total_seconds')}s; sections: {r.get('section_seconds')}")
    return "\n".join(L)


def _latency_lines(lat: dict[str, Any], what: str) -> list[str]:
    out: list[str] = []
    a, s, h = lat["applied_ms"], lat["seen_ms"], lat["lag_histogram_s"]
    out.append(
        f"Latency at {lat['rate_per_s']:,} events/s ({what}) for "
        f"{lat['seconds']:.0f}s, {lat['applied']:,}/{lat['sent']:,} events"
    )
    out.append(f"  {'':56s} {'p50':>8s} {'p95':>8s} {'p99':>8s} {'max':>8s}")
    out.append(
        f"  {'produce → applied (changelog record timestamp), ms':56s} "
        + " ".join(f"{_n(a[k], ',.1f'):>8s}" for k in ("p50", "p95", "p99", "max"))
    )
    ack, from_ack = lat.get("acked_ms"), lat.get("acked_applied_ms")
    if ack and from_ack:
        out.append(
            f"  {'  of it: produce → acknowledged (the generator), ms':56s} "
            + " ".join(f"{_n(ack[k], ',.1f'):>8s}" for k in ("p50", "p95", "p99", "max"))
        )
        out.append(
            f"  {'  acknowledged → applied (the pipeline), ms':56s} "
            + " ".join(f"{_n(from_ack[k], ',.1f'):>8s}" for k in ("p50", "p95", "p99", "max"))
        )
    out.append(
        f"  {'produce → seen by a consumer of the changelog, ms':56s} "
        + " ".join(f"{_n(s[k], ',.1f'):>8s}" for k in ("p50", "p95", "p99", "max"))
    )
    out.append(
        f"  {'engage_processing_lag_seconds histogram (bucket bound), ms':56s} "
        + " ".join(
            f"{_n(h[k] * 1000 if h[k] is not None else None, ',.0f'):>8s}"
            for k in ("p50", "p95", "p99")
        )
    )
    if lat["changes_records"]:
        c = lat["changes_ms"]
        out.append(
            f"  {'produce → engage.changes record, ms':56s} "
            + " ".join(f"{_n(c[k], ',.1f'):>8s}" for k in ("p50", "p95", "p99", "max"))
        )
    else:
        out.append("  produce → engage.changes: no change records (engine not available yet)")
    stages = lat.get("stages") or {}
    if stages:
        each = ", ".join(
            f"{name} {int(st['batches']):,} batches of {st['mean_ms']:.1f} ms"
            for name, st in sorted(stages.items())
        )
        cp = lat.get("checkpoint_mean_ms")
        share = ", ".join(
            f"{name} {v:.2f}" for name, v in (lat.get("cpu_share") or {}).items() if v is not None
        )
        out.append(f"  stages: {each}; checkpoint mean {_n(cp, '.1f')} ms; CPU (cores): {share}")
    return out


def hk_ratio(x1: dict[str, Any], xk: dict[str, Any]) -> str:
    if not x1.get("events_per_s") or not xk.get("events_per_s"):
        return "—"
    return f"{xk['events_per_s'] / x1['events_per_s']:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (~5 minutes)")
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated sections to skip: "
        "baselines,quix,worker_python,worker_pair,profile,history,scale,journeys_e2e,restart,"
        "clients,compression,duckdb,inprocess,engines,identity,journeys",
    )
    p.add_argument("--port", type=int, default=BROKER_PORT, help="the bench broker's port")
    p.add_argument("--web-port", type=int, default=WORKER_WEB_PORT, help="the workers' web port")
    p.add_argument("--from-json", type=Path, help="only print the table of a results file")
    args = p.parse_args(argv)
    quiet_kafka_logs()
    if args.from_json:
        print(report(orjson.loads(args.from_json.read_bytes())))
        return 0
    results = run(args.quick, {s for s in args.skip.split(",") if s}, args.port, args.web_port)
    out = BENCH_DIR / f"results-{results['run']}.json"
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print()
    print(report(results))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
