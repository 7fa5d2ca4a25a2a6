"""A real Prometheus (Debian's `prometheus`) with deploy/prometheus.yml and its alert rules,
scraping a real worker on the real broker: the target is up, the worker's `engage_*` series
are stored, the rules load and evaluate, the dashboard's queries run, and the alerts match
the series as the worker labels them (dead letters, late events, a worker that stops); and
the config's commented `authorization` block scrapes a worker whose /metrics needs a token."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from engage_stream.config import Settings
from engage_stream.identity.stage import BLOCKED_IDENTIFIER
from engage_stream.ingest.segment import EVENT_TYPES
from engage_stream.ingest.validate import Reason
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess
from tests.deploy.metric_names import (
    ALERTS,
    PROMETHEUS_CONFIG,
    alert_rules,
    as_sent_by_grafana,
    dashboard,
    dashboard_exprs,
    referenced_metrics,
)
from tests.stream.helpers import identify, now_iso, processed, produce, track, wait_for

pytestmark = pytest.mark.broker

JOB = "engage-stream"


def free_port(start: int) -> int:
    """A free port from `start` on, below the ephemeral range (see tests/conftest.py)."""
    for port in range(start, start + 50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + 49}")


class Prometheus:
    """The `prometheus` binary as a child process with its own config, data and port."""

    def __init__(self, exe: str, config: Path, data: Path, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
            body = orjson.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def scrape_config(worker: WorkerProcess, text: str | None = None) -> dict[str, Any]:
    """deploy/prometheus.yml as shipped (or `text`), with the worker's address as its
    target, a 1 s scrape and evaluation interval and the rule file by absolute path."""
    config: dict[str, Any] = yaml.safe_load(text or PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / f) for f in config["rule_files"]]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker.settings.web_port}"]}]
    return config


@contextlib.contextmanager
def running_prometheus(
    exe: str, config: dict[str, Any], tmp_path: Path, port_from: int
) -> Iterator[Prometheus]:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    prom = Prometheus(exe, path, tmp_path / "tsdb", free_port(port_from), tmp_path / "prom.log")
    try:
        wait_for(prom.ready, timeout=30, what="prometheus ready")
        yield prom
    finally:
        prom.stop()


@pytest.fixture
def prometheus_exe() -> str:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus not installed: `make prometheus` installs Debian's package (root)")
    return exe


@pytest.fixture
def worker(
    prometheus_exe: str, worker_settings: Settings, tmp_path: Path
) -> Iterator[WorkerProcess]:
    ensure_topics(worker_settings)
    w = WorkerProcess(worker_settings, tmp_path / "worker.log")
    w.start(timeout=90)
    yield w
    w.stop()


@pytest.fixture
def prometheus(prometheus_exe: str, worker: WorkerProcess, tmp_path: Path) -> Iterator[Prometheus]:
    config = scrape_config(worker)
    with running_prometheus(prometheus_exe, config, tmp_path, worker.settings.web_port + 100) as p:
        yield p


def served_names(worker: WorkerProcess) -> set[str]:
    with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in text.splitlines()
        if line.startswith("engage_")
    }


def test_prometheus_scrapes_the_worker_and_loads_the_alert_rules(
    worker: WorkerProcess, prometheus: Prometheus
) -> None:
    s = worker.settings

    # the target: the worker, up, scraped at its /metrics
    def worker_target() -> dict[str, Any] | None:
        for t in prometheus.api("targets")["activeTargets"]:
            if t["labels"]["job"] == JOB and t["health"] == "up":
                return t
        return None

    target = wait_for(worker_target, timeout=30, what="the worker's target up")
    assert target["scrapeUrl"] == f"{worker.url}/metrics"
    assert target["labels"]["instance"] == f"127.0.0.1:{s.web_port}"
    assert prometheus.query(f'up{{job="{JOB}"}}')[0]["value"][1] == "1"

    # before any input, every dead-letter reason is stored at 0: the first dead letter of a
    # reason is an increase rate() sees, not a series born at its value
    reasons = [*Reason, BLOCKED_IDENTIFIER]
    rows = prometheus.query("engage_events_dead_lettered_total")
    assert {r["metric"]["reason"]: r["value"][1] for r in rows} == dict.fromkeys(reasons, "0")
    # and so is every counter an alert rates: retries per stage, evaluation failures,
    # events consumed per type
    for name, label, values in (
        ("engage_batch_retries_total", "stage", ["identity", "ingest", "profiles"]),
        ("engage_processing_errors_total", "stage", ["profiles"]),
        ("engage_events_consumed_total", "type", list(EVENT_TYPES)),
    ):
        rows = prometheus.query(name)
        assert {r["metric"][label]: r["value"][1] for r in rows} == dict.fromkeys(values, "0")

    produce(
        s,
        [
            identify("u1", now_iso(-4), "m1", email="u1@example.com", plan="pro"),
            track("u1", "Order Completed", now_iso(-3), "m2", revenue=42.5),
            identify("u2", now_iso(-2), "m3", plan="free"),
            track("u2", "Product Viewed", now_iso(-1), "m4"),
            b"[1, 2]",  # not_an_object: dead-lettered
        ],
    )
    wait_for(lambda: processed(worker) >= 4, what="4 events processed")
    wait_for(lambda: worker.metric("engage_events_dead_lettered_total") >= 1, what="1 dead letter")

    # every engage_* series the worker serves is stored, with the values it serves
    served = served_names(worker)
    assert {"engage_events_processed_total", "engage_partitions_recovering"} <= served

    def stored() -> set[str]:
        rows = prometheus.query('count by (__name__) ({__name__=~"engage_.+"})')
        return {r["metric"]["__name__"] for r in rows}

    wait_for(lambda: served <= stored(), timeout=30, what=f"{served - stored()} in Prometheus")

    def value(expr: str) -> float | None:
        rows = prometheus.query(expr)
        return float(rows[0]["value"][1]) if rows else None

    wait_for(
        lambda: value(f'sum(engage_events_processed_total{{job="{JOB}"}})') == 4,
        what="4 processed events in Prometheus",
    )
    wait_for(
        lambda: value('engage_events_dead_lettered_total{reason="not_an_object"}') == 1,
        what="the dead letter in Prometheus",
    )
    rows = prometheus.query("engage_events_dead_lettered_total > 0")
    assert [r["metric"]["reason"] for r in rows] == ["not_an_object"]
    rows = prometheus.query("engage_partitions_recovering")
    assert {r["metric"]["store"]: r["value"][1] for r in rows} == {"state": "0", "identity": "0"}

    # the rules: every alert of deploy/alerts.yml loaded and evaluated without an error
    expected = alert_rules()

    def evaluated() -> dict[str, dict[str, Any]]:
        rules = {
            r["name"]: r
            for g in prometheus.api("rules")["groups"]
            for r in g["rules"]
            if g["file"] == str(ALERTS)
        }
        if set(rules) == set(expected) and all(
            r["lastEvaluation"] > "2000" for r in rules.values()
        ):
            return rules
        return {}

    rules = wait_for(evaluated, timeout=30, what="the alert rules evaluated")
    assert {n: r["health"] for n, r in rules.items()} == dict.fromkeys(expected, "ok")
    assert {n: r["type"] for n, r in rules.items()} == dict.fromkeys(expected, "alerting")

    # a healthy worker raises no alert but the dead-letter rate's: 1 record in 5 went to the
    # DLQ (pending for its 10 minutes), which shows the rule reads the series as served
    def active() -> dict[str, str]:
        return {a["labels"]["alertname"]: a["state"] for a in prometheus.api("alerts")["alerts"]}

    wait_for(
        lambda: active() == {"EngageDeadLetterRateHigh": "pending"},
        timeout=30,
        what="only EngageDeadLetterRateHigh active",
    )
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    wait_for(
        lambda: all(g["lastEvaluation"] > since for g in prometheus.api("rules")["groups"]),
        what="every rule group evaluated again",
    )
    assert active() == {"EngageDeadLetterRateHigh": "pending"}

    # an event that happened ten minutes ago: the lag alert reads the worker's histogram
    produce(s, [track("u3", "Product Viewed", now_iso(-600), "m5")])
    wait_for(lambda: processed(worker) >= 5, what="the late event processed")
    wait_for(
        lambda: active().get("EngageConsumerLagHigh") == "pending",
        what="EngageConsumerLagHigh pending",
    )

    # every query of the dashboard runs as Grafana sends it; one whose metrics all have
    # series here returns some
    present = stored() | {"up"}
    exprs = dashboard_exprs(dashboard())

    def unanswered() -> list[str]:
        return [
            where
            for where, expr in exprs.items()
            if not prometheus.query(as_sent_by_grafana(expr))
            and referenced_metrics(expr) <= present
        ]

    wait_for(lambda: not unanswered(), timeout=20, what="every dashboard query answered")
    by_reason = next(e for e in exprs.values() if "by (reason) (rate(engage_events_dead" in e)
    rows = prometheus.query(as_sent_by_grafana(by_reason))
    assert {r["metric"]["reason"]: float(r["value"][1]) > 0 for r in rows} == {
        **dict.fromkeys(reasons, False),
        "not_an_object": True,
    }

    # the worker stops: its target goes down and EngageWorkerDown matches it
    worker.stop()
    down = wait_for(lambda: prometheus.alerts("EngageWorkerDown"), what="EngageWorkerDown")
    assert [(a["labels"]["instance"], a["state"]) for a in down] == [
        (f"127.0.0.1:{s.web_port}", "pending")
    ]


def with_authorization_enabled(text: str) -> str:
    """The config text with its commented `authorization:` block uncommented, as an
    operator who sets ENGAGE_METRICS_TOKEN does."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "# authorization:")
    indent = lines[at].index("#")
    end = at + 1
    while lines[end].startswith(" " * indent + "#   "):
        end += 1
    for i in range(at, end):
        lines[i] = lines[i][:indent] + lines[i][indent + 2 :]
    return "\n".join(lines) + "\n"


def test_the_commented_authorization_scrapes_a_worker_whose_metrics_need_a_token(
    prometheus_exe: str, worker_settings: Settings, tmp_path: Path
) -> None:
    settings = worker_settings.model_copy(update={"metrics_token": "metrics-secret-1"})
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start(timeout=90)
    try:
        config = scrape_config(worker, with_authorization_enabled(PROMETHEUS_CONFIG.read_text()))
        (job,) = config["scrape_configs"]
        assert job["authorization"]["type"] == "Bearer"
        token_file = tmp_path / "engage-metrics-token"
        token_file.write_text("metrics-secret-1\n")
        job["authorization"]["credentials_file"] = str(token_file)
        # the same worker scraped as shipped, without the token: refused
        config["scrape_configs"].append(
            {k: v for k, v in job.items() if k != "authorization"} | {"job_name": "no-token"}
        )
        with running_prometheus(prometheus_exe, config, tmp_path, settings.web_port + 100) as prom:

            def health() -> dict[str, tuple[str, str]]:
                targets = prom.api("targets")["activeTargets"]
                out = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets}
                return out if "unknown" not in {h for h, _ in out.values()} else {}

            seen = wait_for(health, timeout=30, what="both targets scraped")
            assert seen[JOB] == ("up", "")
            assert seen["no-token"][0] == "down" and "401" in seen["no-token"][1]
            wait_for(
                lambda: prom.query(f'engage_partitions_recovering{{job="{JOB}"}}'),
                what="the worker's series through the token",
            )
    finally:
        worker.stop()
