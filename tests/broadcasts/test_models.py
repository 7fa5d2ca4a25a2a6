"""Broadcast definitions: channels, the SMS opt-out line and segments, schedules in zones."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from engage_stream.broadcasts.models import BroadcastDefinition, Schedule, sms_segments


def broadcast(**kw: Any) -> BroadcastDefinition:
    body: dict[str, Any] = {
        "kind": "broadcast",
        "key": "spring",
        "channel": "email",
        "template": "spring_sale",
        "recipients": [{"audience": "buyers"}, {"audience": "churned", "member": False}],
    }
    body.update(kw)
    return BroadcastDefinition.model_validate(body)


def test_email_needs_a_template_sms_a_body_with_the_opt_out_line() -> None:
    assert broadcast().channel == "email"
    with pytest.raises(ValidationError, match="needs a template"):
        broadcast(template=None)
    with pytest.raises(ValidationError, match="Reply STOP to unsubscribe"):
        broadcast(channel="sms", template=None, body="Sale today!")
    sms = broadcast(channel="sms", template=None, body="Sale today! Reply  STOP to unsubscribe.")
    assert sms.body is not None
    with pytest.raises(ValidationError, match="only available for email"):
        broadcast(channel="sms", template=None, body=sms.body, subscription="all")
    with pytest.raises(ValidationError, match="subscription groups are for email"):
        broadcast(channel="sms", template=None, body=sms.body, group="news")


def test_sms_segments_gsm7_and_unicode() -> None:
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2  # 153 per part once split
    assert sms_segments("a" * 306) == 2 and sms_segments("a" * 307) == 3
    assert sms_segments("€" * 80) == 1 and sms_segments("€" * 81) == 2  # two septets each
    assert sms_segments("é" * 160) == 1  # in the GSM-7 set
    assert sms_segments("ł" * 70) == 1 and sms_segments("ł" * 71) == 2  # UCS-2: 70 / 67


def test_a_schedule_is_a_wall_clock_time_in_its_zone() -> None:
    paris_winter = Schedule(at="2027-01-15T09:00", time_zone="Europe/Paris")
    paris_summer = Schedule(at="2027-07-15T09:00", time_zone="Europe/Paris")
    from datetime import UTC, datetime

    assert datetime.fromtimestamp(paris_winter.at_ms / 1000, UTC).hour == 8  # UTC+1
    assert datetime.fromtimestamp(paris_summer.at_ms / 1000, UTC).hour == 7  # UTC+2
    ny = Schedule(at="2027-01-15T09:00", time_zone="America/New_York")
    assert ny.at_ms - paris_winter.at_ms == 6 * 3_600_000
    with pytest.raises(ValidationError, match="unknown time zone"):
        Schedule(at="2027-01-15T09:00", time_zone="Mars/Olympus")
    with pytest.raises(ValidationError, match="without an offset"):
        Schedule(at="2027-01-15T09:00+01:00", time_zone="Europe/Paris")
    b = broadcast(status="scheduled", schedule={"at": "2027-01-15T09:00", "time_zone": "UTC"})
    assert b.send_at(published_at=0) == b.schedule.at_ms  # type: ignore[union-attr]
    assert broadcast(status="scheduled").send_at(published_at=1234) == 1234  # send now
