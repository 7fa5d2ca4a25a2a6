"""Output records: the exact Segment payload shapes (reference §3.2/§3.3)."""

from __future__ import annotations

import orjson
import pytest

from engage_stream.config import Topics
from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition
from engage_stream.engine.changes import Change
from engage_stream.outputs.records import OutputRecord, build_records, identities, iso_ms
from engage_stream.profiles.record import ExternalId, ProfileRecord

SPACE = "spa_test"
AT = 1_735_689_600_123  # 2025-01-01T00:00:00.123Z


def profile(*ids: tuple[str, str], pid: str = "use_1") -> ProfileRecord:
    return ProfileRecord(
        pid,
        external_ids=[ExternalId(t, v, "accounts" if t == "group_id" else "users") for t, v in ids],
    )


def audience(**kw: object) -> AudienceDefinition:
    base: dict[str, object] = {
        "key": "first_time_shopper",
        "conditions": [{"event": "Order Completed", "count": "= 1"}],
    }
    return AudienceDefinition.model_validate(base | kw)


def trait(**kw: object) -> ComputedTraitDefinition:
    base: dict[str, object] = {
        "key": "total_revenue_180_days",
        "type": "sum",
        "event": "Order Completed",
        "property": "revenue",
        "within": "180 days",
    }
    return ComputedTraitDefinition.model_validate(base | kw)


def change(
    kind: str = "audience", value: object = True, previous: object = False, **kw: object
) -> Change:
    args: dict[str, object] = {
        "kind": kind,
        "key": "first_time_shopper" if kind == "audience" else "total_revenue_180_days",
        "version": 3,
        "profile_id": "use_1",
        "value": value,
        "previous": previous,
        "at": AT,
        "cause": "event:msg-1",
    }
    return Change(**(args | kw))  # type: ignore[arg-type]


def payloads(records: list[OutputRecord]) -> list[tuple[str | None, dict]]:  # type: ignore[type-arg]
    return [(r.destination, orjson.loads(r.value)) for r in records]


def personas(defn: AudienceDefinition | ComputedTraitDefinition) -> dict[str, str]:
    return {
        "computation_class": "audience" if defn.kind == "audience" else "trait",
        "computation_id": defn.computation_id(defn.computation_prefix),
        "computation_key": defn.key,
        "namespace": SPACE,
        "space_id": SPACE,
    }


def test_iso_ms() -> None:
    assert iso_ms(AT) == "2025-01-01T00:00:00.123Z"


def test_iso_ms_agrees_with_datetime_over_the_whole_range() -> None:
    import random
    from datetime import UTC, datetime, timedelta

    rng = random.Random(3)
    samples = [0, 1, 999, 86_399_999, 86_400_000, 951_782_400_000, 10**13 - 1]
    samples += [rng.randrange(0, 10**13) for _ in range(5000)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for ms in samples:
        want = (epoch + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
        assert iso_ms(ms) == want.replace("+00:00", "Z"), ms
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"


def test_audience_enter_identify_and_track() -> None:
    d = audience(destinations=[{"name": "braze", "identify": True, "track": True}])
    ch = change()
    p = profile(("user_id", "u123"), ("anonymous_id", "a1"), ("email", "u@example.com"))
    recs = build_records(ch, p, d, SPACE)
    assert [r.destination for r in recs] == [None, "braze", "braze"]
    assert all(r.key == b"use_1" for r in recs)
    mid = ch.message_id
    assert [r.message_id for r in recs] == [mid, f"{mid}-0", f"{mid}-1"]
    (_, identify), (_, track) = payloads(recs)[1:]
    assert identify == {
        "type": "identify",
        "userId": "u123",
        "messageId": f"{mid}-0",
        "timestamp": "2025-01-01T00:00:00.123Z",
        "traits": {"first_time_shopper": True, "email": "u@example.com"},
        "context": {"personas": personas(d)},
        "integrations": {"All": False, "braze": True},
    }
    assert track == {
        "type": "track",
        "event": "Audience Entered",
        "userId": "u123",
        "messageId": f"{mid}-1",
        "timestamp": "2025-01-01T00:00:00.123Z",
        "properties": {"audience_key": "first_time_shopper", "first_time_shopper": True},
        "context": {"personas": personas(d), "traits": {"email": "u@example.com"}},
        "integrations": {"All": False, "braze": True},
    }
    assert personas(d)["computation_id"].startswith("aud_")


def test_audience_exit_and_renamed_events() -> None:
    d = audience(
        destinations=[
            {"name": "braze", "identify": False, "track": True, "exited_event": "Left VIP"},
            {"name": "warehouse", "identify": False, "track": True},
        ]
    )
    recs = build_records(change(value=False, previous=True), profile(("user_id", "u1")), d, SPACE)
    got = payloads(recs)
    assert [(dest, p["event"]) for dest, p in got[1:]] == [
        ("braze", "Left VIP"),
        ("warehouse", "Audience Exited"),
    ]
    assert got[1][1]["properties"] == {
        "audience_key": "first_time_shopper",
        "first_time_shopper": False,
    }
    assert got[2][1]["integrations"] == {"All": False, "warehouse": True}
    assert "traits" not in got[1][1]["context"]  # no email on the profile
    d2 = audience(destinations=[{"name": "braze", "entered_event": "Joined VIP", "track": True}])
    (_, ident), (_, track) = payloads(
        build_records(change(), profile(("user_id", "u1")), d2, SPACE)
    )[1:]
    assert ident["traits"] == {"first_time_shopper": True}
    assert track["event"] == "Joined VIP"


def test_single_destination_call_keeps_the_change_message_id() -> None:
    d = audience(destinations=[{"name": "google_ads"}])
    ch = change()
    recs = build_records(ch, profile(("user_id", "u1")), d, SPACE)
    assert [r.message_id for r in recs] == [ch.message_id, ch.message_id]
    assert orjson.loads(recs[1].value)["messageId"] == ch.message_id


def test_trait_identify_and_track() -> None:
    d = trait(destinations=[{"name": "braze", "track": True}])
    ch = change("computed_trait", 450.0, 300.5)
    recs = build_records(ch, profile(("user_id", "u123"), ("email", "e@x.io")), d, SPACE)
    (_, identify), (_, track) = payloads(recs)[1:]
    assert identify == {
        "type": "identify",
        "userId": "u123",
        "messageId": f"{ch.message_id}-0",
        "timestamp": "2025-01-01T00:00:00.123Z",
        "traits": {"total_revenue_180_days": 450.0, "email": "e@x.io"},
        "context": {"personas": personas(d)},
        "integrations": {"All": False, "braze": True},
    }
    assert track == {
        "type": "track",
        "event": "Trait Computed",
        "userId": "u123",
        "messageId": f"{ch.message_id}-1",
        "timestamp": "2025-01-01T00:00:00.123Z",
        "properties": {"trait_key": "total_revenue_180_days", "total_revenue_180_days": 450.0},
        "context": {"personas": personas(d), "traits": {"email": "e@x.io"}},
        "integrations": {"All": False, "braze": True},
    }
    assert personas(d)["computation_class"] == "trait"
    assert personas(d)["computation_id"].startswith("tra_")


def test_renamed_trait_event_and_cleared_value() -> None:
    d = trait(
        destinations=[
            {"name": "braze", "identify": False, "track": True, "track_event": "LTV Updated"}
        ]
    )
    (_, track) = payloads(
        build_records(change("computed_trait", None, 1.0), profile(("user_id", "u")), d, SPACE)
    )[1]
    assert track["event"] == "LTV Updated"
    assert track["properties"] == {
        "trait_key": "total_revenue_180_days",
        "total_revenue_180_days": None,
    }


def test_explicit_computation_id() -> None:
    d = audience(id="aud_2abc", destinations=[{"name": "braze"}])
    (_, ident) = payloads(build_records(change(), profile(("user_id", "u")), d, SPACE))[1]
    assert ident["context"]["personas"]["computation_id"] == "aud_2abc"


def test_multiple_emails_fan_out_one_call_per_value() -> None:
    d = audience(destinations=[{"name": "braze", "track": True}, {"name": "google_ads"}])
    p = profile(
        ("user_id", "u1"),
        ("email", "first@x.io"),
        ("anonymous_id", "anon-1"),
        ("email", "second@x.io"),
        ("email", "third@x.io"),
        ("group_id", "acct_1"),
    )
    ch = change()
    recs = build_records(ch, p, d, SPACE)
    got = payloads(recs)[1:]
    summary = [
        (
            dest,
            x["type"],
            x.get("userId"),
            x.get("anonymousId"),
            x.get("traits", {}).get("email") or x["context"].get("traits", {}).get("email"),
            x["messageId"],
        )
        for dest, x in got
    ]
    mid = ch.message_id
    assert summary == [
        ("braze", "identify", "u1", None, "first@x.io", f"{mid}-0"),
        ("braze", "identify", "u1", None, "second@x.io", f"{mid}-1"),
        ("braze", "identify", "u1", None, "third@x.io", f"{mid}-2"),
        ("braze", "track", "u1", None, "first@x.io", f"{mid}-3"),
        ("braze", "track", "u1", None, "second@x.io", f"{mid}-4"),
        ("braze", "track", "u1", None, "third@x.io", f"{mid}-5"),
        ("google_ads", "identify", "u1", None, "first@x.io", f"{mid}-6"),
        ("google_ads", "identify", "u1", None, "second@x.io", f"{mid}-7"),
        ("google_ads", "identify", "u1", None, "third@x.io", f"{mid}-8"),
    ]
    assert len({r.message_id for r in recs}) == len(recs)


def test_multiple_user_ids_and_include_anonymous() -> None:
    p = profile(
        ("user_id", "u1"), ("anonymous_id", "a1"), ("anonymous_id", "a2"), ("user_id", "u2")
    )
    assert [(i.user_id, i.anonymous_id, i.email) for i in identities(p, False)] == [
        ("u1", None, None),
        ("u2", None, None),
    ]
    p.external_ids.append(ExternalId("anonymous_id", "a3"))
    assert [(i.user_id, i.anonymous_id) for i in identities(p, True)] == [
        ("u1", "a1"),
        ("u2", "a2"),
        ("u1", "a3"),
    ]


def test_anonymous_only_profile() -> None:
    p = profile(("anonymous_id", "anon-7"), ("anonymous_id", "anon-8"), pid="anonymous_id:anon-7")
    d = audience(destinations=[{"name": "braze", "track": True}])
    ch = change(profile_id="anonymous_id:anon-7")
    got = payloads(build_records(ch, p, d, SPACE))[1:]
    # without include_anonymous: the first anonymous id, so the call is addressable
    assert [(x["type"], x.get("userId"), x["anonymousId"]) for _, x in got] == [
        ("identify", None, "anon-7"),
        ("track", None, "anon-7"),
    ]
    assert got[0][1]["traits"] == {"first_time_shopper": True}
    assert "traits" not in got[1][1]["context"]
    # with include_anonymous: one call per anonymous id
    d2 = audience(include_anonymous=True, destinations=[{"name": "braze"}])
    got2 = payloads(build_records(ch, p, d2, SPACE))[1:]
    assert [x["anonymousId"] for _, x in got2] == ["anon-7", "anon-8"]


def test_profile_without_identifiers_gets_only_the_all_changes_record() -> None:
    d = audience(destinations=[{"name": "braze"}])
    recs = build_records(change(), profile(("group_id", "acct_1")), d, SPACE)
    assert [r.destination for r in recs] == [None]


def test_all_changes_record() -> None:
    d = audience()  # no destinations: still one record on the all-changes topic
    p = profile(("user_id", "u1"), ("email", "e@x.io"), ("group_id", "acct_9"))
    ch = change(cause="timer:1735689600123")
    (rec,) = build_records(ch, p, d, SPACE)
    assert rec.destination is None and rec.key == b"use_1" and rec.message_id == ch.message_id
    assert orjson.loads(rec.value) == {
        "message_id": ch.message_id,
        "kind": "audience",
        "key": "first_time_shopper",
        "version": 3,
        "profile_id": "use_1",
        "value": True,
        "previous": False,
        "at": "2025-01-01T00:00:00.123Z",
        "at_ms": AT,
        "cause": "timer:1735689600123",
        "external_ids": [
            {"type": "user_id", "id": "u1", "collection": "users"},
            {"type": "email", "id": "e@x.io", "collection": "users"},
            {"type": "group_id", "id": "acct_9", "collection": "accounts"},
        ],
        "space_id": SPACE,
    }
    assert list(orjson.loads(rec.value)) == [
        "message_id",
        "kind",
        "key",
        "version",
        "profile_id",
        "value",
        "previous",
        "at",
        "at_ms",
        "cause",
        "external_ids",
        "space_id",
    ]


def test_deterministic_bytes_and_ids() -> None:
    d = audience(
        destinations=[
            {"name": "braze", "track": True},
            {"name": "warehouse", "identify": False, "track": True},
        ]
    )
    p = profile(("user_id", "u1"), ("email", "a@x.io"), ("email", "b@x.io"))
    first = build_records(change(), p, d, SPACE)
    again = build_records(change(), ProfileRecord.loads(p.dumps()), d, SPACE)
    assert first == again
    other_cause = build_records(change(cause="event:msg-2"), p, d, SPACE)
    assert {r.message_id for r in first}.isdisjoint(r.message_id for r in other_cause)
    assert all(len(r.message_id) <= 100 for r in first)  # Segment's messageId limit


def test_topic_routing() -> None:
    topics = Topics()
    d = audience(destinations=[{"name": "braze"}])
    recs = build_records(change(), profile(("user_id", "u1")), d, SPACE)
    assert [r.topic(topics) for r in recs] == ["engage.changes", "engage.out.braze"]


def test_mismatched_definition_is_rejected() -> None:
    with pytest.raises(ValueError, match="does not belong"):
        build_records(change("computed_trait", 1), profile(("user_id", "u")), audience(), SPACE)
