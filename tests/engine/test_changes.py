"""`Change` identity: the engine's fast construction is the same object as the
constructor's, and message_id is a function of the fields, computed once."""

from __future__ import annotations

import hashlib
from dataclasses import FrozenInstanceError

import pytest

from engage_stream.engine import Change
from engage_stream.engine.changes import make_change, message_id
from tests.engine.harness import T0, Harness, audience, trait

ARGS = ("computed_trait", "n", 3, "user_id:u1", 2.5, None, T0, "event:m1")


def _reference_id(c: Change) -> str:
    raw = f"{c.kind}\x00{c.key}\x00{c.version}\x00{c.profile_id}\x00{c.cause}\x00{c.value!r}"
    return "engage-" + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def test_fast_construction_equals_the_constructor() -> None:
    c = Change(*ARGS)  # type: ignore[arg-type]
    fast = make_change(*ARGS, message_id(*ARGS[:4], ARGS[7], ARGS[4]))  # type: ignore[arg-type]
    assert fast == c and hash(fast) == hash(c) and repr(fast) == repr(c)
    assert fast.message_id == c.message_id == _reference_id(c)
    with pytest.raises(FrozenInstanceError):
        fast.value = 2  # type: ignore[misc]


def test_message_id_is_not_part_of_equality() -> None:
    a = Change(*ARGS)  # type: ignore[arg-type]
    b = Change(*ARGS)  # type: ignore[arg-type]
    _ = a.message_id  # cached on a only
    assert a == b and hash(a) == hash(b)


def test_engine_changes_carry_the_reference_message_id() -> None:
    h = Harness(
        [
            audience("aud", [{"event": "Login", "within": "1 hour"}]),
            trait("last", "last", "Login", property="v", within="1 hour"),
        ],
        versions={"aud": 7},
    )
    out = h.track("Login", T0, {"v": {"nested": ["x", 1.5]}})
    out += h.tick(T0 + 2 * 3_600_000)
    assert len(out) == 4
    for c in out:
        assert c.message_id == _reference_id(c)
