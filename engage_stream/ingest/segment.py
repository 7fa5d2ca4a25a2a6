"""Segment Spec message models: the contract for what producers may send.

The rules follow the reference (§6, §9): userId or anonymousId required, messageId at most
100 characters, 32 KB per message, groupId at most 500 characters, and no empty groupId:
neither a Group's nor a Track's `context.groupId`. Field counts: a message with more than
300 properties or traits is dropped, except that an Identify is rejected from 300 traits
on (the reference states that limit separately, as "Identify with ≥300 traits"). Extra
top-level fields are kept so nothing a producer sent is lost.

Times are ISO-8601 date-times with a timezone, as the spec says (§9) — never epoch numbers
or numeric strings, which pydantic alone would read as Unix times — and not before
1970-01-01 (§8: Segment does not ingest earlier events; a `sentAt` before it would also
move the event decades ahead through the skew correction). Ids made only of whitespace
are no ids. `context.externalIds`, when present, is an array: identity reads it as one.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

MAX_MESSAGE_BYTES = 32 * 1024
MAX_MESSAGE_ID_CHARS = 100
MAX_GROUP_ID_CHARS = 500
MAX_FIELDS = 300  # properties / traits a message may carry
MAX_IDENTIFY_TRAITS = 299  # an Identify with 300 traits is already rejected

# The ISO-8601 date-time forms accepted (the date itself is checked by the datetime parser)
ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)"
)

EVENT_TYPES = ("track", "identify", "group", "page", "screen", "alias")


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    userId: StrictStr | None = None
    anonymousId: StrictStr | None = None
    messageId: StrictStr | None = Field(default=None, max_length=MAX_MESSAGE_ID_CHARS)
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    receivedAt: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)

    @field_validator("userId", "anonymousId", mode="after")
    @classmethod
    def _blank_is_missing(cls, v: str | None) -> str | None:
        return v if v and not v.isspace() else None

    @field_validator("timestamp", "originalTimestamp", "sentAt", "receivedAt", mode="before")
    @classmethod
    def _iso_text(cls, v: Any) -> Any:
        if v is None:
            return v
        if type(v) is not str:
            raise ValueError(f"must be an ISO-8601 date-time string, not {type(v).__name__}")
        if ISO_DATETIME.fullmatch(v) is None:
            raise ValueError("must be an ISO-8601 date-time with a timezone")
        if v[-3] in "+-" and v[-2:].isdigit():  # ±hh: ISO-8601, not pydantic's parser's
            return v + ":00"
        return v

    @field_validator("timestamp", "originalTimestamp", "sentAt", "receivedAt", mode="after")
    @classmethod
    def _needs_timezone(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("timestamp must be ISO-8601 with a timezone")
        if v is not None and v.timestamp() < 0:
            raise ValueError("before 1970-01-01T00:00:00Z")
        return v

    @field_validator("context", mode="after")
    @classmethod
    def _external_ids_array(cls, v: dict[str, Any]) -> dict[str, Any]:
        # Identity reads it as a list (reference §6: `[{id, type, collection, encoding}]`);
        # a number there failed the event with a TypeError past validation.
        ext = v.get("externalIds")
        if ext is not None and type(ext) is not list:
            raise ValueError("externalIds must be an array of objects (reference §6)")
        return v

    @model_validator(mode="after")
    def _needs_an_id(self) -> _Common:
        if self.userId is None and self.anonymousId is None and self._id_required():
            raise ValueError("no_user_anon_id: userId or anonymousId is required")
        return self

    def _id_required(self) -> bool:
        return True


def _limit(most: int) -> Any:
    def check(v: dict[str, Any]) -> dict[str, Any]:
        if len(v) > most:
            raise ValueError(f"at most {most} keys are accepted, got {len(v)}")
        return v

    return check


_limit_fields = _limit(MAX_FIELDS)
_limit_identify_traits = _limit(MAX_IDENTIFY_TRAITS)


class Track(_Common):
    type: Literal["track"]
    event: StrictStr = Field(min_length=1)
    properties: dict[str, Any] = Field(default_factory=dict)

    _limit = field_validator("properties")(_limit_fields)

    @field_validator("context", mode="after")
    @classmethod
    def _group_id_not_empty(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("groupId") == "":
            raise ValueError("groupId must not be empty (reference §6)")
        return v


class Identify(_Common):
    type: Literal["identify"]
    traits: dict[str, Any] = Field(default_factory=dict)

    _limit = field_validator("traits")(_limit_identify_traits)


class Group(_Common):
    type: Literal["group"]
    groupId: StrictStr = Field(min_length=1, max_length=MAX_GROUP_ID_CHARS)
    traits: dict[str, Any] = Field(default_factory=dict)

    _limit = field_validator("traits")(_limit_fields)


class Page(_Common):
    type: Literal["page"]
    name: StrictStr | None = None
    category: StrictStr | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    _limit = field_validator("properties")(_limit_fields)


class Screen(_Common):
    type: Literal["screen"]
    name: StrictStr | None = None
    category: StrictStr | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    _limit = field_validator("properties")(_limit_fields)


class Alias(_Common):
    type: Literal["alias"]
    previousId: StrictStr = Field(min_length=1)

    def _id_required(self) -> bool:
        # alias names the new id in userId; previousId is its own required field.
        return True


SegmentMessage = Annotated[
    Track | Identify | Group | Page | Screen | Alias, Field(discriminator="type")
]
