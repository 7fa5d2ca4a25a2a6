"""Segment's answers on the real stack: bad keys, oversize calls and batches, and invalid
batch items dead-lettered with their reason while the rest of the batch goes through."""

from __future__ import annotations

import orjson
import pytest

from engage_stream.collector.messages import SOURCE_HEADER
from engage_stream.ingest.dead_letter import DeadLetter
from tests.collector.conftest import Stack
from tests.collector.helpers import names, post, topic_records, wait_events
from tests.stream.helpers import now_iso

pytestmark = pytest.mark.broker

KEY = "wk_python_7f3a"


def test_wrong_write_key_is_401(stack: Stack) -> None:
    url = stack.collector.url
    status, body, _ = post(f"{url}/v1/track", {"userId": "x", "event": "E"}, "wk_wrong")
    assert status == 401
    assert body == {"success": False, "code": "unauthorized", "message": "Invalid write key."}
    status, body, _ = post(f"{url}/v1/track", {"userId": "x", "event": "E"})
    assert status == 401 and "Missing write key" in body["message"]


def test_batch_with_invalid_items_is_200_the_rest_processed_the_bad_dead_lettered(
    stack: Stack,
) -> None:
    user = "limits-mixed"
    batch = {
        "batch": [
            {
                "type": "identify",
                "userId": user,
                "traits": {"plan": "gold"},
                "timestamp": now_iso(-3),
            },
            {"type": "track", "event": "Lost Ids", "messageId": "bad-no-ids"},
            {"type": "track", "userId": user, "event": "Kept", "timestamp": now_iso(-2)},
            {"type": "group", "userId": user, "messageId": "bad-no-group-id"},
            {"type": "page", "userId": user, "name": "Home", "timestamp": now_iso(-1)},
        ],
        "context": {"library": {"name": "curl"}},
    }
    status, body, _ = post(f"{stack.collector.url}/v1/batch", batch, KEY)
    assert (status, body) == (200, {"success": True})
    events = wait_events(stack.worker, f"user_id:{user}", 3)
    assert names(events) == ["identify", "Kept", "Page Viewed"]
    assert all(e["context"]["library"]["name"] == "curl" for e in events)
    dead = {}
    for rec in topic_records(stack.settings, stack.settings.topics.dead_letter, 2):
        msg = orjson.loads(rec.value)
        if isinstance(msg, dict) and msg.get("messageId") in ("bad-no-ids", "bad-no-group-id"):
            dead[msg["messageId"]] = (DeadLetter.from_headers(rec.headers), rec.headers)
    assert set(dead) == {"bad-no-ids", "bad-no-group-id"}
    no_ids, headers = dead["bad-no-ids"]
    assert no_ids.reason == "missing_id" and "userId or anonymousId" in no_ids.detail
    assert no_ids.topic == stack.settings.topics.mixed and no_ids.offset == -1
    assert (SOURCE_HEADER, b"python-server") in headers
    assert dead["bad-no-group-id"][0].reason == "invalid_field"
    assert "groupId" in dead["bad-no-group-id"][0].detail
    c = stack.collector
    assert c.metric("engage_collector_events_rejected_total", 'reason="missing_id"') >= 1
    assert c.metric("engage_collector_events_rejected_total", 'reason="invalid_field"') >= 1


def test_oversize_event_and_batch_are_400(stack: Stack) -> None:
    url = stack.collector.url
    big = {"userId": "limits-big", "event": "Big", "properties": {"blob": "x" * 33_000}}
    status, body, _ = post(f"{url}/v1/track", big, KEY)
    assert (status, body["code"]) == (400, "payload_too_large")
    status, body, _ = post(f"{url}/v1/batch", {"batch": [{"type": "track", **big}]}, KEY)
    assert (status, body["code"]) == (400, "payload_too_large")
    item = {
        "type": "track",
        "userId": "limits-big",
        "event": "E",
        "properties": {"s": "x" * 20_000},
    }
    huge = orjson.dumps({"batch": [item] * 26})
    assert len(huge) > 500 * 1024
    status, body, _ = post(f"{url}/v1/batch", None, KEY, data=huge)
    assert (status, body["code"]) == (400, "payload_too_large") and "500 KB" in body["message"]
    assert stack.worker.profile("user_id:limits-big", "events")[0] == 404, "nothing went through"


def test_batch_over_2500_events_is_accepted_as_segment_does_but_not_processed(
    stack: Stack,
) -> None:
    items = [{"type": "track", "userId": f"over-{i}", "event": "E"} for i in range(2501)]
    status, body, _ = post(f"{stack.collector.url}/v1/batch", {"batch": items}, KEY)
    assert (status, body) == (200, {"success": True})
    forwarded = [
        r
        for r in topic_records(stack.settings, stack.settings.topics.mixed, 1, timeout=3)
        if orjson.loads(r.value).get("userId", "").startswith("over-")
    ]
    assert forwarded == []
    kept = [
        (DeadLetter.from_headers(r.headers), orjson.loads(r.value))
        for r in topic_records(stack.settings, stack.settings.topics.dead_letter, 1)
        if b"over-0" in r.value
    ]
    assert len(kept) == 1
    dl, value = kept[0]
    assert dl.reason == "oversize" and "2,501 events" in dl.detail
    assert len(value["batch"]) == 2501, "the whole batch is kept to be split and re-sent"
    assert (
        stack.collector.metric("engage_collector_events_rejected_total", 'reason="batch_too_large"')
        == 2501
    )
