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
    source_id: str | None = Field(default=None, description="the write key's source (collector)")
    linked_profile: str | None = Field(
        default=None,
        description="internal: the user a group call forwarded to its account came from",
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        """Compact internal JSON: fields in declaration order, defaults left out — the same
        bytes as `orjson.dumps(self.model_dump(exclude_defaults=True))`, built without the
        pydantic serializer (this runs for every event, twice)."""
        d = self.__dict__
        out = {
            "message_id": d["message_id"],
            "type": d["type"],
            "timestamp": d["timestamp"],
            "received_at": d["received_at"],
        }
        if d["profile_id"] != "":
            out["profile_id"] = d["profile_id"]
        for name in _OPTIONAL:
            v = d[name]
            if v is not None:
                out[name] = v
        for name in _MAPPINGS:
            v = d[name]
            if v != {}:
                out[name] = v
        return orjson.dumps(out)

    @classmethod
    def from_json(cls, data: bytes | str | memoryview) -> ProfileEvent:
        # Trusted internal bytes written by to_json: skip re-validation on the hot path.
        d = orjson.loads(data)
        get = d.get
        return cls.from_trusted(
            {
                "message_id": d["message_id"],
                "type": d["type"],
                "timestamp": d["timestamp"],
                "received_at": d["received_at"],
                "profile_id": get("profile_id", ""),
                "event": get("event"),
                "user_id": get("user_id"),
                "anonymous_id": get("anonymous_id"),
                "group_id": get("group_id"),
                "previous_id": get("previous_id"),
                "source_id": get("source_id"),
                "linked_profile": get("linked_profile"),
                "properties": get("properties") or {},
                "traits": get("traits") or {},
                "context": get("context") or {},
            }
        )

    @classmethod
    def from_trusted(cls, values: dict[str, Any]) -> ProfileEvent:
        """An instance from already-valid values for every field, in declaration order —
        what `model_construct` builds, without its per-field default handling."""
        obj = _new(cls)
        _setattr(obj, "__dict__", values)
        _setattr(obj, "__pydantic_fields_set__", set(_FIELDS))
        _setattr(obj, "__pydantic_extra__", None)
        _setattr(obj, "__pydantic_private__", None)
        return obj


_new = object.__new__
_setattr = object.__setattr__
_FIELDS = frozenset(ProfileEvent.model_fields)
_OPTIONAL = (
    "event",
    "user_id",
    "anonymous_id",
    "group_id",
    "previous_id",
    "source_id",
    "linked_profile",
)
_MAPPINGS = ("properties", "traits", "context")
if {"message_id", "type", "timestamp", "received_at", "profile_id", *_OPTIONAL, *_MAPPINGS} != (
    _FIELDS
):  # the hand-written (de)serialisers above name every field
    raise RuntimeError("ProfileEvent fields changed: update to_json / from_json")
