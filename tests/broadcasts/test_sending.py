"""A broadcast's send through the profiles stage, in process (`Replay`): the snapshot at the
send instant, subscription gating and skip reasons, the throttled drain, cancel, versions,
the campaign key in audiences, deterministic idempotency keys."""

from __future__ import annotations

from typing import Any

import orjson

from engage_stream.broadcasts.catalog import BroadcastCatalog, BroadcastEntry
from engage_stream.broadcasts.models import BroadcastDefinition
from engage_stream.broadcasts.sending import read_progress
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog, Entry
from engage_stream.definitions.loader import parse_text
from engage_stream.replay import Replay, ReplayRecord
from engage_stream.state.transaction import Transaction
from engage_stream.timestamps import iso_ms

T0 = 1_800_000_000_000
SEC = 1000

AUDIENCES = """
kind: audience
key: buyers
conditions:
  - event: Order Completed
---
kind: audience
key: vips
conditions:
  - {trait: plan, operator: "=", value: vip}
---
kind: audience
key: received_spring
conditions:
  - event: Broadcast Sent
    where:
      - {property: campaign_key, operator: "=", value: spring}
"""


def spring(**kw: Any) -> BroadcastDefinition:
    body: dict[str, Any] = {
        "kind": "broadcast",
        "key": "spring",
        "channel": "email",
        "template": "spring_sale",
        "subject": "Hi {{traits.name}}",
        "variables": {"name": "{{traits.name}}", "code": "{{campaign_key}}"},
        # part of an audience, and not who is in another
        "recipients": [{"audience": "buyers"}, {"audience": "vips", "member": False}],
        "status": "scheduled",
        "schedule": {"at": "2027-01-15T09:00", "time_zone": "Europe/Paris"},
        "rate": 10,
    }
    body.update(kw)
    return BroadcastDefinition.model_validate(body)


SEND_AT = spring().send_at(0)


def replay(*entries: BroadcastEntry) -> Replay:
    found, problems = parse_text(AUDIENCES)
    assert not problems
    catalog = Catalog(
        {d.key: Entry(d, 1, 0) for d, _ in found},
        broadcasts=BroadcastCatalog({e.key: e for e in entries}),
    )
    return Replay(catalog, Settings(partitions=1))


def identify(user: str, at: int, status: str | None = "SUBSCRIBED", **traits: Any) -> bytes:
    email = f"{user}@example.com"
    context = (
        {"messaging_subscriptions": [{"key": email, "type": "EMAIL", "status": status}]}
        if status
        else {}
    )
    return orjson.dumps(
        {
            "type": "identify",
            "userId": user,
            "traits": {"email": email, **traits},
            "context": context,
            "timestamp": iso_ms(at),
            "messageId": f"i-{user}-{at}",
        }
    )


def order(user: str, at: int) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "userId": user,
            "event": "Order Completed",
            "timestamp": iso_ms(at),
            "messageId": f"o-{user}-{at}",
        }
    )


def population(n: int = 0) -> list[bytes]:
    """Buyers ann (subscribed), bob (unsubscribed), cy (did not subscribe), dee (no state),
    vic (a VIP: excluded), and a non-buyer; then `n` subscribed buyers."""
    t = SEND_AT - 3_600_000
    lines = [
        identify("ann", t, name="Ann"),
        identify("bob", t, status="UNSUBSCRIBED"),
        identify("cy", t, status="DID_NOT_SUBSCRIBE"),
        identify("dee", t, status=None),
        identify("vic", t, plan="vip"),
        identify("zoe", t),
    ]
    lines += [order(u, t + 1) for u in ("ann", "bob", "cy", "dee", "vic")]
    for i in range(n):
        lines += [identify(f"u{i:05d}", t + 2), order(f"u{i:05d}", t + 3)]
    return lines


def messages(out: list[ReplayRecord]) -> list[dict[str, Any]]:
    return [x.value for x in out if x.topic == "engage.messages"]


def ticks(r: Replay, start: int, end: int, step: int = 500) -> list[ReplayRecord]:
    out: list[ReplayRecord] = []
    for t in range(start, end + 1, step):
        out += list(r.advance(t))
    return out


def test_a_scheduled_send_snapshots_gates_and_throttles() -> None:
    r = replay(BroadcastEntry(spring(), 1, 0))
    out = list(r.run(population(n=45)))
    assert messages(out) == []  # before the send instant
    out = ticks(r, SEND_AT - SEC, SEND_AT + 10 * SEC)
    mails = messages(out)
    # ann and the 45; bob, cy, dee skipped by subscription state, vic excluded, zoe no buyer
    assert len(mails) == 46 and len({m["idempotency_key"] for m in mails}) == 46
    ann = next(m for m in mails if m["recipient"] == "ann@example.com")
    assert ann["subject"] == "Hi Ann" and ann["variables"] == {"name": "Ann", "code": "spring"}
    assert ann["source"] == "broadcast" and ann["campaign_key"] == "spring"
    assert ann["at"] == SEND_AT  # the snapshot instant (the first tick at or after it)
    (prog,) = read_progress(Transaction(r.db))
    assert (prog.phase, prog.total, prog.sent, prog.profiles) == ("sent", 46, 46, 49)
    assert prog.skipped == {"unsubscribed": 1, "did_not_subscribe": 1, "none": 1}
    # 10 messages/s: 46 requests take 4.6 s of partition clock from the snapshot
    assert prog.finished is not None and prog.finished - prog.started == 5 * SEC
    progress = [x.value for x in out if x.topic == "engage.broadcast-progress"]
    assert progress[-1]["phase"] == "sent" and progress[0]["sent"] == 0


def test_the_recipient_set_is_fixed_at_the_snapshot() -> None:
    r = replay(BroadcastEntry(spring(rate=1), 1, 0))
    list(r.run(population()))
    list(r.advance(SEND_AT))  # the snapshot: ann only
    late = [identify("late", SEND_AT + 1), order("late", SEND_AT + 2)]
    list(r.run(late))
    mails = messages(ticks(r, SEND_AT + SEC, SEND_AT + 5 * SEC))
    assert [m["recipient"] for m in mails] == ["ann@example.com"]


def test_received_broadcast_is_an_audience_condition() -> None:
    r = replay(BroadcastEntry(spring(), 1, 0))
    list(r.run(population()))
    out = ticks(r, SEND_AT, SEND_AT + 2 * SEC)
    out += list(r.advance(SEND_AT + 3 * SEC))
    changes = [x.value for x in out if x.topic == "engage.changes"]
    assert [(c["key"], c["value"]) for c in changes] == [("received_spring", True)]


def test_cancel_stops_a_send_in_progress() -> None:
    entry = BroadcastEntry(spring(rate=2), 1, 0)
    r = replay(entry)
    list(r.run(population(n=10)))
    first = messages(ticks(r, SEND_AT, SEND_AT + 2 * SEC))
    assert len(first) == 4
    cancelled = spring(rate=2, status="cancelled")
    r.stage.use(
        Catalog(
            dict(r.stage.catalog.entries),
            broadcasts=BroadcastCatalog({"spring": BroadcastEntry(cancelled, 1, 0)}),
        )
    )
    assert messages(ticks(r, SEND_AT + 3 * SEC, SEND_AT + 20 * SEC)) == []
    (prog,) = read_progress(Transaction(r.db))
    assert (prog.phase, prog.sent, prog.total) == ("cancelled", 4, 11)
    assert not list(Transaction(r.db).range(b"q:", b"q:\xff"))  # the queue is gone
    # scheduled again at the same version: what was cancelled stays cancelled
    r.stage.use(
        Catalog(dict(r.stage.catalog.entries), broadcasts=BroadcastCatalog({"spring": entry}))
    )
    assert messages(ticks(r, SEND_AT + 21 * SEC, SEND_AT + 25 * SEC)) == []


def test_drafts_and_future_schedules_send_nothing_and_reruns_repeat_the_keys() -> None:
    r = replay(BroadcastEntry(spring(status="draft"), 1, 0))
    list(r.run(population()))
    assert messages(ticks(r, SEND_AT, SEND_AT + 5 * SEC)) == []
    keys = []
    for _ in range(2):
        r = replay(BroadcastEntry(spring(), 1, 0))
        list(r.run(population(n=3)))
        keys.append(
            sorted(m["idempotency_key"] for m in messages(ticks(r, SEND_AT, SEND_AT + 5 * SEC)))
        )
    assert keys[0] == keys[1] and len(keys[0]) == 4
    # another version of the content: other keys (its recipients get it as a new message)
    r = replay(BroadcastEntry(spring(template="spring_sale_v2"), 2, 0))
    list(r.run(population(n=3)))
    v2 = sorted(m["idempotency_key"] for m in messages(ticks(r, SEND_AT, SEND_AT + 5 * SEC)))
    assert set(v2).isdisjoint(keys[0])


def test_email_may_go_to_every_subscription_state() -> None:
    r = replay(BroadcastEntry(spring(subscription="all"), 1, 0))
    list(r.run(population()))
    mails = messages(ticks(r, SEND_AT, SEND_AT + 5 * SEC))
    assert sorted(m["recipient"].split("@")[0] for m in mails) == ["ann", "bob", "cy", "dee"]
