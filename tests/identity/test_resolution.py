"""Identity resolution end to end in process: the identity stage and the profiles stage,
as `replay` drives them (the worker runs the same two stages over Kafka)."""

from __future__ import annotations

import random
from typing import Any

import orjson

from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.loader import parse_text
from engage_stream.replay import Replay

DEFINITIONS = """
- kind: audience
  key: repeat_viewers
  include_anonymous: true
  conditions:
    - event: Product Viewed
      count: ">= 2"
  destinations: [{name: crm, identify: true}]
- kind: computed_trait
  key: view_count
  type: counter
  event: Product Viewed
"""


def replay(text: str = DEFINITIONS) -> Replay:
    defs, problems = parse_text(text, "t.yaml")
    assert not problems
    return Replay(Catalog.from_definitions(d for d, _ in defs))


def msg(kind: str, ts: str, mid: str, **kw: Any) -> bytes:
    body: dict[str, Any] = {"type": kind, "timestamp": ts, "messageId": mid, **kw}
    return orjson.dumps(body)


def view(ts: str, mid: str, **ids: Any) -> bytes:
    return msg("track", ts, mid, event="Product Viewed", **ids)


def run(r: Replay, lines: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(x.to_json()) for x in r.run(lines)]


def test_anonymous_browsing_then_login_is_one_profile_with_both_histories() -> None:
    r = replay()
    out = run(
        r,
        [
            view("2026-01-01T10:00:00Z", "v1", anonymousId="a1"),
            msg("identify", "2026-01-01T10:05:00Z", "i1", anonymousId="a1", userId="u1"),
            view("2026-01-01T10:10:00Z", "v2", userId="u1"),
        ],
    )
    pid = r.graph.lookup("user_id", "u1")
    assert pid is not None and pid == r.graph.lookup("anonymous_id", "a1")
    profile = r.profiles.get(pid)
    assert profile is not None
    assert profile.computed_traits["view_count"].value == 2
    assert profile.audiences["repeat_viewers"].value is True
    assert [e.message_id for e in r.profiles.history(pid)] == ["v1", "i1", "v2"]
    assert list(r.profiles.profile_ids()) == [pid], "no stale pre-login profile"
    entered = [x for x in out if x["topic"] == "engage.changes" and x["value"]["value"] is True]
    assert [x["value"]["key"] for x in entered if x["value"]["kind"] == "audience"] == [
        "repeat_viewers"
    ]


def test_two_anonymous_profiles_sharing_an_email_merge() -> None:
    r = replay()
    out = run(
        r,
        [
            view("2026-01-01T10:00:00Z", "v1", anonymousId="a1"),
            view("2026-01-01T11:00:00Z", "v2", anonymousId="a2"),
            msg(
                "identify",
                "2026-01-01T12:00:00Z",
                "i1",
                anonymousId="a1",
                traits={"email": "e@x.io"},
            ),
            msg(
                "identify",
                "2026-01-01T13:00:00Z",
                "i2",
                anonymousId="a2",
                traits={"email": "e@x.io"},
            ),
        ],
    )
    pid = r.graph.lookup("email", "e@x.io")
    assert pid is not None
    assert r.graph.lookup("anonymous_id", "a1") == r.graph.lookup("anonymous_id", "a2") == pid
    assert list(r.profiles.profile_ids()) == [pid]
    profile = r.profiles.get(pid)
    assert profile is not None and profile.computed_traits["view_count"].value == 2
    assert [m.message_id for m in profile.merges] == ["i2"]
    assert profile.audiences["repeat_viewers"].value is True
    crm = [x["value"] for x in out if x["topic"] == "engage.out.crm"]
    assert {c["anonymousId"] for c in crm if c["traits"]["repeat_viewers"]} == {"a1", "a2"}


def test_a_merged_away_member_hears_an_exit_when_the_merged_profile_is_not_one() -> None:
    text = """
kind: audience
key: anonymous_only
include_anonymous: true
conditions:
  - trait: plan
    operator: not_exists
destinations: [{name: crm, identify: true}]
"""
    r = replay(text)
    out = run(
        r,
        [
            msg(
                "identify",
                "2026-01-01T10:00:00Z",
                "i0",
                userId="u1",
                traits={"plan": "pro", "email": "p@x.io"},
            ),
            view("2026-01-01T10:01:00Z", "v1", anonymousId="a9"),
            msg(
                "identify",
                "2026-01-01T11:00:00Z",
                "i1",
                anonymousId="a9",
                traits={"email": "p@x.io"},
            ),
        ],
    )
    crm = [x["value"] for x in out if x["topic"] == "engage.out.crm"]
    to_a9 = [c["traits"]["anonymous_only"] for c in crm if c.get("anonymousId") == "a9"]
    assert to_a9[0] is True and to_a9[-1] is False, "told it entered, then told it left"


def test_a_shuffled_arrival_order_gives_the_same_people_and_memberships() -> None:
    rng = random.Random(5)
    lines = []
    for i in range(30):
        user = i % 6
        lines.append(view(f"2026-01-01T10:{i:02d}:00Z", f"v{i}", anonymousId=f"anon{user}"))
        if i % 5 == 0:
            lines.append(
                msg(
                    "identify",
                    f"2026-01-01T10:{i:02d}:30Z",
                    f"i{i}",
                    anonymousId=f"anon{user}",
                    userId=f"u{user}",
                )
            )

    def final(order: list[bytes]) -> set[tuple[Any, ...]]:
        r = replay()
        run(r, order)
        people = set()
        for pid in r.profiles.profile_ids():
            p = r.profiles.get(pid)
            assert p is not None
            ids = frozenset((x.type, x.id) for x in p.external_ids)
            people.add(
                (ids, p.computed_traits["view_count"].value, p.audiences["repeat_viewers"].value)
            )
        return people

    want = final(lines)
    assert len(want) == 6
    for _ in range(3):
        shuffled = lines[:]
        rng.shuffle(shuffled)
        assert final(shuffled) == want


def test_alias_links_profiles_only_when_opted_in() -> None:
    from engage_stream.identity.rules import IdentityRules

    lines = [
        view("2026-01-01T10:00:00Z", "v1", anonymousId="old-anon"),
        msg("alias", "2026-01-01T10:01:00Z", "al1", userId="u9", previousId="old-anon"),
        view("2026-01-01T10:02:00Z", "v2", userId="u9"),
    ]
    default = replay()
    run(default, lines)
    assert default.graph.lookup("user_id", "u9") != default.graph.lookup("anonymous_id", "old-anon")
    defs, _ = parse_text(DEFINITIONS, "t.yaml")
    opted = Replay(
        Catalog.from_definitions(d for d, _ in defs), rules=IdentityRules(merge_on_alias=True)
    )
    run(opted, lines)
    pid = opted.graph.lookup("user_id", "u9")
    assert pid is not None and pid == opted.graph.lookup("anonymous_id", "old-anon")
    profile = opted.profiles.get(pid)
    assert profile is not None and profile.computed_traits["view_count"].value == 2
