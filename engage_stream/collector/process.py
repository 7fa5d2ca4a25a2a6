"""Running the collector as a child process (demo, tests, bench), like `WorkerProcess`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from engage_stream.collector.settings import CollectorSettings
from engage_stream.config import Settings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class CollectorProcess:
    def __init__(self, settings: Settings, config: CollectorSettings, log_path: Path) -> None:
        if config.port == 0:
            config = config.model_copy(update={"port": free_port(config.host)})
        self.settings = settings
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start(self, timeout: float = 30.0, ready: bool = True) -> None:
        """Start it; with `ready`, wait until it reaches Kafka (else only until it listens)."""
        env = {**os.environ, **self.settings.env(), **self.config.env(), "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engage_stream", "collector", "--loglevel", "info"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_health(timeout, ready)

    def wait_health(self, timeout: float, ready: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"collector exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            status, body = self.health()
            if status == 200 or (status == 503 and not ready):
                return body
            time.sleep(0.1)
        raise TimeoutError(
            f"collector not {'ready' if ready else 'up'} after {timeout}s:\n{self.log_tail()}"
        )

    def health(self) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, orjson.loads(err.read() or b"null")
        except (OSError, ValueError):
            return 0, None

    def metric(self, name: str, label: str = "") -> float:
        """Sum of a metric's samples across labels (those containing `label`)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {" and label in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (graceful: accepted events are produced first); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode
