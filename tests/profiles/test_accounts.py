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
