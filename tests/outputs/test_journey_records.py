"""The journey log's bytes: `journey_records` serialises the output dataclasses directly."""

from __future__ import annotations

import orjson

from engage_stream.config import Settings
from engage_stream.journeys.machine import JourneyOutput
from engage_stream.outputs.journey_records import journey_records
from tests.journeys.helpers import DAY, T0, Driver, event, joined, journey, profile, v2

EMAIL = {"email:a@x.io": {"status": "subscribed", "groups": {}}}


def outputs_of_every_type() -> list[JourneyOutput]:
    steps = [
        {
            "type": "send_to_destination",
            "key": "ad",
            "destinations": ["fb"],
            "traits": ["plan"],
            "next": "mail",
        },
        {
            "type": "send_message",
            "key": "mail",
            "channel": "email",
            "template": "t1",
            "next": "sms",
        },
        {"type": "send_message", "key": "sms", "channel": "sms", "template": "t2", "next": "w"},
        {"type": "wait", "key": "w", "duration": "1 day"},
    ]
    d = Driver(
        journey(steps),
        profile(user_id="u1", traits={"plan": "pro", "email": "a@x.io"}, subscriptions=EMAIL),
    )
    d.change(joined())
    d.clock(T0 + 2 * DAY)
    d2 = Driver(v2(steps, exit={"events": [{"event": "Cancelled"}]}), d.profile)
    d2.event(event("Trial Started", T0 + 3 * DAY, trial_id="t1"))
    d2.event(event("Cancelled", T0 + 3 * DAY + 1))
    return d.outputs + d2.outputs


def test_journey_log_records_are_the_outputs_as_dicts() -> None:
    outs = outputs_of_every_type()
    types = {o.type for o in outs}
    assert {
        "instance_entered",
        "step_entered",
        "step_exited",
        "destination_send",
        "message_request",
        "message_skipped",
        "instance_completed",
        "instance_exited",
    } <= types, types
    settings = Settings()
    log = [r for r in journey_records(outs, settings) if r.topic == settings.topics.journeys]
    assert [r.value for r in log] == [orjson.dumps(o.to_dict()) for o in outs]
