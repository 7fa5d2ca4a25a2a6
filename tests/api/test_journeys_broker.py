"""The journeys API and metrics of a real worker on the real broker: the counts it reads from
the partitions it owns (`Worker.local_journey_counts`, through `WorkerSource`), the gauges
its clock ticks export, the counters of its durable batches, and a profile's journey state
on the Profile API."""

from __future__ import annotations

from typing import Any

import pytest

from engage_stream import commands
from engage_stream.config import Settings
from engage_stream.definitions.problems import Source
from engage_stream.journeys.models import JourneyDefinition
from engage_stream.worker_process import WorkerProcess
from tests.stream.helpers import now_iso, produce, track, wait_for

pytestmark = pytest.mark.broker

TRIAL = JourneyDefinition.model_validate(
    {
        "key": "trial",
        "name": "Trial to paid",
        "entry": {"event": "Trial Started", "rule": "every_time", "unique_identifier": "trial_id"},
        "steps": [
            {
                "type": "hold_until",
                "key": "wait_for_upgrade",
                "max_hold": "1 day",
                "branches": [{"name": "upgraded", "event": "Plan Upgraded", "next": "thanks"}],
            },
            {"type": "send_message", "key": "thanks", "channel": "email", "template": "thanks"},
        ],
    }
)


def _apply(s: Settings) -> None:
    """Publish TRIAL as `engage-stream apply` does."""
    commands.apply_items(s, [], journeys=[(TRIAL, Source("<test>", "trial"))])


def _journey(w: WorkerProcess) -> dict[str, Any]:
    status, body = w.request("/v1/journeys/trial", token=w.settings.api_token)
    return body if status == 200 else {}


def test_a_worker_reports_its_journeys_in_the_api_and_metrics(
    worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = worker.settings
    _apply(s)
    wait_for(lambda: _journey(worker).get("version") == 1, 60, "the journey in force")
    email = "ada@x.io"
    identify = {
        "type": "identify",
        "userId": "ada",
        "traits": {"email": email},
        "context": {
            "messaging_subscriptions": [{"key": email, "type": "EMAIL", "status": "SUBSCRIBED"}]
        },
        "timestamp": now_iso(-5),
        "messageId": "ada-identify",
    }
    produce(
        s,
        [
            identify,
            track("ada", "Trial Started", now_iso(-4), "m1", trial_id="t1"),
            track("ada", "Plan Upgraded", now_iso(-3), "m2", trial_id="t1"),
            track("ada", "Trial Started", now_iso(-2), "m3", trial_id="t2"),
        ],
    )
    body = wait_for(
        lambda: (b := _journey(worker)).get("counts", {}).get("entered") == 2 and b,
        60,
        "both entries counted",
    )
    assert body["counts"] == {"entered": 2, "active": 1, "completed": 1, "exited": 0}
    assert [(x["key"], x["in_step"], x["reached"]) for x in body["steps"]] == [
        ("wait_for_upgrade", 1, 2),
        ("thanks", 0, 1),
    ]
    assert body["messages"] == {"requested": 1, "skipped": {}}
    status, listed = worker.request("/v1/journeys", token=s.api_token)
    assert status == 200 and [j["counts"] for j in listed["data"]] == [body["counts"]]

    status, mine = worker.profile("user_id:ada", "journeys")
    assert status == 200
    (state,) = mine["data"]
    assert (state["journey"], state["version"], state["entries"]) == ("trial", 1, 2)
    assert [i["unique_identifier"] for i in state["instances"]] == ["t2"]
    assert mine["subscriptions"] == [
        {"channel": "email", "address": email, "status": "subscribed", "groups": {}}
    ]

    assert worker.metric("engage_journey_entered_total", 'journey="trial"') == 2
    assert worker.metric("engage_journey_completed_total", 'journey="trial"') == 1
    assert worker.metric("engage_journey_messages_total", 'outcome="requested"') == 1
    assert worker.metric("engage_journey_steps_total", 'step="wait_for_upgrade"') == 2
    wait_for(
        lambda: (
            worker.metric("engage_journey_in_step", 'step="wait_for_upgrade"') == 1
            and worker.metric("engage_journey_active", 'journey="trial"') == 1
        ),
        30,
        "the gauges exported on a tick",
    )
    assert worker.metric("engage_journey_in_step", 'step="thanks"') == 0
