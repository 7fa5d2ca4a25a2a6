"""Raw bytes in, a normalised `ProfileEvent` or a dead-letter reason out.

Never raises on data: every failure becomes an `InvalidEvent` with a short machine reason
(used as the metric label and on the dead-letter record) and a human detail.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from engage_stream.events import ProfileEvent
from engage_stream.ingest.segment import (
    EVENT_TYPES,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_ID_CHARS,
    Page,
    Screen,
    SegmentMessage,
    Track,
    _Common,
)


class Reason(StrEnum):
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    OVERSIZE = "oversize"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_ID = "missing_id"
    MESSAGE_ID_TOO_LONG = "message_id_too_long"
    INVALID_FIELD = "invalid_field"


class InvalidEvent(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_adapter: TypeAdapter[Any] = TypeAdapter(SegmentMessage)


def parse_message(raw: bytes, received_at_ms: int) -> ProfileEvent:
    """Validate one Segment message and normalise it; `received_at_ms` is the broker time."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidEvent(Reason.OVERSIZE, f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(Reason.MALFORMED_JSON, str(exc)) from None
    return parse_object(obj, received_at_ms, raw)


def parse_object(obj: Any, received_at_ms: int, raw: bytes | None = None) -> ProfileEvent:
    if not isinstance(obj, dict):
        raise InvalidEvent(
            Reason.NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}"
        )
    kind = obj.get("type")
    if kind not in EVENT_TYPES:
        raise InvalidEvent(
            Reason.UNKNOWN_TYPE, f"type {kind!r} is not one of {', '.join(EVENT_TYPES)}"
        )
    try:
        msg = _adapter.validate_python(obj)
    except ValidationError as exc:
        raise _classify(exc) from None
    return normalise(msg, received_at_ms, raw if raw is not None else orjson.dumps(obj))


def _classify(exc: ValidationError) -> InvalidEvent:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"][1:]) or "(message)"
    msg = first["msg"]
    if "no_user_anon_id" in msg:
        return InvalidEvent(Reason.MISSING_ID, "userId or anonymousId is required")
    if loc == "messageId" and first["type"] == "string_too_long":
        return InvalidEvent(
            Reason.MESSAGE_ID_TOO_LONG, f"messageId longer than {MAX_MESSAGE_ID_CHARS}"
        )
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidEvent(Reason.INVALID_FIELD, f"{loc}: {msg}{more}")


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def event_time_ms(msg: _Common, received_at_ms: int) -> tuple[int, int]:
    """Segment's clock-skew correction: timestamp = receivedAt - (sentAt - originalTimestamp).

    Returns (event time, received time). The client's own time is originalTimestamp or, for
    a manually set timestamp (historical import), timestamp.
    """
    received = _ms(msg.receivedAt) if msg.receivedAt is not None else received_at_ms
    original = msg.originalTimestamp or msg.timestamp
    if original is None:
        return received, received
    if msg.sentAt is not None:
        return received - (_ms(msg.sentAt) - _ms(original)), received
    return _ms(original), received


def normalise(msg: _Common, received_at_ms: int, raw: bytes) -> ProfileEvent:
    ts, received = event_time_ms(msg, received_at_ms)
    kind: str = msg.type  # type: ignore[attr-defined]
    message_id = msg.messageId or "gen-" + hashlib.sha1(raw).hexdigest()
    event: str | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    if isinstance(msg, Track):
        event, properties = msg.event, msg.properties
    elif isinstance(msg, Page | Screen):
        label = "page" if isinstance(msg, Page) else "screen"
        event = "Page Viewed" if label == "page" else "Screen Viewed"
        properties = dict(msg.properties)
        name = msg.name or properties.get("name")
        if name is not None:
            properties[f"{label}_name"] = name
        if msg.category is not None:
            properties.setdefault("category", msg.category)
    else:
        traits = getattr(msg, "traits", {}) or {}
    return ProfileEvent(
        message_id=message_id,
        type=kind,  # type: ignore[arg-type]
        timestamp=ts,
        received_at=received,
        event=event,
        user_id=msg.userId,
        anonymous_id=msg.anonymousId,
        group_id=getattr(msg, "groupId", None),
        previous_id=getattr(msg, "previousId", None),
        properties=properties,
        traits=traits,
        context=msg.context,
    )
