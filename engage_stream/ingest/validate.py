"""Raw bytes in, a normalised `ProfileEvent` or a dead-letter reason out.

Never raises on data: every failure becomes an `InvalidEvent` with a short machine reason
(used as the metric label and on the dead-letter record) and a human detail.

Two paths, one contract. The pydantic models in `segment.py` are the contract; running them
costs more than everything else ingest does, so `parse_message` first tries `_fast_event`:
plain checks that accept only messages the models certainly accept (exact types, ISO-8601
timestamps in the common `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)` form, limits) and build
the same `ProfileEvent` `normalise` would. Anything else — every invalid message and every
valid one in a less common shape — goes through the models, which also word the error, so
what is accepted, how it is normalised and why it is rejected are the models' answers.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from engage_stream.events import ProfileEvent
from engage_stream.ingest.segment import (
    EVENT_TYPES,
    MAX_FIELDS,
    MAX_GROUP_ID_CHARS,
    MAX_IDENTIFY_TRAITS,
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
    TOO_DEEP = "too_deep"
    PROCESSING_FAILED = "processing_failed"  # anything else that fails on the data


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
    # Brackets bound the depth: only a message with many of them is walked.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and (depth := nesting(obj)) > MAX_DEPTH:
        raise InvalidEvent(
            Reason.TOO_DEEP, f"objects and arrays nested {depth} deep; at most {MAX_DEPTH}"
        )
    if type(obj) is dict and obj.get("type") in EVENT_TYPES:
        event = _fast_event(obj, received_at_ms, raw)
        if event is not None:
            return _checked(event)
    return parse_object(obj, received_at_ms, raw)


# How deep objects and arrays may nest in a message. The normalised event is written as
# JSON again (orjson stops at 254 levels), and no property path is that long.
MAX_DEPTH = 64


def nesting(obj: Any) -> int:
    """How deep objects and arrays nest in a parsed JSON value (a scalar: 0)."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        v, d = stack.pop()
        t = type(v)
        if t is dict:
            children = v.values()
        elif t is list:
            children = v
        else:
            continue
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in children if type(c) is dict or type(c) is list)
    return deepest


# Event times are stored as 13-digit milliseconds in ordered keys (profiles/store.py), and
# Segment does not ingest events before 1970 (reference §8).
MAX_EVENT_MS = 10**13 - 1  # 2286-11-20T17:46:39.999Z


def _checked(event: ProfileEvent) -> ProfileEvent:
    """What both paths accept but state keys cannot hold: NUL (the key separator) in an
    id, and event times outside the 13-digit millisecond range."""
    ids = (event.user_id, event.anonymous_id, event.message_id, event.group_id, event.previous_id)
    if "\x00" in f"{ids[0]}{ids[1]}{ids[2]}{ids[3]}{ids[4]}":  # one test on the hot path
        for name, v in zip(_ID_FIELDS, ids, strict=True):
            if v is not None and "\x00" in v:
                raise InvalidEvent(Reason.INVALID_FIELD, f"{name}: must not contain NUL")
    for name, ms in (("timestamp", event.timestamp), ("receivedAt", event.received_at)):
        if not 0 <= ms <= MAX_EVENT_MS:
            raise InvalidEvent(
                Reason.INVALID_FIELD,
                f"{name}: event time {ms} ms is outside 1970-01-01T00:00:00Z .. "
                "2286-11-20T17:46:39.999Z",
            )
    return event


_ID_FIELDS = ("userId", "anonymousId", "messageId", "groupId", "previousId")


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
    try:
        event = normalise(msg, received_at_ms, raw if raw is not None else orjson.dumps(obj))
    except ValidationError as exc:
        # An undeclared field that `normalise` reads (groupId / previousId on another type,
        # traits on alias) with a value the event cannot hold: bad input, not a crash.
        first = exc.errors(include_url=False)[0]
        field = _SEGMENT_NAMES.get(str(first["loc"][0]), str(first["loc"][0]))
        raise InvalidEvent(Reason.INVALID_FIELD, f"{field}: {first['msg']}") from None
    return _checked(event)


_SEGMENT_NAMES = {"group_id": "groupId", "previous_id": "previousId"}


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


# -- the fast path ------------------------------------------------------------------------
# Only what the models certainly accept, normalised exactly as `normalise` does; `None`
# means "let the models decide". `obj` comes fresh from `orjson.loads`, so its dicts are
# ours to keep (the models would copy them).

_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)  # the date itself is checked by fromisoformat (ValueError → the models decide)
_fromiso = datetime.fromisoformat
_BAIL: Any = object()  # "not the fast path's to decide"


def _fast_ms(v: Any) -> Any:
    """Epoch ms of a timestamp field, None if null or absent, else `_BAIL`."""
    if v is None:
        return None
    if type(v) is not str or _ISO.fullmatch(v) is None:
        return _BAIL
    try:
        ms = int(_fromiso(v).timestamp() * 1000)
    except ValueError:
        return _BAIL
    return ms if ms >= 0 else _BAIL


def _fast_mapping(obj: dict[str, Any], name: str, most: int = MAX_FIELDS) -> Any:
    """A declared `dict[str, Any]` field (at most `most` keys), {} if absent."""
    v = obj.get(name, _BAIL)
    if v is _BAIL:
        return {}
    if type(v) is not dict or len(v) > most:
        return _BAIL
    return v


def _fast_opt_str(obj: dict[str, Any], name: str) -> Any:
    """A `StrictStr | None` field — or an undeclared one the model keeps as sent, which
    `normalise` reads with getattr (groupId / previousId on other types)."""
    v = obj.get(name)
    return v if v is None or type(v) is str else _BAIL


def _fast_event(obj: dict[str, Any], received_at_ms: int, raw: bytes) -> ProfileEvent | None:
    kind: str = obj["type"]
    user_id = _fast_opt_str(obj, "userId")
    anonymous_id = _fast_opt_str(obj, "anonymousId")
    message_id = _fast_opt_str(obj, "messageId")
    group_id = _fast_opt_str(obj, "groupId")
    previous_id = _fast_opt_str(obj, "previousId")
    context = _fast_mapping(obj, "context")
    integrations = obj.get("integrations", _BAIL)
    timestamp = _fast_ms(obj.get("timestamp"))
    original = _fast_ms(obj.get("originalTimestamp"))
    sent_at = _fast_ms(obj.get("sentAt"))
    received_at = _fast_ms(obj.get("receivedAt"))
    if (
        user_id is _BAIL
        or anonymous_id is _BAIL
        or message_id is _BAIL
        or group_id is _BAIL
        or previous_id is _BAIL
        or context is _BAIL
        or (integrations is not _BAIL and type(integrations) is not dict)
        or timestamp is _BAIL
        or original is _BAIL
        or sent_at is _BAIL
        or received_at is _BAIL
    ):
        return None
    external_ids = context.get("externalIds")
    if external_ids is not None and type(external_ids) is not list:
        return None
    user_id = user_id or None
    anonymous_id = anonymous_id or None
    if user_id is None and anonymous_id is None:
        return None
    if (user_id is not None and user_id.isspace()) or (
        anonymous_id is not None and anonymous_id.isspace()
    ):
        return None  # whitespace is no id: the models decide
    if message_id is not None and len(message_id) > MAX_MESSAGE_ID_CHARS:
        return None

    event: str | None = None
    properties: Any = {}
    traits: Any = {}
    if kind == "track":
        event = obj.get("event")
        properties = _fast_mapping(obj, "properties")
        if type(event) is not str or not event or properties is _BAIL:
            return None
        if context.get("groupId") == "":
            return None
    elif kind == "page" or kind == "screen":
        name = _fast_opt_str(obj, "name")
        category = _fast_opt_str(obj, "category")
        props = _fast_mapping(obj, "properties")
        if name is _BAIL or category is _BAIL or props is _BAIL:
            return None
        event = "Page Viewed" if kind == "page" else "Screen Viewed"
        properties = dict(props)
        name = name or properties.get("name")
        if name is not None:
            properties[f"{kind}_name"] = name
        if category is not None:
            properties.setdefault("category", category)
    elif kind == "alias":
        if not previous_id or "traits" in obj:
            return None
    else:  # identify, group
        traits = _fast_mapping(
            obj, "traits", MAX_IDENTIFY_TRAITS if kind == "identify" else MAX_FIELDS
        )
        if traits is _BAIL:
            return None
        if kind == "group" and not (group_id and len(group_id) <= MAX_GROUP_ID_CHARS):
            return None

    # event_time_ms on the same millisecond values
    received = received_at if received_at is not None else received_at_ms
    own = original if original is not None else timestamp
    if own is None:
        ts = received
    elif sent_at is not None:
        ts = received - (sent_at - own)
    else:
        ts = own
    return ProfileEvent.from_trusted(
        {
            "message_id": message_id or "gen-" + hashlib.sha1(raw).hexdigest(),
            "type": kind,
            "timestamp": ts,
            "received_at": received,
            "profile_id": "",
            "event": event,
            "user_id": user_id,
            "anonymous_id": anonymous_id,
            "group_id": group_id,
            "previous_id": previous_id,
            "source_id": None,
            "linked_profile": None,
            "properties": properties,
            "traits": traits,
            "context": context,
        }
    )
