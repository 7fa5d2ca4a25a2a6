"""The fault schedule is a pure function of its seed, sends at least the SIGKILLs asked
for, and never leaves a second worker running after it."""

from __future__ import annotations

from bench.chaos.faults import Fault, kills_of, schedule


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert schedule(7, 20) == schedule(7, 20)
    assert schedule(7, 20) != schedule(8, 20)


def test_at_least_the_kills_asked_for() -> None:
    for seed in range(20):
        steps = schedule(seed, 5, second_worker=0.5, broker_bounce=0.5)
        assert 5 <= kills_of(steps) <= 6  # the last crash may be a double one


def test_every_join_is_followed_by_a_leave_or_a_kill_of_the_second_worker() -> None:
    for seed in range(20):
        joined = False
        for step in schedule(seed, 6, second_worker=0.6):
            if step.fault is Fault.JOIN:
                assert not joined
                joined = True
            elif step.fault in (Fault.LEAVE, Fault.CRASH_SECOND):
                assert joined
                joined = False
        assert not joined


def test_broker_bounces_only_when_asked_for() -> None:
    assert all(s.fault is not Fault.BROKER_BOUNCE for s in schedule(1, 30))
    assert any(s.fault is Fault.BROKER_BOUNCE for s in schedule(1, 30, broker_bounce=0.5))


def test_a_long_schedule_has_every_kind_of_crash() -> None:
    kinds = {s.fault for s in schedule(3, 20, second_worker=0.3, broker_bounce=0.2)}
    assert {
        Fault.CRASH,
        Fault.CRASH_WIPE,
        Fault.CRASH_IN_STARTUP,
        Fault.CRASH_IN_RECOVERY,
        Fault.CRASH_IN_CHECKPOINT,
        Fault.JOIN,
    } <= kinds


def test_a_checkpoint_crash_names_a_step_and_a_checkpoint_the_worker_accepts() -> None:
    from engage_stream.stream.fault_injection import kill_at

    ats = [s.at for s in schedule(3, 40) if s.fault is Fault.CRASH_IN_CHECKPOINT]
    assert ats
    for at in ats:
        kill_at(at)  # raises on anything the worker would refuse
