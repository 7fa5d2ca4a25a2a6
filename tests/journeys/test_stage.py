"""Journeys through the profiles stage, in process (`Replay` drives the real identity and
profiles stages over memory): what reaches `engage.journeys`, the destinations and
`engage.messages`; versions, pause and archive; historical entry through the sweep;
merges; the 25-instance limit across journeys; counts in the partition state;
determinism."""

from __future__ import annotations

from typing import Any

import orjson

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog, Entry
from engage_stream.definitions.loader import parse_text
from engage_stream.journeys import counts
from engage_stream.journeys.catalog import JourneyCatalog, JourneyEntry
from engage_stream.journeys.models import JourneyDefinition
from engage_stream.replay import Replay, ReplayRecord
from engage_stream.state.transaction import Transaction
from engage_stream.timestamps import iso_ms

T0 = 1_800_000_000_000
MIN = 60_000
DAY = 86_400_000

AUDIENCES = """
kind: audience
key: carters
conditions:
  - event: Product Added
    within: 7 days
---
kind: audience
key: buyers
conditions:
  - event: Order Completed
"""


def definitions(text: str = AUDIENCES) -> dict[str, Entry]:
    found, problems = parse_text(text)
    assert not problems, problems
    return {d.key: Entry(d, 1, 0) for d, _ in found}


def journey(**body: Any) -> JourneyDefinition:
    return JourneyDefinition.model_validate({"kind": "journey", **body})


CART = journey(
    key="cart",
    entry={"audience": "carters"},
    steps=[
        {"type": "send_to_destination", "key": "ad", "destinations": ["ads"], "next": "w"},
        {"type": "wait", "key": "w", "duration": "3 days", "next": "bought"},
        {
            "type": "split",
            "key": "bought",
            "condition": [{"audience": "buyers"}],
            "if_false": "mail",
        },
        {
            "type": "send_message",
            "key": "mail",
            "channel": "email",
            "template": "cart_reminder",
            "variables": {"name": "{{traits.name}}"},
        },
    ],
)


def replay(*journeys: JourneyDefinition, text: str = AUDIENCES) -> Replay:
    return Replay(
        Catalog(definitions(text), journeys=JourneyCatalog.from_definitions(journeys)), Settings()
    )


def identify(user: str, at: int, subscribed: bool | None = None, **traits: Any) -> bytes:
    email = traits.setdefault("email", f"{user}@example.com")
    context: dict[str, Any] = {}
    if subscribed is not None:
        status = "SUBSCRIBED" if subscribed else "UNSUBSCRIBED"
        context["messaging_subscriptions"] = [{"key": email, "type": "EMAIL", "status": status}]
    return orjson.dumps(
        {
            "type": "identify",
            "userId": user,
            "traits": traits,
            "context": context,
            "timestamp": iso_ms(at),
            "messageId": f"i-{user}-{at}",
        }
    )


def track(user: str, event: str, at: int, **props: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "userId": user,
            "event": event,
            "properties": props,
            "timestamp": iso_ms(at),
            "messageId": f"t-{user}-{event}-{at}-{sorted(props.items())}",
        }
    )


def run(r: Replay, lines: list[bytes], until: int | None = None) -> list[ReplayRecord]:
    out = list(r.run(lines))
    if until is not None:
        out += list(r.advance(until))
    return out


def on(records: list[ReplayRecord], topic: str) -> list[dict[str, Any]]:
    return [x.value for x in records if x.topic == topic]


def log(records: list[ReplayRecord]) -> list[tuple[str, str, int]]:
    return [(v["type"], v["step"], v["at"]) for v in on(records, "engage.journeys")]


def journey_counts(r: Replay) -> dict[str, dict[str, int]]:
    return counts.read(Transaction(r.db))


def test_classic_journey_end_to_end() -> None:
    r = replay(CART)
    out = run(
        r,
        [
            identify("ann", T0, subscribed=True, name="Ann"),
            identify("bob", T0, name="Bob"),  # no subscription state: not mailed
            identify("cy", T0, subscribed=True, name="Cy"),
            track("ann", "Product Added", T0 + MIN),
            track("bob", "Product Added", T0 + MIN),
            track("cy", "Product Added", T0 + MIN),
            track("cy", "Order Completed", T0 + DAY),  # bought: the split says true
        ],
        until=T0 + 4 * DAY,
    )
    ads = on(out, "engage.out.ads")
    assert len(ads) == 3 and all(a["type"] == "identify" for a in ads)
    assert {a["userId"] for a in ads} == {"ann", "bob", "cy"}
    assert all(a["integrations"] == {"All": False, "ads": True} for a in ads)
    # the wait ends at its own instant (entered + 3 days), not when the clock was advanced
    waits = [v for v in on(out, "engage.journeys") if v["type"] == "step_exited"]
    assert {v["at"] for v in waits if v["step"] == "w"} == {T0 + MIN + 3 * DAY}
    mails = on(out, "engage.messages")
    assert [(m["recipient"], m["variables"]) for m in mails] == [
        ("ann@example.com", {"name": "Ann"})
    ]
    assert mails[0]["at"] == T0 + MIN + 3 * DAY and mails[0]["template"] == "cart_reminder"
    skipped = [v for v in on(out, "engage.journeys") if v["type"] == "message_skipped"]
    assert [(s["recipient"], s["reason"]) for s in skipped] == [("bob@example.com", "none")]
    c = journey_counts(r)["cart"]
    assert c["entered"] == 3 and c["completed"] == 3 and "active" not in c
    assert c["requested"] == 1 and c["skipped:none"] == 1 and c["reached:w"] == 3
    assert "step:w" not in c  # nobody waits any more


def test_a_pending_wait_is_counted_in_its_step_and_wakes_the_profile() -> None:
    r = replay(CART)
    run(r, [identify("ann", T0, subscribed=True), track("ann", "Product Added", T0)])
    c = journey_counts(r)["cart"]
    assert c["step:w"] == 1 and c["active"] == 1
    profile = next(p for p in map(r.profiles.get, r.profiles.profile_ids()) if p is not None)
    assert profile.journey_wakeup == T0 + 3 * DAY
    assert profile.wakeup == min(T0 + 3 * DAY, profile.next_wakeup or T0 + 3 * DAY)
    # the wake-up index holds the journey's instant: a tick just before fires nothing
    assert log(list(r.advance(T0 + 3 * DAY - 1))) == []
    fired = log(list(r.advance(T0 + 3 * DAY)))
    assert ("step_exited", "w", T0 + 3 * DAY) in fired


V2 = journey(
    key="trial",
    entry={"event": "Trial Started", "rule": "every_time", "unique_identifier": "trial_id"},
    exit={"events": [{"event": "Trial Cancelled", "match_identifier": True}]},
    steps=[
        {
            "type": "hold_until",
            "key": "hold",
            "max_hold": "2 days",
            "branches": [
                {"name": "paid", "event": "Subscribed", "next": "thanks"},
            ],
            "timeout_next": "nudge",
        },
        {
            "type": "send_to_destination",
            "key": "thanks",
            "destinations": ["crm"],
            "event": "Thanks",
        },
        {"type": "send_to_destination", "key": "nudge", "destinations": ["crm"], "event": "Nudge"},
    ],
)


def test_event_triggered_journey_routes_by_identifier_and_exits_during_a_hold() -> None:
    r = replay(V2)
    out = run(
        r,
        [
            identify("ann", T0),
            track("ann", "Trial Started", T0 + 1, trial_id="a", plan="pro"),
            track("ann", "Trial Started", T0 + 2, trial_id="b"),
            track("ann", "Trial Started", T0 + 3, trial_id="c"),
            track("ann", "Subscribed", T0 + MIN, trial_id="a", seats=3),
            track("ann", "Trial Cancelled", T0 + 2 * MIN, trial_id="b"),
        ],
        until=T0 + 3 * DAY,
    )
    crm = on(out, "engage.out.crm")
    assert [c["event"] for c in crm] == ["Thanks", "Nudge"]
    thanks = crm[0]["properties"]
    assert thanks["journey_context"]["Trial Started"] == {"trial_id": "a", "plan": "pro"}
    assert thanks["journey_context"]["Subscribed"] == {"trial_id": "a", "seats": 3}
    assert crm[0]["context"]["personas"]["computation_class"] == "journey_step"
    assert crm[1]["timestamp"] == iso_ms(T0 + 3 + 2 * DAY)  # c's hold timed out at its instant
    exits = [v for v in on(out, "engage.journeys") if v["type"] == "instance_exited"]
    assert [e["reason"] for e in exits] == ["exit_event"]
    c = journey_counts(r)["trial"]
    assert (c["entered"], c["completed"], c["exited"], c.get("active", 0)) == (3, 2, 1, 0)


def _with_journeys(r: Replay, *entries: JourneyEntry) -> None:
    cat = Catalog(
        dict(r.stage.catalog.entries), journeys=JourneyCatalog({e.key: e for e in entries})
    )
    r.stage.use(cat)


def test_historical_entry_only_for_members_when_the_version_is_published() -> None:
    hist = journey(
        key="hist",
        entry={"audience": "carters", "use_historical_data": True},
        steps=[{"type": "wait", "key": "w", "duration": "1 day"}],
    )
    plain = journey(
        key="plain",
        entry={"audience": "carters"},
        steps=[{"type": "wait", "key": "w", "duration": "1 day"}],
    )
    r = replay()
    run(r, [identify("ann", T0), track("ann", "Product Added", T0), identify("bob", T0)])
    _with_journeys(r, JourneyEntry(hist, 1, T0 + MIN), JourneyEntry(plain, 1, T0 + MIN))
    out = run(r, [identify("zed", T0 + MIN)])  # any batch: the sweep runs first
    entered = [v for v in on(out, "engage.journeys") if v["type"] == "instance_entered"]
    assert [(v["journey"], v["cause"]) for v in entered] == [("hist", "historical:1")]
    # a later touch of the same member does not enter it again, nor the other journey
    again = run(r, [identify("ann", T0 + 2 * MIN, plan="x")])
    assert [v for v in on(again, "engage.journeys") if v["type"] == "instance_entered"] == []


def test_paused_journey_takes_no_one_and_does_not_queue_them() -> None:
    r = replay(CART)
    paused = CART.model_copy(update={"status": "paused"})
    _with_journeys(r, JourneyEntry(paused, 1, 0))
    out = run(r, [identify("ann", T0), track("ann", "Product Added", T0)])
    assert on(out, "engage.journeys") == []
    _with_journeys(r, JourneyEntry(CART, 1, 0))  # resumed: the same version
    out = run(r, [track("ann", "Product Added", T0 + MIN)], until=T0 + DAY)
    assert on(out, "engage.journeys") == []  # ann qualified while paused: not queued
    out = run(r, [track("bob", "Product Added", T0 + DAY + 1)])
    assert [v["type"] for v in on(out, "engage.journeys")][:1] == ["instance_entered"]


def test_new_version_drains_or_archives_the_previous() -> None:
    v2_steps = [{"type": "wait", "key": "w", "duration": "1 day"}]
    for policy, reason in (("drain", None), ("archive", "archived")):
        r = replay(CART)
        run(r, [identify("ann", T0, subscribed=True), track("ann", "Product Added", T0)])
        new = CART.model_copy(
            update={
                "steps": journey(key="x", entry={"audience": "carters"}, steps=v2_steps).steps,
                "on_new_version": policy,
            }
        )
        _with_journeys(r, JourneyEntry(new, 2, T0 + MIN, previous=((1, CART),)))
        out = run(r, [identify("bob", T0 + MIN)], until=T0 + 4 * DAY)
        recs = on(out, "engage.journeys")
        ann = [v for v in recs if v["version"] == 1]
        if reason is None:  # ann finishes version 1: her mail goes out at its instant
            assert [m["version"] for m in on(out, "engage.messages")] == [1]
            assert ann[-1]["type"] == "instance_completed"
        else:
            assert on(out, "engage.messages") == []
            assert [v["reason"] for v in ann if v["type"] == "instance_exited"] == [reason]
        assert [v for v in recs if v["version"] == 2] == []  # ann entered v1, not re-entered


def test_archived_journey_ends_every_instance() -> None:
    r = replay(CART)
    run(r, [identify("ann", T0), track("ann", "Product Added", T0)])
    _with_journeys(r, JourneyEntry(CART.model_copy(update={"status": "archived"}), 1, 0))
    out = run(r, [identify("zed", T0 + MIN)])
    exits = [v for v in on(out, "engage.journeys") if v["type"] == "instance_exited"]
    # at the partition clock when the archive reached the partition (its last event)
    assert [(e["reason"], e["at"]) for e in exits] == [("archived", T0)]
    assert journey_counts(r)["cart"].get("active", 0) == 0
    assert on(run(r, [track("bob", "Product Added", T0 + 2 * MIN)]), "engage.journeys") == []


def test_instances_limit_counts_across_journeys() -> None:
    many = [
        journey(
            key=f"j{i}",
            entry={"event": "Go", "rule": "every_time", "unique_identifier": "n"},
            steps=[{"type": "wait", "key": "w", "duration": "1 day"}],
        )
        for i in range(3)
    ]
    r = replay(*many)
    out = run(r, [identify("ann", T0), *(track("ann", "Go", T0 + i, n=i) for i in range(10))])
    recs = on(out, "engage.journeys")
    assert sum(v["type"] == "instance_entered" for v in recs) == 25
    assert sum(v["type"] == "entry_skipped" and v["reason"] == "max_instances" for v in recs) == 5


def test_merged_profiles_carry_their_journey_instances() -> None:
    # anonymous profiles count for this audience, so the device enters before the login
    r = replay(
        CART, text=AUDIENCES.replace("key: carters\n", "key: carters\ninclude_anonymous: true\n")
    )
    anon = orjson.dumps(
        {
            "type": "track",
            "anonymousId": "dev-1",
            "event": "Product Added",
            "timestamp": iso_ms(T0),
            "messageId": "anon-add",
        }
    )
    login = orjson.dumps(
        {
            "type": "identify",
            "userId": "ann",
            "anonymousId": "dev-1",
            "traits": {"email": "ann@example.com"},
            "context": {
                "messaging_subscriptions": [
                    {"key": "ann@example.com", "type": "EMAIL", "status": "subscribed"}
                ]
            },
            "timestamp": iso_ms(T0 + MIN),
            "messageId": "login",
        }
    )
    out = run(r, [identify("ann", T0 - DAY, subscribed=None), anon, login], until=T0 + 4 * DAY)
    entered = [v for v in on(out, "engage.journeys") if v["type"] == "instance_entered"]
    assert len(entered) == 1 and entered[0]["at"] == T0  # the device's, now the person's
    mails = on(out, "engage.messages")
    assert [m["recipient"] for m in mails] == ["ann@example.com"]
    assert mails[0]["instance_id"] == entered[0]["instance_id"]
    assert mails[0]["at"] == T0 + 3 * DAY


def test_replays_are_byte_identical() -> None:
    lines = [
        identify("ann", T0, subscribed=True, name="Ann"),
        track("ann", "Product Added", T0 + MIN),
        track("ann", "Trial Started", T0 + 2, trial_id="a"),
        identify("bob", T0),
        track("bob", "Product Added", T0 + 2 * MIN),
    ]
    a = [x.to_json() for x in run(replay(CART, V2), lines, until=T0 + 5 * DAY)]
    b = [x.to_json() for x in run(replay(CART, V2), lines, until=T0 + 5 * DAY)]
    assert a == b and any(b'"engage.messages"' in x for x in a)
    # advancing the clock in many small steps gives the same records as one big step
    r = replay(CART, V2)
    c = [x.to_json() for x in run(r, lines)]
    for t in range(T0 + 3 * MIN, T0 + 5 * DAY, 7 * 3_600_000):
        c += [x.to_json() for x in r.advance(t)]
    c += [x.to_json() for x in r.advance(T0 + 5 * DAY)]
    assert sorted(c) == sorted(a)


ALL_STEPS = journey(
    key="tour",
    entry={"audience": "carters"},
    steps=[
        {
            "type": "random_split",
            "key": "ab",
            "branches": [
                {"name": "A", "percent": 50, "next": "branches"},
                {"name": "B", "percent": 50, "next": "branches"},
            ],
        },
        {
            "type": "multi_split",
            "key": "branches",
            "branches": [
                {
                    "name": "pro",
                    "condition": [{"trait": "plan", "operator": "=", "value": "pro"}],
                    "next": "until_buyer",
                },
                {
                    "name": "any",
                    "condition": [{"trait": "plan", "operator": "exists"}],
                    "next": "join",
                },
            ],
        },
        {
            "type": "wait_until",
            "key": "until_buyer",
            "condition": [{"audience": "buyers"}],
            "max_wait": "1 day",
            "next": "join",
            "timeout_next": "stop",
        },
        {"type": "goto", "key": "join", "target": "ad"},
        {"type": "send_to_destination", "key": "ad", "destinations": ["ads"]},
        {"type": "exit", "key": "stop"},
    ],
)


def test_every_other_step_type_through_the_stage() -> None:
    r = replay(ALL_STEPS)
    out = run(
        r,
        [
            identify("ann", T0, plan="pro"),
            identify("bob", T0, plan="pro"),
            identify("cy", T0, plan="free"),
            track("ann", "Product Added", T0 + 1),
            track("bob", "Product Added", T0 + 1),
            track("cy", "Product Added", T0 + 1),
            track("ann", "Order Completed", T0 + MIN),  # ann's wait_until is met by a change
        ],
        until=T0 + 2 * DAY,
    )
    recs = on(out, "engage.journeys")
    by: dict[str, list[tuple[str, str, str]]] = {}
    for v in recs:
        by.setdefault(v["profile_id"], []).append((v["type"], v["step"], v.get("branch", "")))
    ends = {
        pid: [x for x in steps if x[0].startswith("instance_")][-1][0] for pid, steps in by.items()
    }
    assert sorted(ends.values()) == ["instance_completed", "instance_completed", "instance_exited"]
    # the pro users take both multi-split branches (`any` reaches the ad at once); ann's
    # wait is met later and joins `ad` again, which sends only once; bob's times out
    ads = on(out, "engage.out.ads")
    assert sorted(a["userId"] for a in ads) == ["ann", "bob", "cy"]
    for steps in by.values():
        assert sum(1 for s in steps if s[:2] == ("destination_send", "ad")) == 1
        assert [s[2] for s in steps if s[:2] == ("step_exited", "ab")][0] in ("A", "B")
    waits = [v for v in recs if v["step"] == "until_buyer" and v["type"] == "step_exited"]
    assert sorted((v["branch"], v["at"]) for v in waits) == [
        ("met", T0 + MIN),
        ("timeout", T0 + 1 + DAY),
    ]
    exits = [v for v in recs if v["type"] == "instance_exited"]
    assert [e["reason"] for e in exits] == ["exit_step"]
