"""A request body → the records for Kafka, with Segment's server-side rules.

What Segment's tracking API does to a call before anything downstream sees it (reference
§9), done here so that the input topic holds what Segment would have stored:

- a single-call endpoint names the type (`/v1/track` → `"type": "track"`);
- a batch's top-level `context`, `integrations` and `sentAt` apply to each item (the
  item's own keys win), which is how analytics-python, analytics-node and analytics-next
  send `sentAt` — needed for the skew correction of the event time;
- `receivedAt` is the server's clock, whatever the client sent; `messageId` is generated
  when absent; `writeKey` is removed (it is a credential, not event data);
- `context.direct: true` asks for the caller's IP as `context.ip`.

Then every item is judged by the ingest stage's own `parse_message` on the exact bytes
that will be forwarded, so the collector and the worker can never disagree: a valid item
goes to the mixed input topic keyed by `identity.resolver.input_key` (`user_id:<userId>`,
else `anonymous_id:<anonymousId>`: one topic and one key per identifier keep a person's
events in order across types), an invalid one to the dead-letter topic with the ingest
reason. An event over
32 KB fails the whole request with 400, as Segment answers; a batch of more than 2,500
events is answered 200 and not processed (Segment's documented behaviour), its body
dead-lettered whole so that it can be split and re-sent.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from engage_stream.collector.body import MAX_BATCH_EVENTS, MAX_EVENT_BYTES
from engage_stream.collector.errors import CollectorError
from engage_stream.config import Topics
from engage_stream.identity.resolver import input_key
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.ingest.validate import InvalidEvent, Reason, parse_message
from engage_stream.records import SOURCE_ID_HEADER
from engage_stream.stream.producing import OutgoingRecord
from engage_stream.timestamps import iso_ms

SOURCE_HEADER = SOURCE_ID_HEADER
"""On every record the collector writes: the source (write key) it came from."""

BATCH_TOO_LARGE = "batch_too_large"
"""The rejection reason counted for the items of a batch over 2,500 events."""

# Not from an input partition: the dead-letter headers' partition and offset say so.
NOT_FROM_KAFKA = -1


@dataclass
class Prepared:
    """What one request becomes: records to produce together, and what was counted."""

    records: list[OutgoingRecord] = field(default_factory=list)
    accepted: dict[str, int] = field(default_factory=dict)  # by type
    rejected: dict[str, int] = field(default_factory=dict)  # by reason
    events: int = 0
    payload_bytes: int = 0

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n


@dataclass(frozen=True)
class Call:
    """The request-level facts every item of the request is stamped with."""

    source_id: str
    received_at_ms: int
    client_ip: str | None = None

    @functools.cached_property
    def received_at(self) -> str:
        return iso_ms(self.received_at_ms)

    @functools.cached_property
    def source_header(self) -> list[tuple[str, bytes]]:
        return [(SOURCE_HEADER, self.source_id.encode())]


def prepare(kind: str, body: Any, call: Call, topics: Topics) -> Prepared:
    """Records for one request to `/v1/<kind>` (kind is a Segment type or `batch`)."""
    if not isinstance(body, dict):
        raise CollectorError.bad_request("invalid_request", "The body must be a JSON object.")
    out = Prepared()
    if kind != "batch":
        item = {**body, "type": kind}
        out.events = 1
        _prepare_item(item, {}, call, topics, out)
        return out
    items = body.get("batch")
    if not isinstance(items, list):
        raise CollectorError.bad_request(
            "invalid_request", 'A batch body needs "batch": an array of calls.'
        )
    out.events = len(items)
    if len(items) > MAX_BATCH_EVENTS:
        _reject_batch(body, call, topics, out)
        return out
    shared = {k: body[k] for k in ("context", "integrations", "sentAt") if k in body}
    for item in items:
        _prepare_item(item, shared, call, topics, out)
    return out


def _prepare_item(
    item: Any, shared: Mapping[str, Any], call: Call, topics: Topics, out: Prepared
) -> None:
    if isinstance(item, dict):
        item = _stamped(item, shared, call)
    raw = orjson.dumps(item)
    if len(raw) > MAX_EVENT_BYTES:
        raise CollectorError.too_large(
            f"An event is {len(raw):,} bytes; at most {MAX_EVENT_BYTES:,} (32 KB) are accepted."
        )
    out.payload_bytes += len(raw)
    try:
        event = parse_message(raw, call.received_at_ms)
    except InvalidEvent as exc:
        out.records.append(_dead_letter(raw, _key_of(item), exc.reason, exc.detail, call, topics))
        out.reject(exc.reason)
        return
    key = input_key(event).encode()
    out.records.append(OutgoingRecord(topics.mixed, key, raw, call.source_header))
    out.accepted[event.type] = out.accepted.get(event.type, 0) + 1


def _stamped(item: dict[str, Any], shared: Mapping[str, Any], call: Call) -> dict[str, Any]:
    msg = dict(item)
    msg.pop("writeKey", None)
    for name in ("context", "integrations"):
        top = shared.get(name)
        if isinstance(top, dict):
            own = msg.get(name)
            msg[name] = {**top, **own} if isinstance(own, dict) else (top if own is None else own)
    if "sentAt" in shared and msg.get("sentAt") is None:
        msg["sentAt"] = shared["sentAt"]
    msg["receivedAt"] = call.received_at
    if msg.get("messageId") in (None, ""):
        msg["messageId"] = "api-" + uuid.uuid4().hex
    context = msg.get("context")
    if (
        call.client_ip
        and isinstance(context, dict)
        and context.get("direct") is True
        and not context.get("ip")
    ):
        msg["context"] = {**context, "ip": call.client_ip}
    return msg


def _key_of(item: Any) -> bytes | None:
    if isinstance(item, dict):
        uid = item.get("userId") or item.get("anonymousId")
        if isinstance(uid, str) and uid:
            return uid.encode()
    return None


def _dead_letter(
    raw: bytes, key: bytes | None, reason: str, detail: str, call: Call, topics: Topics
) -> OutgoingRecord:
    dl = DeadLetter(
        reason=reason,
        detail=detail,
        topic=topics.mixed,
        partition=NOT_FROM_KAFKA,
        offset=NOT_FROM_KAFKA,
        timestamp_ms=call.received_at_ms,
    )
    return dl.record(topics.dead_letter, key, raw, [(SOURCE_HEADER, call.source_id.encode())])


def _reject_batch(body: dict[str, Any], call: Call, topics: Topics, out: Prepared) -> None:
    kept = {k: v for k, v in body.items() if k != "writeKey"}
    raw = orjson.dumps(kept)
    detail = f"batch of {len(body['batch']):,} events; at most {MAX_BATCH_EVENTS:,} per request"
    out.records.append(_dead_letter(raw, None, Reason.OVERSIZE, detail, call, topics))
    out.reject(BATCH_TOO_LARGE, len(body["batch"]))
