"""Accounts (reference §1.7, §6): group calls keep an account profile of its own — its
traits, its users — linked both ways and readable through the Profile API."""

from __future__ import annotations

from typing import Any

import orjson

from engage_stream.api.profiles import handle, profile_id_of
from engage_stream.definitions.catalog import Catalog
from engage_stream.replay import Replay


def group(user: str, gid: str, ts: str, mid: str, **traits: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "group",
            "userId": user,
            "groupId": gid,
            "traits": traits,
            "timestamp": ts,
            "messageId": mid,
        }
    )


def test_group_calls_keep_an_account_with_its_traits_and_users() -> None:
    r = Replay(Catalog())
    list(
        r.run(
            [
                group("u1", "acme", "2026-01-01T10:00:00Z", "g1", name="Acme", plan="free"),
                group("u2", "acme", "2026-01-01T11:00:00Z", "g2", plan="pro", employees=40),
                group("u2", "acme", "2026-01-01T09:00:00Z", "g0", plan="trial"),  # older: loses
                group("u1", "other", "2026-01-01T12:00:00Z", "g3", name="Other"),
            ]
        )
    )
    account_id = profile_id_of("s", "s", "accounts", "group_id:acme", lambda t, v: None)
    account = r.profiles.get(account_id)
    assert account is not None
    assert {k: v.value for k, v in account.traits.items()} == {
        "name": "Acme",
        "plan": "pro",
        "employees": 40,
    }
    assert [x.type for x in account.external_ids] == ["group_id"]
    users = [link.profile_id for link in account.links]
    assert users == [r.graph.lookup("user_id", "u1"), r.graph.lookup("user_id", "u2")]
    body = handle(r.profiles, account_id, "links", "/p", {}, 0)
    assert [[x["id"] for x in d["external_ids"]] for d in body["data"]] == [["u1"], ["u2"]]
    assert account.audiences == {} and account.computed_traits == {}

    u1 = r.graph.lookup("user_id", "u1")
    assert u1 is not None
    mine = handle(r.profiles, u1, "links", "/p", {}, 0)
    assert [d["external_ids"][0]["id"] for d in mine["data"]] == ["acme", "other"]
    assert {d["to_collection"] for d in mine["data"]} == {"accounts"}
    traits = handle(r.profiles, account_id, "traits", "/p", {}, 0)
    assert traits["traits"]["plan"] == "pro"
    user = r.profiles.get(u1)
    assert user is not None and "plan" not in user.traits, "group traits are the account's"


ACCOUNT_DEFS = """
- kind: audience
  key: active_accounts
  collection: accounts
  conditions:
    - users: any
      conditions:
        - event: Login
          within: 30 days
  destinations: [{name: crm}]
- kind: audience
  key: all_onboarded
  collection: accounts
  conditions:
    - users: all
      conditions:
        - trait: onboarded
          operator: equals
          value: true
- kind: audience
  key: dormant_pro_accounts
  collection: accounts
  conditions:
    - trait: plan
      operator: equals
      value: pro
    - users: none
      conditions:
        - event: Login
          within: 14 days
- kind: computed_trait
  key: account_logins
  collection: accounts
  type: counter
  event: Login
"""


def track(user: str, event: str, ts: str, mid: str) -> bytes:
    return orjson.dumps(
        {"type": "track", "userId": user, "event": event, "timestamp": ts, "messageId": mid}
    )


def identify(user: str, ts: str, mid: str, **traits: Any) -> bytes:
    return orjson.dumps(
        {"type": "identify", "userId": user, "traits": traits, "timestamp": ts, "messageId": mid}
    )


def test_account_audiences_over_any_all_none_of_their_users() -> None:
    from engage_stream.definitions.loader import parse_text

    defs, problems = parse_text(ACCOUNT_DEFS, "accounts.yaml")
    assert not problems, problems
    r = Replay(Catalog.from_definitions(d for d, _ in defs))
    out = [
        orjson.loads(x.to_json())
        for x in r.run(
            [
                group("u1", "acme", "2026-01-01T10:00:00Z", "g1", plan="pro"),
                group("u2", "acme", "2026-01-01T10:01:00Z", "g2"),
                identify("u1", "2026-01-01T10:02:00Z", "i1", onboarded=True),
                track("u2", "Login", "2026-01-01T11:00:00Z", "l1"),
                track("u1", "Login", "2026-01-01T11:05:00Z", "l2"),
                identify("u2", "2026-01-01T12:00:00Z", "i2", onboarded=True),
            ],
            until_ms=1767225600000 + 40 * 86_400_000,  # 2026-01-01 + 40 days
        )
    ]
    changes = [
        (x["value"]["key"], x["value"]["value"], x["value"]["at"][:16])
        for x in out
        if x["topic"] == "engage.changes" and x["key"] == "group_id:acme"
    ]
    assert ("dormant_pro_accounts", True, "2026-01-01T10:00") in changes, "pro, nobody logged in"
    assert ("active_accounts", True, "2026-01-01T11:00") in changes, "a user logged in"
    assert ("dormant_pro_accounts", False, "2026-01-01T11:00") in changes
    assert ("all_onboarded", True, "2026-01-01T12:00") in changes, "the second user too"
    assert ("active_accounts", False, "2026-01-31T11:05") in changes, "the last login left"
    assert ("dormant_pro_accounts", True, "2026-01-15T11:05") in changes, "14 days after it"
    account = r.profiles.get("group_id:acme")
    assert account is not None and account.computed_traits["account_logins"].value == 2
    groups = [x["value"] for x in out if x["topic"] == "engage.out.crm"]
    assert [(g["type"], g["groupId"], g["traits"]) for g in groups] == [
        ("group", "acme", {"active_accounts": True}),
        ("group", "acme", {"active_accounts": False}),
    ]
    users = [r.profiles.get(r.graph.lookup("user_id", u) or "") for u in ("u1", "u2")]
    assert all(u is not None and "active_accounts" not in u.audiences for u in users)


def test_a_user_merged_into_another_counts_once_in_the_account() -> None:
    from engage_stream.definitions.loader import parse_text

    defs, problems = parse_text(ACCOUNT_DEFS, "accounts.yaml")
    assert not problems
    r = Replay(Catalog.from_definitions(d for d, _ in defs))
    anon = orjson.dumps(
        {
            "type": "group",
            "anonymousId": "a1",
            "groupId": "acme",
            "traits": {},
            "timestamp": "2026-01-01T10:00:00Z",
            "messageId": "g-a",
        }
    )
    list(
        r.run(
            [
                anon,
                group("u1", "acme", "2026-01-01T10:01:00Z", "g1"),
                identify("u1", "2026-01-01T10:02:00Z", "i1", onboarded=True),
                orjson.dumps(
                    {
                        "type": "identify",
                        "anonymousId": "a1",
                        "userId": "u1",
                        "timestamp": "2026-01-01T10:03:00Z",
                        "messageId": "login",
                    }
                ),
            ]
        )
    )
    account = r.profiles.get("group_id:acme")
    assert account is not None
    survivor = r.graph.lookup("user_id", "u1")
    assert [x.profile_id for x in account.links] == [survivor]
    assert list(account.user_flags) == [survivor]
    assert account.audiences["all_onboarded"].value is True, "the one person is onboarded"


def test_an_account_audience_can_also_identify_each_user() -> None:
    from engage_stream.definitions.loader import parse_text

    text = """
kind: audience
key: pro_accounts
collection: accounts
conditions:
  - trait: plan
    operator: equals
    value: pro
destinations: [{name: crm, users: true}]
"""
    defs, problems = parse_text(text, "a.yaml")
    assert not problems
    r = Replay(Catalog.from_definitions(d for d, _ in defs))
    out = [
        orjson.loads(x.to_json())["value"]
        for x in r.run(
            [
                group("u1", "acme", "2026-01-01T10:00:00Z", "g1"),
                group("u2", "acme", "2026-01-01T10:01:00Z", "g2", plan="pro"),
            ]
        )
        if x.topic == "engage.out.crm"
    ]
    assert [(c["type"], c.get("groupId"), c.get("userId"), c["traits"]) for c in out] == [
        ("group", "acme", None, {"pro_accounts": True}),
        ("identify", None, "u1", {"pro_accounts": True}),
        ("identify", None, "u2", {"pro_accounts": True}),
    ]
    assert len({c["messageId"] for c in out}) == 3
    bad, problems = parse_text(text.replace("collection: accounts\n", ""), "b.yaml")
    assert problems and "collection: accounts" in problems[0].message


def test_the_profile_api_does_not_show_the_hidden_parts() -> None:
    from engage_stream.definitions.loader import parse_text

    defs, _ = parse_text(ACCOUNT_DEFS, "accounts.yaml")
    r = Replay(Catalog.from_definitions(d for d, _ in defs))
    list(
        r.run(
            [
                group("u1", "acme", "2026-01-01T10:00:00Z", "g1", plan="pro"),
                track("u1", "Login", "2026-01-01T11:00:00Z", "l1"),
            ]
        )
    )
    u1 = r.graph.lookup("user_id", "u1") or ""
    user = r.profiles.get(u1)
    assert user is not None and any(k.startswith("__acct__") for k in user.audiences)
    for pid in (u1, "group_id:acme"):
        shown = handle(r.profiles, pid, "traits", "/p", {"limit": "200"}, 0)["traits"]
        assert not [k for k in shown if k.startswith("__acct__")]
    assert handle(r.profiles, "group_id:acme", "traits", "/p", {}, 0)["traits"]["active_accounts"]


def test_an_account_trait_counts_its_active_users() -> None:
    from engage_stream.definitions.loader import parse_text

    text = """
- kind: computed_trait
  key: active_users_30d
  collection: accounts
  type: unique_count
  event: Signed In
  property: $user
  within: 30 days
- kind: audience
  key: three_active
  collection: accounts
  conditions:
    - trait: active_users_30d
      operator: at_least
      value: 3
"""
    defs, problems = parse_text(text, "a.yaml")
    assert not problems, problems
    r = Replay(Catalog.from_definitions(d for d, _ in defs))
    lines = [group(u, "acme", "2026-01-01T10:00:00Z", f"g-{u}") for u in ("a", "b", "c")]
    lines += [track("a", "Signed In", "2026-01-02T10:00:00Z", "s1")]
    lines += [track("a", "Signed In", "2026-01-03T10:00:00Z", "s2")]
    lines += [track("b", "Signed In", "2026-01-04T10:00:00Z", "s3")]
    list(r.run(lines))
    account = r.profiles.get("group_id:acme")
    assert account is not None and account.computed_traits["active_users_30d"].value == 2
    assert "three_active" not in account.audiences or not account.audiences["three_active"].value
    list(r.run([track("c", "Signed In", "2026-01-05T10:00:00Z", "s4")]))
    account = r.profiles.get("group_id:acme")
    assert account is not None and account.audiences["three_active"].value is True
    list(r.run([], until_ms=1767225600000 + 34 * 86_400_000))  # a's logins age out
    account = r.profiles.get("group_id:acme")
    assert account is not None and account.audiences["three_active"].value is False


def test_what_accounts_are_given_is_counted_apart_from_the_input_events() -> None:
    """Each input event counts once as processed (`engage_events_processed_total`), however
    many accounts get a copy: a group call's forward and a user's event copied to its
    account for an account trait count as account events."""
    from engage_stream.definitions.loader import parse_text

    text = """
- kind: computed_trait
  key: sign_ins
  collection: accounts
  type: counter
  event: Signed In
"""
    defs, problems = parse_text(text, "a.yaml")
    assert not problems, problems
    r = Replay(Catalog.from_definitions(d for d, _ in defs))
    lines = [group(u, "acme", "2026-01-01T10:00:00Z", f"g-{u}") for u in ("a", "b")]
    lines += [group("a", "other", "2026-01-01T11:00:00Z", "g-a2")]
    lines += [track("a", "Signed In", "2026-01-02T10:00:00Z", "s1")]  # a: two accounts
    lines += [track("b", "Signed In", "2026-01-02T11:00:00Z", "s2")]
    lines += [track("b", "Browsed", "2026-01-02T12:00:00Z", "s3")]  # no account reads it
    list(r.run(lines))
    assert r.stats.events == 6
    assert r.stats.account_events == 3 + 2 + 1
    account = r.profiles.get("group_id:acme")
    assert account is not None and account.computed_traits["sign_ins"].value == 2
