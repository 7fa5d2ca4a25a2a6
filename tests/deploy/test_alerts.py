"""deploy/alerts.yml: the metrics its rules read exist, promtool accepts the rules and the
Prometheus config, and the rules' unit tests (deploy/alerts.test.yml) pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.metric_names import (
    ALERT_TESTS,
    ALERTS,
    PROMETHEUS_CONFIG,
    alert_rules,
    exported_names,
    problems,
)


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool not installed: `make prometheus` installs Debian's prometheus (root)")
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_every_metric_an_alert_reads_is_one_the_worker_exports() -> None:
    rules = alert_rules()
    assert len(rules) >= 4
    assert problems({name: r["expr"] for name, r in rules.items()}, exported_names()) == []


def test_the_alerts_the_issue_asks_for_exist() -> None:
    rules = alert_rules()
    for name in ("EngageWorkerDown", "EngageConsumerLagHigh", "EngageDeadLetterRateHigh"):
        assert name in rules
    assert "engage_partitions_recovering" in rules["EngageRecoveryStuck"]["expr"]
    assert all(r["labels"]["severity"] in {"warning", "critical"} for r in rules.values())


def test_every_alert_has_a_unit_test_in_which_it_fires() -> None:
    cases = yaml.safe_load(ALERT_TESTS.read_text())
    firing = {
        case["alertname"]
        for test in cases["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(alert_rules()) - firing == set()


def test_prometheus_config_loads_the_alert_rules_for_the_job_they_watch() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert [PROMETHEUS_CONFIG.parent / f for f in config["rule_files"]] == [ALERTS]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["engage-stream"]
    assert 'job="engage-stream"' in alert_rules()["EngageWorkerDown"]["expr"]


def test_promtool_accepts_the_rules_and_the_config() -> None:
    rules = promtool("check", "rules", ALERTS)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout
    config = promtool("check", "config", PROMETHEUS_CONFIG)
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_rules_fire_when_and_only_when_their_unit_tests_say() -> None:
    result = promtool("test", "rules", ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
