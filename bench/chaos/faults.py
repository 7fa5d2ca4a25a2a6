"""The fault schedule: which faults, in which order, after which pauses — a pure function
of the seed, so a failing run can be run again with the same faults at the same steps.

Where exactly a SIGKILL lands (which batch, before or after which commit) still depends
on the machine's speed; the seed fixes the kinds, their order and the pauses between them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class Fault(StrEnum):
    CRASH = "crash"  # SIGKILL while processing, restarted with its state
    CRASH_WIPE = "crash_wipe"  # SIGKILL, local state deleted, restarted: recovery
    CRASH_IN_STARTUP = "crash_in_startup"  # SIGKILL, restarted, SIGKILLed again while starting
    CRASH_IN_RECOVERY = "crash_in_recovery"  # SIGKILL, state deleted, SIGKILL while recovering
    # SIGKILL, restarted to kill itself right after a step of its n-th checkpoint
    # (stream.fault_injection): the windows a kill from outside almost never hits
    CRASH_IN_CHECKPOINT = "crash_in_checkpoint"
    JOIN = "join"  # a second worker joins the groups
    LEAVE = "leave"  # the second worker stops (SIGTERM) and its partitions move back
    CRASH_SECOND = "crash_second"  # the second worker is SIGKILLed and does not come back
    BROKER_BOUNCE = "broker_bounce"  # the broker stops for a few seconds and starts again


# SIGKILLs each fault sends
KILLS = {
    Fault.CRASH: 1,
    Fault.CRASH_WIPE: 1,
    Fault.CRASH_IN_STARTUP: 2,
    Fault.CRASH_IN_RECOVERY: 2,
    Fault.CRASH_IN_CHECKPOINT: 2,
    Fault.CRASH_SECOND: 1,
}
_PRIMARY_CRASHES = (
    (Fault.CRASH, 0.3),
    (Fault.CRASH_WIPE, 0.2),
    (Fault.CRASH_IN_STARTUP, 0.15),
    (Fault.CRASH_IN_RECOVERY, 0.15),
    (Fault.CRASH_IN_CHECKPOINT, 0.2),
)
CHECKPOINT_STEPS = ("prepared", "produced", "stored", "committable")


@dataclass(frozen=True)
class Step:
    fault: Fault
    pause_s: float  # before the fault, while the workers run
    within_s: float = 0.0  # startup/recovery crashes: how far into the restart; bounce: outage
    at: str = ""  # checkpoint crashes: `<step>:<n>` (ENGAGE_FAULT_KILL_AT)


def kills_of(steps: list[Step]) -> int:
    return sum(KILLS.get(s.fault, 0) for s in steps)


def schedule(
    seed: int,
    kills: int,
    pause_s: tuple[float, float] = (2.0, 10.0),
    second_worker: float = 0.25,
    broker_bounce: float = 0.0,
) -> list[Step]:
    """At least `kills` SIGKILLs of the primary worker (and of a second one), with a second
    worker joining before a crash with chance `second_worker` (then leaving or being
    killed), and the broker bounced between crashes with chance `broker_bounce`. The second
    worker never outlives the schedule: the run ends with the primary alone."""
    rng = random.Random(f"chaos-{seed}")
    faults, weights = zip(*_PRIMARY_CRASHES, strict=True)
    steps: list[Step] = []

    def add(fault: Fault, within_s: float = 0.0, at: str = "") -> None:
        steps.append(Step(fault, round(rng.uniform(*pause_s), 2), round(within_s, 2), at))

    while kills_of(steps) < kills:
        joined = rng.random() < second_worker
        if joined:
            add(Fault.JOIN)
        fault = rng.choices(faults, weights)[0]
        within = rng.uniform(0.3, 4.0) if fault is Fault.CRASH_IN_STARTUP else 0.0
        if fault is Fault.CRASH_IN_RECOVERY:
            within = rng.uniform(0.0, 1.5)  # after the worker reports a partition recovering
        at = ""
        if fault is Fault.CRASH_IN_CHECKPOINT:
            at = f"{rng.choice(CHECKPOINT_STEPS)}:{rng.randint(1, 20)}"
        add(fault, within, at)
        if joined:
            add(Fault.CRASH_SECOND if rng.random() < 0.3 else Fault.LEAVE)
        if rng.random() < broker_bounce:
            add(Fault.BROKER_BOUNCE, rng.uniform(2.0, 12.0))
    return steps
