"""Running a worker as a child process and talking to its HTTP endpoint (demo, tests, bench)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from engage_stream.config import Settings


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy (returned) or time out."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class WorkerProcess:
    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        loglevel: str = "warning",
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.loglevel = loglevel
        self.env = env or {}  # added to the worker's environment (e.g. ENGAGE_COLLECTOR_*)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def start(self, timeout: float = 60.0, extra_args: list[str] | None = None) -> None:
        env = {**os.environ, **self.settings.env(), **self.env, "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engage_stream",
                "worker",
                "--loglevel",
                self.loglevel,
                *(extra_args or []),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                health = self.get_json("/health")
                if health.get("partitions"):
                    return health
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"worker not healthy after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def request(self, path: str, token: str | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path)
        if token is not None:
            req.add_header(
                "Authorization", "Basic " + base64.b64encode(f"{token}:".encode()).decode()
            )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, orjson.loads(err.read() or b"null")

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return orjson.loads(resp.read())

    def profile(self, identifier: str, section: str, query: str = "") -> tuple[int, Any]:
        path = (
            f"/v1/spaces/{self.settings.space_id}/collections/users/profiles/"
            f"{identifier}/{section}{'?' + query if query else ''}"
        )
        return self.request(path, token=self.settings.api_token)

    def metric(self, name: str, label: str = "") -> float:
        """Sum of a metric's samples across labels (those containing `label`), from /metrics."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {" and label in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill(self) -> None:
        """Crash it: no shutdown hooks, no final commit."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
