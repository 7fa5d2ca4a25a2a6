"""One chaos run: the same workload into two isolated sets of topics; an uninterrupted
worker over one, the fault schedule against workers over the other; then both runs' change
records and a replay of the chaos run's input, compared (`compare`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.chaos.cluster import Cluster, FaultCounts
from bench.chaos.compare import Comparison, Outputs, compare
from bench.chaos.faults import Step, schedule
from bench.chaos.outputs import received_events, replayed_outputs, run_outputs
from bench.chaos.progress import Progress
from bench.chaos.workload import ChaosWorkload, quiet_end_ms
from bench.e2e import BENCH_DEFINITIONS
from engage_stream.commands import apply_definitions
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.loader import load_definitions
from engage_stream.kafka_local.broker import BrokerConfig
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess


@dataclass(frozen=True)
class ChaosConfig:
    events: int = 20_000
    profiles: int = 2_000
    seed: int = 1
    kills: int = 4
    pause_s: tuple[float, float] = (2.0, 10.0)
    second_worker: float = 0.25  # chance of a join/leave around each crash
    broker_bounce: float = 0.0  # chance of a broker stop/start after each crash
    steps: tuple[Step, ...] | None = None  # an explicit schedule instead of the seeded one
    # a second uninterrupted run, compared with the first: what differs between two runs
    # without any fault is the pipeline's own nondeterminism, not the faults' doing
    control: bool = False

    def schedule(self) -> list[Step]:
        if self.steps is not None:
            return list(self.steps)
        return schedule(self.seed, self.kills, self.pause_s, self.second_worker, self.broker_bounce)


@dataclass
class ChaosResult:
    config: ChaosConfig
    events: int
    steps: list[Step]
    counts: FaultCounts
    vs_reference: Comparison
    vs_replay: Comparison
    control: Comparison | None
    reference_changes: int
    chaos_changes: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.vs_reference.ok and self.vs_replay.exact


def _say(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def derive(base: Settings, name: str, web_port: int, work_dir: Path) -> Settings:
    """A run's own app id (consumer groups, changelogs), topics, state and web port."""
    return base.model_copy(
        update={
            "app_id": f"{base.app_id}-{name}",
            "topics": base.topics.with_suffix(f"-{name}"),
            "data_dir": work_dir / name,
            "web_port": web_port,
            "internal_secret": base.internal_secret or "chaos-cluster-secret",
        }
    )


def _wait_timeout(events: int) -> float:
    return 180.0 + events / 200


def run(
    base: Settings,
    cfg: ChaosConfig,
    work_dir: Path,
    broker_cfg: BrokerConfig | None = None,
) -> ChaosResult:
    """`base`: the broker and the naming to derive both runs' settings from; `broker_cfg`:
    the run's own broker, which broker bounces need."""
    steps = cfg.schedule()
    workload = ChaosWorkload(cfg.events, cfg.profiles, cfg.seed, quiet_end_ms())
    definitions = load_definitions(BENCH_DEFINITIONS)
    ref = derive(base, "reference", base.web_port, work_dir)
    chaos = derive(base, "chaos", base.web_port + 1, work_dir)  # and + 2: the second worker
    seconds: dict[str, float] = {}
    control = derive(base, "control", base.web_port, work_dir) if cfg.control else None
    uninterrupted = [ref] if control is None else [ref, control]
    for s in (*uninterrupted, chaos):
        ensure_topics(s)
        apply_definitions(s, definitions)
    timeout = _wait_timeout(cfg.events)
    for s in uninterrupted:
        t0 = time.monotonic()
        sent = workload.produce(s)
        _say(f"produced {sent:,} events to {s.topics.mixed}")
        worker = WorkerProcess(s, work_dir / "logs" / f"{s.app_id}.log")
        worker.start(timeout=180)
        progress = Progress(s)
        try:
            progress.wait_applied(timeout)
        finally:
            progress.close()
            worker.stop()
        seconds[s.app_id.rsplit("-", 1)[1]] = time.monotonic() - t0
        _say(f"uninterrupted run {s.app_id} applied everything in {time.monotonic() - t0:.0f}s")

    t0 = time.monotonic()
    cluster = Cluster(chaos, work_dir / "logs", broker_cfg)
    progress = Progress(chaos)
    feeder = workload.feeder(chaos, len(steps))
    try:
        cluster.start()
        for n, step in enumerate(steps, 1):
            feeder.next()
            time.sleep(step.pause_s)
            if not cluster.alive():
                raise RuntimeError(f"the worker died on its own:\n{cluster.primary.log_tail()}")
            cluster.apply(step)
            done = progress.applied_fraction(cfg.events)
            ingested = "unknown (broker unreachable)" if math.isnan(done) else f"{done:.0%}"
            _say(f"step {n}/{len(steps)} {step.fault} done, ingested {ingested}")
        while feeder.next():  # the rest, if the schedule had fewer steps than slices
            pass
        progress.wait_applied(timeout)
    finally:
        progress.close()
        cluster.stop()
    seconds["chaos"] = time.monotonic() - t0
    _say(f"chaos run applied everything in {seconds['chaos']:.0f}s")

    t0 = time.monotonic()
    expected = {orjson.loads(line)["messageId"] for line in workload.lines()}
    missing = len(expected - received_events(chaos))
    ref_out, chaos_out = run_outputs(ref), run_outputs(chaos)
    replay_out: Outputs = replayed_outputs(chaos, Catalog.from_definitions(definitions))
    seconds["compare"] = time.monotonic() - t0
    return ChaosResult(
        config=cfg,
        events=len(expected),
        steps=steps,
        counts=cluster.counts,
        vs_reference=compare(chaos_out, ref_out, missing),
        vs_replay=compare(chaos_out, replay_out, missing),
        control=None if control is None else compare(run_outputs(control), ref_out),
        reference_changes=ref_out.records,
        chaos_changes=chaos_out.records,
        seconds=seconds,
    )
