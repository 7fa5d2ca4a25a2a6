"""Subscription states from `context.messaging_subscriptions` (reference §5)."""

from __future__ import annotations

from typing import Any

from engage_stream.events import ProfileEvent
from engage_stream.journeys.subscriptions import (
    allowed,
    apply_subscriptions,
    parse_messaging_subscriptions,
    state_of,
)


def identify(subs: Any, type_: str = "identify") -> ProfileEvent:
    return ProfileEvent(
        message_id="m",
        type=type_,  # type: ignore[arg-type]
        timestamp=1,
        received_at=1,
        context={"messaging_subscriptions": subs},
    )


def test_parse_case_insensitive_and_bad_entries_skipped() -> None:
    ok, problems = parse_messaging_subscriptions(
        {
            "messaging_subscriptions": [
                {"key": "A@x.io", "type": "EMAIL", "status": "Subscribed"},
                {"key": "+1555", "type": "SMS", "status": "maybe"},
                {"key": "+1666", "type": "WhatsApp", "status": "DID_NOT_SUBSCRIBE"},
            ]
        }
    )
    assert [(s.type, s.status) for s in ok] == [
        ("email", "subscribed"),
        ("whatsapp", "did_not_subscribe"),
    ]
    assert len(problems) == 1 and problems[0].startswith("messaging_subscriptions[1].status")
    assert parse_messaging_subscriptions({}) == ([], [])


def test_apply_overwrites_status_and_merges_groups() -> None:
    s = apply_subscriptions(
        {},
        identify(
            [
                {
                    "key": "A@x.io",
                    "type": "EMAIL",
                    "status": "SUBSCRIBED",
                    "groups": [{"name": "news", "status": "SUBSCRIBED"}],
                }
            ]
        ),
    )
    s2 = apply_subscriptions(
        s,
        identify(
            [
                {
                    "key": "a@x.io",
                    "type": "EMAIL",
                    "status": "UNSUBSCRIBED",
                    "groups": [{"name": "promo", "status": "unsubscribed"}],
                }
            ]
        ),
    )
    assert s["email:a@x.io"]["groups"] == {"news": "subscribed"}  # input not modified
    assert s2 == {
        "email:a@x.io": {
            "status": "unsubscribed",
            "groups": {"news": "subscribed", "promo": "unsubscribed"},
        }
    }
    track = identify([{"key": "b@x.io", "type": "EMAIL", "status": "SUBSCRIBED"}], "track")
    assert apply_subscriptions(s2, track) == s2  # only identify sets states


def test_state_of_and_groups() -> None:
    subs = {"email:a@x.io": {"status": "unsubscribed", "groups": {"news": "subscribed"}}}
    assert state_of(subs, "email", "A@X.io") == "unsubscribed"
    assert state_of(subs, "email", "a@x.io", "news") == "subscribed"
    assert state_of(subs, "email", "a@x.io", "promo") == "unsubscribed"
    assert state_of(subs, "email", "b@x.io") == "none"
    assert state_of(subs, "sms", "+1") == "none"


def test_allowed_policy() -> None:
    for state in ("unsubscribed", "did_not_subscribe", "none"):
        assert not allowed(state, "email", "subscribed")  # type: ignore[arg-type]
        assert allowed(state, "email", "all")  # type: ignore[arg-type]
        assert not allowed(state, "sms", "all")  # type: ignore[arg-type]
    assert allowed("subscribed", "sms", "subscribed")
