"""The record a messaging connector reads from `engage.messages`: one email or SMS to send.

Journeys' send steps and broadcasts write the same shape, told apart by `source`; a
connector delivers each `idempotency_key` at most once — a replayed or recovered batch
repeats the same key, never a new one. Nothing in engage-stream talks to an email or SMS
provider.
"""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict


class MessageSendRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str
    idempotency_key: str
    source: Literal["journey", "broadcast"]
    channel: Literal["email", "sms", "whatsapp"]
    recipient: str  # the contact vector: an email address or a phone number
    template: str | None = None  # email template id
    subject: str | None = None  # rendered
    body: str | None = None  # SMS text, rendered
    segments: int | None = None  # SMS billed segments
    group: str | None = None  # email subscription group
    variables: dict[str, str] = {}  # rendered from the profile's traits (and journey context)
    profile_id: str
    at: int  # epoch ms: when the send was decided (event time)
    at_iso: str
    space_id: str
    # journeys
    journey: str | None = None
    version: int | None = None  # of the journey or the broadcast
    step: str | None = None
    instance_id: str | None = None
    # broadcasts
    broadcast: str | None = None
    campaign_key: str | None = None

    def to_value(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))
