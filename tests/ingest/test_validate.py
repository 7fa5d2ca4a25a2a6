"""Segment Spec validation and normalisation (reference §9) — table-driven."""

from __future__ import annotations

import orjson
import pytest

from engage_stream.ingest.validate import InvalidEvent, Reason, parse_message

BASE = {"userId": "u1", "messageId": "m1", "timestamp": "2026-01-01T00:00:00Z"}


def raw(**fields: object) -> bytes:
    return orjson.dumps({**BASE, **fields})


def nested(depth: int, kind: str = "[") -> object:
    """A value nested `depth` objects/arrays deep (itself included)."""
    v: object = 1
    for _ in range(depth):
        v = [v] if kind == "[" else {"a": v}
    return v


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", Reason.MALFORMED_JSON),
        (b"", Reason.MALFORMED_JSON),
        (b"[1,2]", Reason.NOT_AN_OBJECT),
        (b'"track"', Reason.NOT_AN_OBJECT),
        (raw(type="teleport"), Reason.UNKNOWN_TYPE),
        (orjson.dumps({"event": "X", "userId": "u"}), Reason.UNKNOWN_TYPE),
        (orjson.dumps({"type": "track", "event": "X"}), Reason.MISSING_ID),
        (
            orjson.dumps({"type": "track", "event": "X", "userId": "", "anonymousId": ""}),
            Reason.MISSING_ID,
        ),
        (raw(type="track", event="X", messageId="m" * 101), Reason.MESSAGE_ID_TOO_LONG),
        (raw(type="track", event="X", userId=42), Reason.INVALID_FIELD),
        (raw(type="track"), Reason.INVALID_FIELD),  # event is required
        (raw(type="track", event=""), Reason.INVALID_FIELD),
        (raw(type="track", event="X", properties=[1]), Reason.INVALID_FIELD),
        (raw(type="track", event="X", timestamp="yesterday"), Reason.INVALID_FIELD),
        (raw(type="track", event="X", timestamp="2026-01-01T00:00:00"), Reason.INVALID_FIELD),
        (raw(type="group"), Reason.INVALID_FIELD),  # groupId required
        (raw(type="group", groupId="g" * 501), Reason.INVALID_FIELD),
        (raw(type="alias"), Reason.INVALID_FIELD),  # previousId required
        (raw(type="identify", traits={f"t{i}": i for i in range(300)}), Reason.INVALID_FIELD),
        (raw(type="track", event="X", properties={"blob": "x" * 33_000}), Reason.OVERSIZE),
        # NUL separates the parts of state keys: an id holding one could read another's
        (raw(type="track", event="X", userId="a\x00b"), Reason.INVALID_FIELD),
        (raw(type="track", event="X", userId=None, anonymousId="a\x00"), Reason.INVALID_FIELD),
        (raw(type="track", event="X", messageId="m\x001"), Reason.INVALID_FIELD),
        (raw(type="group", groupId="g\x00"), Reason.INVALID_FIELD),
        (raw(type="track", event="X", groupId="g\x00"), Reason.INVALID_FIELD),  # undeclared
        (raw(type="alias", previousId="p\x00"), Reason.INVALID_FIELD),
        # event times outside 1970 .. 2286 (reference §8; 13-digit ms in keys)
        (raw(type="track", event="X", timestamp="1969-12-31T23:59:59Z"), Reason.INVALID_FIELD),
        (raw(type="track", event="X", timestamp="0001-01-01T00:00:00+01:00"), Reason.INVALID_FIELD),
        (raw(type="track", event="X", timestamp="9999-12-31T23:59:59-01:00"), Reason.INVALID_FIELD),
        (raw(type="track", event="X", receivedAt="2300-01-01T00:00:00Z"), Reason.INVALID_FIELD),
        (
            raw(
                type="track",
                event="X",
                timestamp=None,
                originalTimestamp="2026-01-01T00:00:00Z",
                sentAt="2226-01-01T00:00:00Z",
            ),
            Reason.INVALID_FIELD,  # skew correction lands before 1970
        ),
        # #15.5 / #16.6: only ISO-8601 strings are times; nothing before 1970
        (raw(type="track", event="X", timestamp=1700000000), Reason.INVALID_FIELD),
        (raw(type="track", event="X", sentAt=1700000000000), Reason.INVALID_FIELD),
        (raw(type="track", event="X", timestamp="1700000000"), Reason.INVALID_FIELD),
        (raw(type="track", event="X", timestamp=1.5), Reason.INVALID_FIELD),
        (raw(type="track", event="X", timestamp=True), Reason.INVALID_FIELD),
        (raw(type="track", event="X", sentAt="1969-12-31T23:59:59Z"), Reason.INVALID_FIELD),
        (
            raw(type="track", event="X", originalTimestamp="1969-01-01T00:00:00Z"),
            Reason.INVALID_FIELD,
        ),
        # whitespace is no id
        (raw(type="track", event="X", userId="   "), Reason.MISSING_ID),
        (raw(type="track", event="X", userId="\t\n", anonymousId=" "), Reason.MISSING_ID),
        # nesting (#15.1): the normalised event could not be written as JSON again
        (raw(type="track", event="X", properties={"x": nested(65)}), Reason.TOO_DEEP),
        (
            b'{"type":"identify","userId":"u","traits":{"x":'
            + b'{"a":' * 300
            + b"1"
            + b"}" * 300
            + b"}}",
            Reason.TOO_DEEP,  # the 1,951-byte record of the issue was of this kind
        ),
        (
            b'{"type":"track","event":"X","userId":"u","p":' + b"[" * 2000 + b"]" * 2000 + b"}",
            Reason.MALFORMED_JSON,
        ),
    ],
)
def test_invalid_messages_get_a_reason(data: bytes, reason: Reason) -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse_message(data, received_at_ms=0)
    assert exc.value.reason == reason
    assert exc.value.detail


def test_track_normalised() -> None:
    e = parse_message(
        raw(
            type="track",
            event="Order Completed",
            properties={"revenue": 9.5},
            context={"ip": "1.2.3.4"},
        ),
        0,
    )
    assert (e.type, e.event, e.user_id, e.message_id) == ("track", "Order Completed", "u1", "m1")
    assert e.properties == {"revenue": 9.5}
    assert e.timestamp == 1767225600000
    assert e.context == {"ip": "1.2.3.4"}


@pytest.mark.parametrize(
    ("kind", "event", "name_prop"),
    [("page", "Page Viewed", "page_name"), ("screen", "Screen Viewed", "screen_name")],
)
def test_page_and_screen_are_seen_as_viewed_events(kind: str, event: str, name_prop: str) -> None:
    e = parse_message(raw(type=kind, name="Pricing", properties={"url": "/p"}), 0)
    assert e.event == event
    assert e.properties == {"url": "/p", name_prop: "Pricing"}


def test_anonymous_only_is_accepted() -> None:
    e = parse_message(orjson.dumps({"type": "page", "anonymousId": "a1"}), 5000)
    assert (e.user_id, e.anonymous_id) == (None, "a1")
    assert e.timestamp == e.received_at == 5000, "no timestamp: the receive time is used"


def test_clock_skew_correction() -> None:
    """timestamp = receivedAt - (sentAt - originalTimestamp)."""
    e = parse_message(
        raw(
            type="track",
            event="X",
            originalTimestamp="2026-01-01T00:00:00Z",
            timestamp=None,
            sentAt="2026-01-01T00:00:10Z",
            receivedAt="2026-01-01T00:00:05Z",
        ),
        0,
    )
    assert e.timestamp == 1767225600000 - 5000
    assert e.received_at == 1767225605000


def test_manual_timestamp_without_sent_at_is_kept() -> None:
    e = parse_message(raw(type="track", event="X", timestamp="2020-05-01T12:00:00+02:00"), 99)
    assert e.timestamp == 1588327200000
    assert e.received_at == 99


def test_missing_message_id_gets_a_deterministic_one() -> None:
    data = orjson.dumps({"type": "track", "userId": "u", "event": "X"})
    assert parse_message(data, 0).message_id == parse_message(data, 0).message_id
    assert parse_message(data, 0).message_id.startswith("gen-")


def test_round_trip_through_internal_json() -> None:
    from engage_stream.events import ProfileEvent

    e = parse_message(raw(type="identify", traits={"plan": "pro", "nested": {"a": [1]}}), 0)
    e.profile_id = "user_id:u1"
    assert ProfileEvent.from_json(e.to_json()) == e


# -- the fast path agrees with the models -------------------------------------------------


def _models_only(data: bytes, received: int) -> tuple[str, object]:
    """What the pydantic models alone say about a message: the event's JSON or the reason."""
    from engage_stream.ingest.validate import parse_object

    try:
        obj = orjson.loads(data)
        return "ok", parse_object(obj, received, data).to_json()
    except InvalidEvent as exc:
        return "invalid", exc.reason
    except orjson.JSONDecodeError:
        return "invalid", Reason.MALFORMED_JSON


def _both(data: bytes, received: int = 7) -> tuple[tuple[str, object], tuple[str, object]]:
    try:
        got: tuple[str, object] = ("ok", parse_message(data, received).to_json())
    except InvalidEvent as exc:
        got = ("invalid", exc.reason)
    return got, _models_only(data, received)


VARIANTS: list[dict[str, object]] = [
    {"type": "track", "event": "X"},
    {"type": "track", "event": "X", "properties": {"a": 1}, "context": {"ip": "1"}},
    {"type": "track", "event": "X", "properties": None},
    {"type": "track", "event": "X", "context": None},
    {"type": "track", "event": "X", "integrations": None},
    {"type": "track", "event": "X", "integrations": {"All": True}},
    {"type": "track", "event": "X", "groupId": "g-extra"},
    {"type": "track", "event": "X", "groupId": 5},
    {"type": "track", "event": "X", "previousId": "p-extra"},
    {"type": "track", "event": "X", "traits": {"ignored": 1}},
    {"type": "track", "event": 5},
    {"type": "track", "event": "X", "userId": "", "anonymousId": "a"},
    {"type": "track", "event": "X", "userId": None, "anonymousId": "a"},
    {"type": "track", "event": "X", "anonymousId": 3},
    {"type": "track", "event": "X", "messageId": ""},
    {"type": "track", "event": "X", "messageId": "m" * 100},
    {"type": "track", "event": "X", "messageId": 12},
    {"type": "track", "event": "X", "properties": {f"p{i}": i for i in range(299)}},
    {"type": "track", "event": "X", "properties": {f"p{i}": i for i in range(300)}},
    {"type": "track", "event": "X", "properties": {f"p{i}": i for i in range(301)}},
    {"type": "track", "event": "X", "context": {"groupId": ""}},
    {"type": "track", "event": "X", "context": {"groupId": None}},
    {"type": "track", "event": "X", "context": {"groupId": "g"}},
    {"type": "page", "context": {"groupId": ""}},
    {"type": "identify", "traits": {"plan": "pro"}},
    {"type": "identify", "traits": {f"t{i}": i for i in range(299)}},
    {"type": "identify", "traits": {f"t{i}": i for i in range(300)}},
    {"type": "group", "groupId": "g", "traits": {f"t{i}": i for i in range(300)}},
    {"type": "group", "groupId": "g", "traits": {f"t{i}": i for i in range(301)}},
    {"type": "identify", "traits": None},
    {"type": "identify", "groupId": "g"},
    {"type": "group", "groupId": "g", "traits": {"n": 1}},
    {"type": "group", "groupId": ""},
    {"type": "group", "groupId": "g" * 500},
    {"type": "group", "groupId": "g" * 501},
    {"type": "page", "name": "Home", "properties": {"url": "/"}},
    {"type": "page", "name": "", "properties": {"name": "From props"}},
    {"type": "page", "category": "Docs", "properties": {"category": "kept"}},
    {"type": "page", "category": "Docs"},
    {"type": "page", "name": 3},
    {"type": "screen", "name": "Settings"},
    {"type": "alias", "previousId": "old"},
    {"type": "alias", "previousId": ""},
    {"type": "alias", "previousId": "old", "traits": {"a": 1}},
    {"type": "alias", "previousId": "old", "traits": 5},
]
TIMES = [
    {},
    {"timestamp": None},
    {"timestamp": "2026-01-01T00:00:00.123Z"},
    {"timestamp": "2026-01-01T00:00:00.1234567Z"},
    {"timestamp": "2026-01-01 00:00:00Z"},
    {"timestamp": "2026-01-01T00:00:00z"},
    {"timestamp": "2026-01-01T00:00:00+0530"},
    {"timestamp": "1969-12-31T23:59:59.999Z"},
    {"timestamp": 1767225600},
    {"timestamp": "2026-02-30T00:00:00Z"},
    {"timestamp": "2026-01-01T00:00:00"},
    {"originalTimestamp": "2026-01-01T00:00:00-07:00", "sentAt": "2026-01-01T00:00:09Z"},
    {
        "originalTimestamp": "2026-01-01T00:00:00Z",
        "sentAt": "2026-01-01T00:00:10.5Z",
        "receivedAt": "2026-01-01T00:00:05+00:00",
    },
    {"timestamp": "2020-05-01T12:00:00+02:00", "sentAt": "2020-05-01T10:00:01Z"},
    {"receivedAt": "2026-01-01T00:00:05Z"},
    {"sentAt": "2026-01-01T00:00:05Z"},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: orjson.dumps(v).decode()[:60])
@pytest.mark.parametrize("times", TIMES, ids=lambda t: orjson.dumps(t).decode()[:60])
def test_fast_path_matches_the_models(variant: dict[str, object], times: dict[str, object]) -> None:
    msg = {"userId": "u1", "messageId": "m1", **variant, **times}
    got, want = _both(orjson.dumps(msg))
    assert got == want


def test_fast_path_timestamps_match_the_models_on_random_iso_strings() -> None:
    import random

    rng = random.Random(4)
    for _ in range(3000):
        frac = (
            ""
            if rng.random() < 0.3
            else "." + "".join(rng.choices("0123456789", k=rng.randint(1, 6)))
        )
        tz = rng.choice(
            ["Z", f"{rng.choice('+-')}{rng.randint(0, 25):02d}:{rng.randint(0, 61):02d}"]
        )
        ts = (
            f"{rng.randint(0, 9999):04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}T"
            f"{rng.randint(0, 25):02d}:{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d}{frac}{tz}"
        )
        got, want = _both(raw(type="track", event="X", timestamp=ts))
        assert got == want, ts


def test_workload_messages_take_the_fast_path_and_match_the_models() -> None:
    from bench.workload import Workload, WorkloadSpec
    from engage_stream.ingest import validate

    calls = 0
    original = validate._adapter

    class Counting:
        def validate_python(self, obj: object) -> object:
            nonlocal calls
            calls += 1
            return original.validate_python(obj)

    records = [r.value for r in Workload(WorkloadSpec(profiles=200, events=2000)).records()]
    validate._adapter = Counting()  # type: ignore[assignment]
    try:
        fast = [parse_message(v, 5).to_json() for v in records]
    finally:
        validate._adapter = original
    assert calls == 0, "every workload message is one the fast path decides"
    assert fast == [_models_only(v, 5)[1] for v in records]


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "alias", "userId": "u", "previousId": "p", "traits": 5},
        {"type": "track", "userId": "u", "event": "E", "groupId": 5},
        {"type": "identify", "userId": "u", "previousId": ["x"]},
    ],
)
def test_undeclared_fields_normalise_reads_are_dead_lettered_not_raised(
    msg: dict[str, object],
) -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse_message(orjson.dumps(msg), 0)
    assert exc.value.reason == Reason.INVALID_FIELD


# -- limits at their exact edges (reference §6: dropped above 300 properties/traits; an
# Identify with 300 or more traits is rejected; empty context.groupId in a Track dropped) --


@pytest.mark.parametrize(
    ("kind", "field", "accepted", "rejected"),
    [
        ("track", "properties", 300, 301),
        ("page", "properties", 300, 301),
        ("screen", "properties", 300, 301),
        ("group", "traits", 300, 301),
        ("identify", "traits", 299, 300),
    ],
)
def test_field_count_limits_at_the_edge(
    kind: str, field: str, accepted: int, rejected: int
) -> None:
    extra: dict[str, object] = {"event": "X"} if kind == "track" else {}
    if kind == "group":
        extra["groupId"] = "g1"
    ok = raw(type=kind, **extra, **{field: {f"k{i}": i for i in range(accepted)}})
    assert (
        len(getattr(parse_message(ok, 0), "properties" if field == "properties" else "traits"))
        >= accepted
    )
    assert _models_only(ok, 0)[0] == "ok"
    bad = raw(type=kind, **extra, **{field: {f"k{i}": i for i in range(rejected)}})
    with pytest.raises(InvalidEvent) as exc:
        parse_message(bad, 0)
    assert exc.value.reason == Reason.INVALID_FIELD
    assert str(rejected) in exc.value.detail
    assert _models_only(bad, 0) == ("invalid", Reason.INVALID_FIELD)


@pytest.mark.parametrize("group_id", ["", None])
def test_track_with_an_empty_context_group_id_is_dead_lettered(group_id: str | None) -> None:
    msg = raw(type="track", event="X", context={"groupId": group_id, "ip": "1.2.3.4"})
    if group_id is None:  # null is "not sent", not empty
        assert parse_message(msg, 0).context["ip"] == "1.2.3.4"
        return
    with pytest.raises(InvalidEvent) as exc:
        parse_message(msg, 0)
    assert exc.value.reason == Reason.INVALID_FIELD
    assert exc.value.detail.startswith("context: ")
    assert "groupId must not be empty" in exc.value.detail
    assert _models_only(msg, 0) == ("invalid", Reason.INVALID_FIELD)


def test_context_group_id_elsewhere_or_non_empty_is_accepted() -> None:
    assert parse_message(raw(type="track", event="X", context={"groupId": "g1"}), 0)
    assert parse_message(raw(type="page", context={"groupId": ""}), 0)  # the reference: Track
    assert parse_message(raw(type="identify", context={"groupId": ""}), 0)


def test_whitespace_user_id_with_an_anonymous_id_is_anonymous() -> None:
    for data in (
        raw(type="track", event="X", userId="  ", anonymousId="a1"),
        orjson.dumps({"type": "track", "event": "X", "userId": " ", "anonymousId": "a1"}),
    ):
        ev = parse_message(data, 0)
        assert (ev.user_id, ev.anonymous_id) == (None, "a1")


@pytest.mark.parametrize(
    "ts",
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123456789Z",
        "2026-01-01 01:00:00+01:00",
        "2026-01-01T01:00:00+0100",
        "2026-01-01T01:00:00+01",  # ±hh alone is ISO-8601 too (the fuzz suite found it refused)
        "2025-12-31T19:00:00.123-05",
        "2026-01-01T00:00Z",
        "2026-01-01t00:00:00z",
        "1970-01-01T00:00:00Z",
    ],
)
def test_iso_8601_forms_are_accepted(ts: str) -> None:
    at = 0 if ts.startswith("1970") else 1_767_225_600_000 + (123 if ".123" in ts else 0)
    assert parse_message(raw(type="track", event="X", timestamp=ts), 0).timestamp == at
    # as sentAt too: the skew correction sees no skew when it equals the client's time
    skewless = raw(type="track", event="X", timestamp=ts, sentAt=ts)
    assert parse_message(skewless, 5_000).timestamp == 5_000


def test_nesting_up_to_the_limit_is_accepted_and_written_back() -> None:
    from engage_stream.ingest.validate import MAX_DEPTH, nesting

    ok = raw(type="track", event="X", properties={"x": nested(MAX_DEPTH - 2)})
    ev = parse_message(ok, 0)
    assert nesting(orjson.loads(ok)) == MAX_DEPTH
    assert orjson.loads(ev.to_json())["properties"] == {"x": nested(MAX_DEPTH - 2)}
    assert nesting(1) == 0 and nesting([]) == 1 and nesting({"a": [{}]}) == 3
