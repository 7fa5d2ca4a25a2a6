"""The processes the faults act on: the primary worker, a second one that joins and
leaves, and (when the run owns it) the broker. Every fault is done here and counted."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.chaos.faults import Fault, Step
from engage_stream.config import Settings
from engage_stream.kafka_local import broker
from engage_stream.stream import fault_injection
from engage_stream.worker_process import WorkerProcess

START_TIMEOUT_S = 180.0


@dataclass
class FaultCounts:
    kills: int = 0
    wipes: int = 0
    recoveries: int = 0  # restarts after a crash that became ready again
    startup_kills: int = 0
    recovery_kills: int = 0
    recovering_seen: int = 0  # recovery kills that hit a partition reported "recovering"
    checkpoint_kills: int = 0  # workers that killed themselves inside a checkpoint
    joins: int = 0
    leaves: int = 0
    broker_bounces: int = 0
    log: list[str] = field(default_factory=list)


def spawn(w: WorkerProcess) -> None:
    """Start the process without waiting for it to become healthy."""
    with contextlib.suppress(TimeoutError):
        w.start(timeout=0)


def _recovering(w: WorkerProcess) -> bool:
    try:
        status = w.get_json("/health").get("partition_status", {})
    except (OSError, ValueError):
        return False
    return "recovering" in status.values()


def _ready(w: WorkerProcess) -> bool:
    try:
        return w.get_json("/health").get("status") == "ready"
    except (OSError, ValueError):
        return False


class Cluster:
    def __init__(
        self, settings: Settings, logs: Path, broker_cfg: broker.BrokerConfig | None = None
    ) -> None:
        self.settings = settings
        self.broker_cfg = broker_cfg
        self.primary = WorkerProcess(settings, logs / "primary.log")
        second = settings.model_copy(
            update={"web_port": settings.web_port + 1, "data_dir": settings.data_dir / "second"}
        )
        self.second = WorkerProcess(second, logs / "second.log")
        self.counts = FaultCounts()
        self._t0 = time.monotonic()

    def _note(self, what: str) -> None:
        self.counts.log.append(f"{time.monotonic() - self._t0:8.1f}s  {what}")

    def start(self) -> None:
        self.primary.start(timeout=START_TIMEOUT_S)

    def stop(self) -> None:
        self.second.stop()
        self.primary.stop()

    def alive(self) -> bool:
        return self.primary.proc is not None and self.primary.proc.poll() is None

    def _kill(self, w: WorkerProcess, why: str) -> None:
        w.kill()
        self.counts.kills += 1
        self._note(f"SIGKILL {why}")

    def _wipe(self, w: WorkerProcess) -> None:
        shutil.rmtree(w.settings.data_dir / w.settings.app_id, ignore_errors=True)
        self.counts.wipes += 1
        self._note("local state deleted")

    def _restart(self, w: WorkerProcess) -> None:
        w.start(timeout=START_TIMEOUT_S)
        self.counts.recoveries += 1
        self._note("restarted, healthy")

    def apply(self, step: Step) -> None:
        p, f = self.primary, step.fault
        if f is Fault.CRASH:
            self._kill(p, "while processing")
            self._restart(p)
        elif f is Fault.CRASH_WIPE:
            self._kill(p, "while processing")
            self._wipe(p)
            self._restart(p)
        elif f is Fault.CRASH_IN_STARTUP:
            self._kill(p, "while processing")
            spawn(p)
            time.sleep(step.within_s)
            self.counts.startup_kills += 1
            self._kill(p, f"{step.within_s:.2f}s into its startup")
            self._restart(p)
        elif f is Fault.CRASH_IN_RECOVERY:
            self._kill(p, "while processing")
            self._wipe(p)
            spawn(p)
            deadline = time.monotonic() + 60
            while not _recovering(p) and not _ready(p) and time.monotonic() < deadline:
                time.sleep(0.05)
            seen = _recovering(p)
            time.sleep(step.within_s)
            self.counts.recovery_kills += 1
            self.counts.recovering_seen += seen
            state = "recovering" if seen else "not seen recovering"
            self._kill(p, f"{step.within_s:.2f}s after startup ({state})")
            self._restart(p)
        elif f is Fault.CRASH_IN_CHECKPOINT:
            self._kill(p, "while processing")
            p.env = {**p.env, fault_injection.ENV: step.at}
            inside = True
            try:
                spawn(p)
                deadline = time.monotonic() + START_TIMEOUT_S
                while p.proc is not None and p.proc.poll() is None:
                    if time.monotonic() > deadline:  # too few checkpoints: kill it here
                        p.kill()
                        inside = False
                        break
                    time.sleep(0.05)
            finally:
                p.env = {k: v for k, v in p.env.items() if k != fault_injection.ENV}
            self.counts.kills += 1
            self.counts.checkpoint_kills += inside
            self._note(
                f"SIGKILL itself right after {step.at}"
                if inside
                else f"never reached {step.at}: SIGKILL from outside"
            )
            self._restart(p)
        elif f is Fault.JOIN:
            self.second.start(timeout=START_TIMEOUT_S)
            self.counts.joins += 1
            self._note("second worker joined")
        elif f is Fault.LEAVE:
            self.second.stop()
            self.counts.leaves += 1
            self._note("second worker left (SIGTERM)")
        elif f is Fault.CRASH_SECOND:
            self._kill(self.second, "the second worker (not restarted)")
            self.counts.leaves += 1
        elif f is Fault.BROKER_BOUNCE:
            if self.broker_cfg is None:
                raise ValueError("a broker bounce needs a broker of the run's own")
            broker.stop(self.broker_cfg)
            time.sleep(step.within_s)
            broker.start(self.broker_cfg, timeout=120)
            self.counts.broker_bounces += 1
            self._note(f"broker stopped for {step.within_s:.1f}s and started")
