"""The chaos suite's kill inside a checkpoint: parsed strictly, fired exactly once, where
asked; on the real broker, a worker killed there loses and doubles nothing."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import pytest

from engage_stream.config import Settings
from engage_stream.state.checkpoint import Step
from engage_stream.stream import fault_injection
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess
from tests.stream.helpers import identify, now_iso, processed, produce, track, wait_for


@pytest.mark.parametrize("spec", ["", "stored", "stored:", "stored:0", "flushed:1", "stored:x"])
def test_a_malformed_spec_is_refused_with_what_is_expected(spec: str) -> None:
    with pytest.raises(ValueError, match="ENGAGE_FAULT_KILL_AT"):
        fault_injection.kill_at(spec)


def test_the_kill_comes_after_the_nth_time_of_its_step_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kills: list[int] = []
    monkeypatch.setattr(fault_injection.os, "kill", lambda pid, sig: kills.append(sig))
    hook = fault_injection.kill_at("Stored:2")
    for _ in range(3):
        for step in Step:
            hook(step)
            if kills:
                assert step is Step.STORED
                break
        if kills:
            break
    assert kills == [signal.SIGKILL]
    hook(Step.STORED)  # the third time: once only
    assert kills == [signal.SIGKILL]


def test_unset_means_no_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fault_injection.ENV, raising=False)
    assert fault_injection.from_env() is None


@pytest.mark.broker
@pytest.mark.parametrize("step", ["produced", "stored"])
def test_a_worker_killed_inside_a_checkpoint_loses_and_doubles_nothing(
    worker_settings: Settings, tmp_path: Path, step: str
) -> None:
    s = worker_settings
    ensure_topics(s)
    users = [f"k{i}" for i in range(8)]
    events = [identify(u, now_iso(-50), f"{u}-id", plan="p") for u in users]
    events += [track(u, "Viewed", now_iso(-40 + k), f"{u}-t{k}") for u in users for k in range(3)]
    produce(s, events)  # before the start: the first checkpoint carries them
    w1 = WorkerProcess(s, tmp_path / "w1.log", env={fault_injection.ENV: f"{step}:1"})
    with contextlib.suppress(RuntimeError):  # it may die before it says it is healthy
        w1.start(timeout=90)
    assert w1.proc is not None
    wait_for(lambda: w1.proc.poll() is not None, what="the worker killed itself")
    assert w1.proc.returncode == -signal.SIGKILL
    assert f"after {step.upper()} of checkpoint 1" in w1.log_tail()

    w2 = WorkerProcess(s, tmp_path / "w2.log")
    w2.start(timeout=90)
    try:
        for u in users:
            wait_for(
                lambda u=u: (
                    w2.profile(f"user_id:{u}", "events", "limit=100")[0] == 200
                    and len(w2.profile(f"user_id:{u}", "events", "limit=100")[1]["data"]) == 4
                ),
                what=f"{u}'s four events",
            )
            _, body = w2.profile(f"user_id:{u}", "events", "limit=100")
            ids = [e["message_id"] for e in body["data"]]
            assert len(set(ids)) == 4, f"{u}: {ids}"
        assert processed(w2) <= len(events)
    finally:
        w2.stop()
