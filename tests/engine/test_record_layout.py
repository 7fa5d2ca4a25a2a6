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


def test_records_written_by_earlier_versions_are_read() -> None:
    d = orjson.loads(_record().dumps())
    del d["traits"]["email"]["message_id"]  # before message_id existed
    for x in d["external_ids"]:
        del x["encoding"], x["source_id"]  # before these fields existed
    del d["def_versions"], d["defs_epoch"]
    r = ProfileRecord.loads(orjson.dumps(d))
    assert r.traits["email"] == TraitValue("a@b.c", T0, "")
    assert all(x.encoding == "none" and x.source_id == "" for x in r.external_ids)
    assert r.def_versions == {} and r.defs_epoch == ""
    assert orjson.loads(r.dumps())["traits"]["email"]["message_id"] == ""
