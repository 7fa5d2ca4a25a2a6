"""Stopping the local broker: a graceful exit is seen as soon as it happens, whoever the
parent is (our own child is reaped, someone else's zombie counts as exited)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engage_stream.kafka_local import broker
from engage_stream.kafka_local.broker import BrokerConfig, Stopped
from tests.conftest import BROKER_PORT

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return None


def test_stop_returns_when_the_child_we_started_exits(tmp_path: Path) -> None:
    cfg = BrokerConfig(data_dir=tmp_path)
    proc = broker.launch(SLEEPER, tmp_path / "child.log")
    cfg.pid_file.write_text(str(proc.pid))
    assert broker.alive(proc.pid)
    # Before the fix the exited child stayed a zombie, looked alive, and got SIGKILLed.
    assert broker.stop(cfg, timeout=20) is Stopped.TERMINATED
    assert proc.returncode is not None, "reaped, not left a zombie"
    assert not cfg.pid_file.exists()
    assert not broker.alive(proc.pid)
    assert broker.stop(cfg) is Stopped.NOT_RUNNING and not broker.stop(cfg)


def test_a_child_started_elsewhere_in_this_process_is_reaped_with_waitpid() -> None:
    proc = subprocess.Popen(SLEEPER)
    assert broker.alive(proc.pid)
    assert broker.terminate(proc.pid, timeout=20) is Stopped.TERMINATED
    assert _state(proc.pid) is None, "no zombie left behind"
    proc.wait(timeout=1)


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert broker.terminate(proc.pid, timeout=0.3) is Stopped.KILLED
    assert not broker.alive(proc.pid)
    proc.wait(timeout=1)
    proc.stdout.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_zombie_of_another_parent_counts_as_exited() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'pass']); "
            "print(p.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while _state(pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(pid) == "Z"
        os.kill(pid, 0)  # still "there" for signals: the case the old check got wrong
        assert not broker.alive(pid)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_alive_never_waits_for_a_process_group() -> None:
    assert not broker.alive(0) and not broker.alive(-1)


@pytest.mark.broker
def test_real_broker_stops_gracefully(tmp_path: Path) -> None:
    """start → stop of a real broker: it exits on SIGTERM, no SIGKILL needed."""
    port = BROKER_PORT + 10
    cfg = BrokerConfig(port=port, controller_port=port + 1, data_dir=tmp_path, heap="256m")
    if broker.is_reachable(port=port):
        pytest.skip(f"port {port} is in use")
    broker.start(cfg)
    try:
        assert broker.status(cfg).startswith("running")
    finally:
        outcome = broker.stop(cfg)
    assert outcome is Stopped.TERMINATED
    assert broker.status(cfg) == "stopped"


def test_cluster_ids_never_look_like_an_option() -> None:
    """One random id in 64 started with `-` and the broker failed to format its storage."""
    import base64

    from engage_stream.kafka_local.broker import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
