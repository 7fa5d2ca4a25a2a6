"""The profile record the engine's state lives in: `dumps` writes exactly the dataclasses'
fields, and `loads` reads what `dumps` wrote and what earlier versions wrote."""

from __future__ import annotations

import dataclasses

import orjson

from engage_stream.profiles.record import ExternalId, Metadata, ProfileRecord, TraitValue
from tests.engine.harness import T0, Harness, audience, trait


def _record() -> ProfileRecord:
    h = Harness(
        [
            audience("aud", [{"event": "Login", "within": "7 days"}]),
            trait("n", "counter", "Login", within="1 day"),
            trait("top", "most_frequent", "Login", property="v", within="1 day"),
        ]
    )
    h.identify({"email": "a@b.c", "plan": "pro"}, T0)
    for i in range(3):
        h.track("Login", T0 + i, {"v": "x"})
    return h.record()


def test_dumps_is_the_fields_as_json_and_loads_reads_it_back() -> None:
    r = _record()
    raw = r.dumps()
    assert raw == orjson.dumps(dataclasses.asdict(r))
    back = ProfileRecord.loads(raw)
    assert back == r and back.dumps() == raw
    assert isinstance(back.audiences["aud"], TraitValue) and back.audiences["aud"].value is True
    assert isinstance(back.external_ids[0], ExternalId) and isinstance(back.metadata, Metadata)
    back.computed_traits["n"].value = 4  # loaded objects are ordinary, mutable instances
    back.traits["new"] = TraitValue(1, 2, "m")
    assert orjson.loads(back.dumps())["traits"]["new"] == {"value": 1, "ts": 2, "message_id": "m"}
