"""The normalised event every stage after ingest works with.

Ingest turns a Segment message into a `ProfileEvent`: one timestamp (skew-corrected, epoch
milliseconds), page/screen calls renamed to `Page Viewed` / `Screen Viewed` with
`page_name` / `screen_name`, and the canonical profile id the identity stage assigned.
The engine sees only this model, never raw Segment JSON.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["track", "identify", "group", "page", "screen", "alias"]


class ProfileEvent(BaseModel):
    model_config = ConfigDict(frozen=False, extra="forbid")

    message_id: str
    type: EventType
    timestamp: int = Field(description="event time, epoch milliseconds, skew-corrected")
    received_at: int = Field(description="when the platform received it, epoch ms")
    profile_id: str = Field(default="", description="canonical profile id (identity stage)")
    event: str | None = Field(default=None, description="event name as conditions see it")
    user_id: str | None = None
    anonymous_id: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_defaults=True))

    @classmethod
    def from_json(cls, data: bytes | str) -> ProfileEvent:
        # Trusted internal bytes written by to_json: skip re-validation on the hot path.
        return cls.model_construct(**_with_defaults(orjson.loads(data)))


def _with_defaults(d: dict[str, Any]) -> dict[str, Any]:
    d.setdefault("profile_id", "")
    d.setdefault("event", None)
    d.setdefault("user_id", None)
    d.setdefault("anonymous_id", None)
    d.setdefault("group_id", None)
    d.setdefault("previous_id", None)
    d.setdefault("properties", {})
    d.setdefault("traits", {})
    d.setdefault("context", {})
    return d
