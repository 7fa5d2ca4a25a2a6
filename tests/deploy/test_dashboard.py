"""deploy/grafana/engage-stream.json against the metrics the package registers, and its
shape as Grafana reads it."""

from __future__ import annotations

import copy
import re

import pytest

from tests.deploy.metric_names import (
    GRAFANA_VARIABLES,
    dashboard,
    dashboard_exprs,
    exported_names,
    panels,
    problems,
    referenced_metrics,
)


@pytest.fixture(scope="module")
def names() -> set[str]:
    return exported_names()


def test_every_metric_a_panel_reads_is_one_the_worker_exports(names: set[str]) -> None:
    exprs = dashboard_exprs(dashboard())
    assert len(exprs) > 40
    assert problems(exprs, names) == []


def test_a_panel_naming_a_missing_metric_or_rating_a_gauge_is_caught(names: set[str]) -> None:
    dash = copy.deepcopy(dashboard())
    panel = next(p for p in panels(dash) if p["type"] == "timeseries")
    panel["targets"] += [
        {"refId": "Y", "expr": 'sum(rate(engage_events_procesed_total{job=~"$job"}[5m]))'},
        {"refId": "Z", "expr": "sum by (partition) (rate(engage_state_profiles[5m]))"},
    ]
    found = problems(dashboard_exprs(dash), names)
    assert found == [
        f"{panel['title']} / Y: engage_events_procesed_total is not a metric engage-stream exports",
        f"{panel['title']} / Z: rate/increase of engage_state_profiles, which is no counter",
    ]


@pytest.mark.parametrize(
    ("expr", "metrics"),
    [
        (
            'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{le!="x", b=~"$job"}'
            "[$__rate_interval])))",
            {"a_bucket"},
        ),
        ("sum(x_total) / on(instance) group_left(job) y offset 5m > 1e3", {"x_total", "y"}),
        (
            "(sum(increase(c_total[15m])) or vector(0)) + absent(up) unless d == bool 1",
            {"c_total", "up", "d"},
        ),
        ('label_replace(g, "dst", "$1", "src", "(.*)")', {"g"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, metrics: set[str]) -> None:
    assert referenced_metrics(expr) == metrics


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    """Throughput, lag, dead letters by reason, checkpoint latency, recovery, audience
    sizes and journey steps: each a panel reading the metric that measures it."""
    exprs = list(dashboard_exprs(dashboard()).values())

    def shown(metric: str, by: str = "") -> bool:
        grouped = re.compile(rf"by \({re.escape(by)}\)") if by else None
        return any(
            metric in referenced_metrics(e) and (grouped is None or grouped.search(e))
            for e in exprs
        )

    wanted = {
        "throughput consumed": shown("engage_events_consumed_total", "type"),
        "throughput processed": shown("engage_events_processed_total"),
        "outputs": shown("engage_output_records_total", "topic"),
        "lag": shown("engage_processing_lag_seconds_bucket"),
        "dead letters by reason": shown("engage_events_dead_lettered_total", "reason"),
        "checkpoint latency": shown("engage_checkpoint_seconds_bucket"),
        "recovering": shown("engage_partitions_recovering"),
        "recovery replay": shown("engage_recovery_records_total", "outcome"),
        "audience sizes": shown("engage_audience_members", "audience"),
        "journey steps": shown("engage_journey_in_step", "journey, step"),
        "journey step entries": shown("engage_journey_steps_total", "journey, step"),
    }
    assert [what for what, ok in wanted.items() if not ok] == []


def test_the_dashboard_is_well_formed_for_grafana() -> None:
    dash = dashboard()
    everything = panels(dash)
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    assert next(v for v in dash["templating"]["list"] if v["name"] == "datasource")["query"] == (
        "prometheus"
    )
    taken: set[tuple[int, int]] = set()
    for p in everything:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and p.get("description"), p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            used = set(re.findall(r"\$\w+", t["expr"]))
            known = {f"${v}" for v in variables} | set(GRAFANA_VARIABLES)
            assert used <= known, f"{p['title']}: {used - known} is not a dashboard variable"
