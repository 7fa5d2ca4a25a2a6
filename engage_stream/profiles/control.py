"""Control records on `profile-events`: how a merge moves a profile between partitions.

Besides events and clock ticks, `profile-events` carries two kinds of record a merge needs
(their values start with a NUL byte, which no JSON event does):

- `MergeRequest`, keyed by the merged-away profile (so it reaches that profile's
  partition, after every event already routed there): the identity stage decided that
  `source` merges into `target`.
- `ProfileTransfer`, keyed by the survivor: everything the merged-away profile's partition
  held of it — record, history, dedup window — produced in the same checkpoint that
  deleted it there and left a redirect, so a crash between the two partitions loses
  nothing and applies nothing twice.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field

MERGE_REQUEST = b"\x00merge:"
PROFILE_TRANSFER = b"\x00transfer:"
ACCOUNT_FLAGS = b"\x00flags:"


class MergeRequest(BaseModel):
    source: str = Field(description="the merged-away profile")
    target: str = Field(description="the survivor")
    message_id: str = Field(description="the event that linked them")
    at: int = Field(description="event time (ms) of that event")

    def to_value(self) -> bytes:
        return MERGE_REQUEST + orjson.dumps(self.model_dump())


class ProfileTransfer(BaseModel):
    source: str
    target: str
    message_id: str
    at: int
    record: dict[str, Any] = Field(description="the source's ProfileRecord, as stored")
    history: list[dict[str, Any]] = Field(default_factory=list, description="its events")
    seen: dict[str, int] = Field(default_factory=dict, description="messageId -> arrival ms")

    def to_value(self) -> bytes:
        return PROFILE_TRANSFER + orjson.dumps(self.model_dump())


class AccountFlags(BaseModel):
    """A user's memberships of the hidden audiences its accounts' audiences read
    (`profiles.accounts`), keyed by the account: sent when one changes and when the user
    joins the account."""

    account: str
    user: str
    flags: dict[str, bool]
    times: dict[str, int] = Field(default_factory=dict, description="when each last changed")
    at: int = Field(description="event time (ms) of what changed them")
    cause: str
    replaces: list[str] = Field(
        default_factory=list, description="profiles merged into `user`: no longer its users"
    )

    def to_value(self) -> bytes:
        return ACCOUNT_FLAGS + orjson.dumps(self.model_dump())


def parse(value: bytes) -> MergeRequest | ProfileTransfer | AccountFlags | None:
    """The control record a value holds, or None for an event."""
    if value.startswith(MERGE_REQUEST):
        return MergeRequest.model_validate_json(value[len(MERGE_REQUEST) :])
    if value.startswith(PROFILE_TRANSFER):
        return ProfileTransfer.model_validate_json(value[len(PROFILE_TRANSFER) :])
    if value.startswith(ACCOUNT_FLAGS):
        return AccountFlags.model_validate_json(value[len(ACCOUNT_FLAGS) :])
    return None
