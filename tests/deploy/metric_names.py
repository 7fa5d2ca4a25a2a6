"""What the deploy tests compare: the metric names the package exports, the names a PromQL
expression reads, and the expressions of the dashboard and the alert rules in `deploy/`."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import orjson
import yaml

import engage_stream

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "engage-stream.json"
ALERTS = DEPLOY / "alerts.yml"
ALERT_TESTS = DEPLOY / "alerts.test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus.yml"

# Series Prometheus writes itself for every target, next to what the target serves.
SYNTHETIC = frozenset({"up"})

# The sample names each metric type exposes in the text format (prometheus_client's
# family name has no `_total`; `_created` is served for counters and histograms too).
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}
# Sample names `rate()` / `increase()` make sense of: counters and histogram parts.
COUNTER_SAMPLES = ("_total", "_count", "_sum", "_bucket")


def exported_names() -> set[str]:
    """Every sample name the project's registry can serve, metrics defined in any module
    included: each module of the package is imported first (a labelled metric without
    children serves no sample yet, so names come from the registered families' types)."""
    for mod in pkgutil.walk_packages(engage_stream.__path__, "engage_stream."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    from engage_stream.metrics import REGISTRY

    return {
        family.name + suffix for family in REGISTRY.collect() for suffix in _SUFFIXES[family.type]
    }


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier that is not called (functions and aggregations are) and not part of a
# number, a duration or a Grafana variable.
_NAME = re.compile(r"(?<![\w:.$])[a-zA-Z_:][\w:]*+(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan", "atan2"}
)
_COUNTER_CALL = re.compile(r"\b(?:rate|irate|increase)\s*\(\s*([a-zA-Z_:][\w:]*)")


def _bare(expr: str) -> str:
    """The expression without strings, label matchers, ranges and grouping label lists:
    what remains names metrics, functions, operators and numbers only."""
    for pattern in (_STRING, _MATCHERS, _RANGE, _GROUPING):
        expr = pattern.sub(" ", expr)
    return expr


def referenced_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    return {n for n in _NAME.findall(_bare(expr)) if n.lower() not in _KEYWORDS}


def counter_calls(expr: str) -> set[str]:
    """The metric names an expression takes `rate`, `irate` or `increase` of."""
    return set(_COUNTER_CALL.findall(_STRING.sub(" ", expr)))


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return loaded


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    out: list[dict[str, Any]] = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_exprs(dash: dict[str, Any]) -> dict[str, str]:
    """`<panel title> / <refId>` → PromQL, for every query of every panel."""
    return {
        f"{p['title']} / {t['refId']}": t["expr"]
        for p in panels(dash)
        for t in p.get("targets", [])
    }


def alert_rules() -> dict[str, dict[str, Any]]:
    """Alert name → its rule, across the groups of deploy/alerts.yml."""
    loaded = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule for group in loaded["groups"] for rule in group["rules"]}


# What Grafana puts in place of its variables before the query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$instance": ".*",
    "$job": "engage-stream",
}


def as_sent_by_grafana(expr: str, **values: str) -> str:
    """The expression with the dashboard's variables replaced (longest names first)."""
    subst = {**GRAFANA_VARIABLES, **{f"${k}": v for k, v in values.items()}}
    for name in sorted(subst, key=len, reverse=True):
        expr = expr.replace(name, subst[name])
    return expr


def problems(exprs: dict[str, str], names: set[str]) -> list[str]:
    """What is wrong with these expressions against the exported `names`: a metric no
    module registers (a typo, a renamed or removed metric), or a rate taken of a gauge."""
    out: list[str] = []
    for where, expr in exprs.items():
        for name in sorted(referenced_metrics(expr) - names - SYNTHETIC):
            out.append(f"{where}: {name} is not a metric engage-stream exports")
        for name in sorted(counter_calls(expr)):
            if not name.endswith(COUNTER_SAMPLES):
                out.append(f"{where}: rate/increase of {name}, which is no counter")
    return out
