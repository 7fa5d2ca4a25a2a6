"""Ingest's routing: straight to the profile only when nothing needs linking."""

from __future__ import annotations

from engage_stream.events import ProfileEvent
from engage_stream.identity.replica import IdentityReplica


def ev(**ids: str) -> ProfileEvent:
    return ProfileEvent(message_id="m", type="track", timestamp=1, received_at=1, **ids)


def test_routes_only_known_agreeing_identifiers() -> None:
    r = IdentityReplica()
    r.apply(b"user_id:u1", b"use_1")
    r.apply(b"anonymous_id:a1", b"use_1")
    r.apply(b"anonymous_id:a2", b"use_2")
    assert r.route(ev(user_id="u1", anonymous_id="a1")) == "use_1"
    assert r.route(ev(anonymous_id="a1")) == "use_1"
    assert r.route(ev(user_id="u1", anonymous_id="new")) is None, "a new identifier: link"
    assert r.route(ev(user_id="u1", anonymous_id="a2")) is None, "two profiles: merge"
    assert r.route(ev(user_id="null", anonymous_id="a2")) == "use_2", "blocked values ignored"
    assert r.route(ev(user_id="null")) is None, "nothing usable: the stage dead-letters it"
    r.apply(b"anonymous_id:a2", b"use_1")  # moved by a merge
    assert r.route(ev(user_id="u1", anonymous_id="a2")) == "use_1"
    r.apply(b"anonymous_id:a2", None)
    assert r.lookup("anonymous_id", "a2") is None and len(r) == 2
