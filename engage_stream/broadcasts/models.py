"""Broadcast definitions (`kind: broadcast`): one-time email / SMS campaigns (reference §5).

A broadcast names who receives it (`recipients`: rows like an audience's — part of an
audience, "and not who" with `member: false`, trait conditions — joined AND / OR), what
(an email template and its variables, or an SMS body), and when (`status: scheduled` with
a `schedule` in a time zone, or without one: as soon as it is published). The recipient
set is computed once, when the send starts (`broadcasts.sending`), not continuously.

Lifecycle as published: draft → scheduled → (cancelled); the send's own progress —
sending, sent — is the workers' (`broadcasts.status`). A version is the evaluated body:
rescheduling or cancelling keeps it (and so the idempotency keys of what was sent).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from engage_stream.definitions.models import KEY_PATTERN, AudienceCondition, TraitCondition, _Strict
from engage_stream.journeys.models import field_tag

OPT_OUT = "reply stop to unsubscribe"  # reference §5: an SMS body must carry it
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # two septets each


RecipientRow = Annotated[
    Annotated[TraitCondition, Tag("trait")] | Annotated[AudienceCondition, Tag("audience")],
    Discriminator(
        field_tag("trait", "audience"),
        custom_error_type="condition_kind",
        custom_error_message="a recipient condition needs one of: trait, audience",
    ),
]


class Schedule(_Strict):
    """A wall-clock time in an IANA time zone: `at: "2027-03-01T09:00"`, `time_zone:
    Europe/Paris` — 09:00 in Paris whatever the offset that day."""

    at: str = Field(description="local date and time, ISO-8601 without an offset")
    time_zone: str = Field(description="IANA time zone, e.g. America/New_York")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r} (an IANA name, e.g. Europe/Paris)") from exc
        return v

    @field_validator("at")
    @classmethod
    def _local(cls, v: str) -> str:
        try:
            dt = datetime.fromisoformat(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not an ISO-8601 date and time") from exc
        if dt.tzinfo is not None:
            raise ValueError("give the local time without an offset; the zone is time_zone")
        return v

    @property
    def at_ms(self) -> int:
        """The instant (epoch ms). A time skipped by a daylight-saving jump is taken with
        the offset before the jump, one repeated by it at its first occurrence (fold 0)."""
        local = datetime.fromisoformat(self.at).replace(tzinfo=ZoneInfo(self.time_zone))
        return int(local.timestamp() * 1000)


class BroadcastDefinition(_Strict):
    kind: Literal["broadcast"] = "broadcast"
    key: str = Field(pattern=KEY_PATTERN, description="immutable; the campaign key")
    name: str = Field("", max_length=120)
    description: str = ""
    channel: Literal["email", "sms"]
    recipients: list[RecipientRow] = Field(min_length=1, max_length=50)
    template: str | None = Field(None, min_length=1, description="email template id")
    subject: str | None = Field(None, description="email subject (variables allowed)")
    body: str | None = Field(None, min_length=1, description="SMS text (variables allowed)")
    variables: dict[str, str] = Field(default_factory=dict)
    group: str | None = Field(None, max_length=75, description="email subscription group")
    subscription: Literal["subscribed", "all"] = Field(
        "subscribed", description="who may receive it: subscribed contacts, or (email) all"
    )
    to: str | None = Field(None, description="trait holding the address; default email/phone")
    rate: float | None = Field(
        None, gt=0, description="messages per second across every worker (default: settings)"
    )
    status: Literal["draft", "scheduled", "cancelled"] = "draft"
    schedule: Schedule | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.key

    @model_validator(mode="after")
    def _channel_fields(self) -> BroadcastDefinition:
        if self.channel == "email":
            if not self.template:
                raise ValueError("an email broadcast needs a template")
            if self.body is not None:
                raise ValueError("body is for SMS; an email uses template (and subject)")
        else:
            if not self.body:
                raise ValueError("an SMS broadcast needs a body")
            if OPT_OUT not in " ".join(self.body.lower().split()):
                raise ValueError('an SMS body must include "Reply STOP to unsubscribe"')
            if self.group is not None:
                raise ValueError("subscription groups are for email")
            if self.subscription == "all":
                raise ValueError("subscription: all is only available for email")
        return self

    def send_at(self, published_at: int) -> int:
        """When the send starts: the scheduled instant, or when it was published."""
        return self.schedule.at_ms if self.schedule is not None else published_at


def sms_segments(text: str) -> int:
    """Billed segments of an SMS (reference §5: > 160 characters are split): GSM-7 160
    septets in one, 153 per part when split; anything else UCS-2, 70 / 67 characters."""
    if all(c in GSM7 or c in GSM7_EXTENDED for c in text):
        septets = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)
