"""Flat matching with Segment's merge protection, over the in-memory store."""

from __future__ import annotations

import pytest

from engage_stream.identity.graph import IdGraph
from engage_stream.identity.rules import IdentityRules, Limit
from engage_stream.state.memory import MemoryKV

DAY = 86_400_000


def graph(rules: IdentityRules | None = None) -> IdGraph:
    return IdGraph(MemoryKV(), rules)


def test_anonymous_browsing_then_identify_is_one_profile() -> None:
    g = graph()
    first = g.resolve([("anonymous_id", "a1")], 1, "m1")
    assert first is not None and first.created and first.profile_id.startswith("use_")
    login = g.resolve([("user_id", "u1"), ("anonymous_id", "a1")], 2, "m2")
    assert login is not None and login.profile_id == first.profile_id and not login.created
    assert login.added == (("user_id", "u1"),)
    assert g.lookup("user_id", "u1") == g.lookup("anonymous_id", "a1") == first.profile_id


def test_profile_ids_are_stable_and_not_derived_from_the_user_id() -> None:
    a = graph().resolve([("user_id", "u1")], 1, "m1")
    b = graph().resolve([("user_id", "u1")], 1, "m1")
    assert a is not None and b is not None and a.profile_id == b.profile_id
    assert "u1" not in a.profile_id


def test_two_anonymous_profiles_sharing_an_email_merge_into_the_emails_profile() -> None:
    g = graph()
    p1 = g.resolve([("anonymous_id", "a1")], 1, "m1")
    p2 = g.resolve([("anonymous_id", "a2"), ("email", "x@y.z")], 2, "m2")
    assert p1 is not None and p2 is not None and p1.profile_id != p2.profile_id
    merged = g.resolve([("anonymous_id", "a1"), ("email", "x@y.z")], 3, "m3")
    assert merged is not None
    assert merged.profile_id == p2.profile_id, "the email (higher priority) decides"
    assert merged.merged == (p1.profile_id,)
    assert g.lookup("anonymous_id", "a1") == p2.profile_id
    assert g.identity(p1.profile_id) is None and g.survivor(p1.profile_id) == p2.profile_id
    ident = g.identity(p2.profile_id)
    assert ident is not None and ident.merges == 1
    assert ident.keys() == {("anonymous_id", "a1"), ("anonymous_id", "a2"), ("email", "x@y.z")}


def test_two_user_ids_sharing_an_email_do_not_merge() -> None:
    g = graph()
    u1 = g.resolve([("user_id", "u1"), ("email", "shared@x.io")], 1, "m1")
    u2 = g.resolve([("user_id", "u2"), ("email", "shared@x.io")], 2, "m2")
    assert u1 is not None and u2 is not None
    assert u2.profile_id != u1.profile_id and u2.created
    assert u2.dropped == (("email", "shared@x.io"),), "the lowest-priority id is dropped"
    assert g.lookup("email", "shared@x.io") == u1.profile_id


def test_an_anonymous_id_reused_after_a_logout_stays_with_the_first_user() -> None:
    g = graph()
    first = g.resolve([("user_id", "u1"), ("anonymous_id", "device")], 1, "m1")
    second = g.resolve([("user_id", "u2"), ("anonymous_id", "device")], 2, "m2")
    assert first is not None and second is not None
    assert second.profile_id != first.profile_id
    assert second.dropped == (("anonymous_id", "device"),)
    again = g.resolve([("anonymous_id", "device")], 3, "m3")
    assert again is not None and again.profile_id == first.profile_id


def test_blocked_values_are_never_identifiers() -> None:
    g = graph()
    assert g.resolve([("user_id", "null")], 1, "m1") is None
    assert g.resolve([("user_id", "0000")], 1, "m1") is None
    a = g.resolve([("user_id", "null"), ("anonymous_id", "a1")], 1, "m2")
    b = g.resolve([("user_id", "null"), ("anonymous_id", "a2")], 1, "m3")
    assert a is not None and b is not None and a.profile_id != b.profile_id
    assert a.dropped == (("user_id", "null"),) and g.lookup("user_id", "null") is None


def test_a_limit_with_a_time_frame_counts_only_recent_values() -> None:
    rules = IdentityRules(limits={"user_id": Limit(1), "ios.id": Limit(2, within_ms=7 * DAY)})
    g = graph(rules)
    p = g.resolve([("user_id", "u1"), ("ios.id", "d1")], 0, "m1")
    assert p is not None
    g.resolve([("user_id", "u1"), ("ios.id", "d2")], 1, "m2")
    third = g.resolve([("user_id", "u1"), ("ios.id", "d3")], 2, "m3")
    assert third is not None and third.dropped == (("ios.id", "d3"),)
    later = g.resolve([("user_id", "u1"), ("ios.id", "d3")], 8 * DAY, "m4")
    assert later is not None and later.profile_id == p.profile_id and later.dropped == ()


def test_merges_and_mappings_are_bounded() -> None:
    g = graph(IdentityRules(max_merges=1, max_mappings=3))
    a = g.resolve([("anonymous_id", "a")], 0, "1")
    b = g.resolve([("anonymous_id", "b")], 0, "2")
    c = g.resolve([("anonymous_id", "c")], 0, "3")
    assert a and b and c
    ab = g.resolve([("anonymous_id", "a"), ("anonymous_id", "b")], 1, "4")
    assert ab is not None and ab.merged == (b.profile_id,)
    abc = g.resolve([("anonymous_id", "a"), ("anonymous_id", "c")], 2, "5")
    assert abc is not None and abc.merged == () and abc.profile_id == a.profile_id
    assert abc.dropped == (("anonymous_id", "c"),), "a second merge would pass the limit"
    for i in range(5):
        r = g.resolve([("anonymous_id", "a"), ("ios.id", f"d{i}")], 3, f"d{i}")
        assert r is not None and r.profile_id == a.profile_id, "events still resolve"
    ident = g.identity(a.profile_id)
    assert ident is not None and len(ident.ids) == 3, "no more identifiers kept"
    assert g.lookup("ios.id", "d4") is None


def test_rules_from_the_environment() -> None:
    rules = IdentityRules.from_env(
        {
            "ENGAGE_IDENTITY_LIMITS": "email=2,ios.id=3/7d",
            "ENGAGE_IDENTITY_PRIORITY": "user_id,phone,email",
            "ENGAGE_IDENTITY_MERGE_ON_ALIAS": "true",
            "ENGAGE_IDENTITY_BLOCKED": "^test$",
        }
    )
    assert rules.limit("user_id") == Limit(1) and rules.limit("email") == Limit(2)
    assert rules.limit("ios.id") == Limit(3, 7 * DAY) and rules.limit("x") == Limit(5)
    assert rules.rank("phone") < rules.rank("email") < rules.rank("anonymous_id")
    assert rules.merge_on_alias and rules.is_blocked("TEST") and not rules.is_blocked("null")
    assert IdentityRules.from_env({}) == IdentityRules()
    with pytest.raises(ValueError, match="5/7d"):
        IdentityRules.from_env({"ENGAGE_IDENTITY_LIMITS": "email=five"})
