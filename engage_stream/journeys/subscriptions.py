"""Subscription states per contact vector (reference §5), as pure functions.

Shape stored per profile (JSON): `{"email:<address>": {"status": "subscribed", "groups":
{"<group>": "unsubscribed"}}, "sms:<phone>": {...}}`. The key is the channel and the
contact vector (an email / phone external id); the status is one of `subscribed`,
`unsubscribed`, `did_not_subscribe`; a vector absent from the map has no status
(`none`: collected via tracking or identity resolution, never opted in).

Set by an Identify's `context.messaging_subscriptions: [{key, type: EMAIL|SMS|WhatsApp,
status: SUBSCRIBED|UNSUBSCRIBED|DID_NOT_SUBSCRIBE, groups?: [{name, status}]}]`, statuses
case-insensitive. A later Identify overwrites the vector's status and the groups it
names; groups it does not name are kept, since Segment updates groups one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engage_stream.events import ProfileEvent

Status = Literal["subscribed", "unsubscribed", "did_not_subscribe"]
State = Literal["subscribed", "unsubscribed", "did_not_subscribe", "none"]
Channel = Literal["email", "sms", "whatsapp"]
Subscriptions = dict[str, dict[str, Any]]


def _status(v: Any) -> Any:
    if isinstance(v, str):
        return v.strip().lower().replace("-", "_")
    return v


class GroupSubscription(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=75)
    status: Status

    _norm = field_validator("status", mode="before")(_status)


class MessagingSubscription(BaseModel):
    """One entry of `context.messaging_subscriptions`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str = Field(min_length=1)
    type: Channel
    status: Status
    groups: list[GroupSubscription] = Field(default_factory=list)

    _norm = field_validator("status", mode="before")(_status)

    @field_validator("type", mode="before")
    @classmethod
    def _channel(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


def vector_key(channel: str, address: str) -> str:
    """Emails compare case-insensitively; phone numbers as given (E.164 expected)."""
    return f"{channel}:{address.strip().lower() if channel == 'email' else address.strip()}"


def parse_messaging_subscriptions(
    context: Mapping[str, Any],
) -> tuple[list[MessagingSubscription], list[str]]:
    """The valid entries of `context.messaging_subscriptions` and a message per invalid one
    (skipped: one bad entry must not drop the others)."""
    raw = context.get("messaging_subscriptions")
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], ["messaging_subscriptions is not a list"]
    out: list[MessagingSubscription] = []
    problems: list[str] = []
    for i, entry in enumerate(raw):
        try:
            out.append(MessagingSubscription.model_validate(entry))
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            where = ".".join(str(x) for x in first["loc"])
            problems.append(f"messaging_subscriptions[{i}].{where}: {first['msg']}")
    return out, problems


def apply_subscriptions(current: Mapping[str, Any], event: ProfileEvent) -> Subscriptions:
    """The states after `event` (only identify calls carry subscriptions); a new dict, the
    input is not modified."""
    out: Subscriptions = {k: {**v, "groups": dict(v.get("groups", {}))} for k, v in current.items()}
    if event.type != "identify":
        return out
    entries, _ = parse_messaging_subscriptions(event.context)
    for s in entries:
        k = vector_key(s.type, s.key)
        prev = out.get(k, {"groups": {}})
        groups = dict(prev.get("groups", {}))
        for g in s.groups:
            groups[g.name] = g.status
        out[k] = {"status": s.status, "groups": groups}
    return out


def merge_subscriptions(target: Mapping[str, Any], source: Mapping[str, Any]) -> Subscriptions:
    """Two merged profiles' states: the survivor's where both have a vector (its own opt-in
    or opt-out stands), the merged-away profile's vectors added, groups united likewise."""
    out: Subscriptions = {k: {**v, "groups": dict(v.get("groups", {}))} for k, v in source.items()}
    for k, v in target.items():
        groups = {**out.get(k, {}).get("groups", {}), **v.get("groups", {})}
        out[k] = {**v, "groups": groups}
    return out


def state_of(
    subscriptions: Mapping[str, Any], channel: str, address: str, group: str | None = None
) -> State:
    """The state of one contact vector (of one of its groups when `group` is given: a group
    with no status of its own follows an unsubscribed vector, else has none)."""
    entry = subscriptions.get(vector_key(channel, address))
    if entry is None:
        return "none"
    status: State = entry.get("status", "none")
    if group is None:
        return status
    g = entry.get("groups", {}).get(group)
    if g is not None:
        return g  # type: ignore[no-any-return]
    return "unsubscribed" if status == "unsubscribed" else "none"


def allowed(state: State, channel: str, policy: Literal["subscribed", "all"]) -> bool:
    """Reference §5: only `subscribed` by default; email may opt into every state."""
    if policy == "all" and channel == "email":
        return True
    return state == "subscribed"
