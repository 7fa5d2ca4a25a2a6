"""The equality-filter index: definitions whose constant `equals` filter an event cannot
pass are not even asked — and the answers are exactly those of asking every definition."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engage_stream.engine import Engine
from engage_stream.engine.index import EventListeners
from engage_stream.profiles.record import ExternalId, ProfileRecord
from tests.engine.harness import MIN, T0, audience, event, trait


def _by_category(value: Any) -> list[dict[str, Any]]:
    return [{"event": "E", "where": [{"property": "category", "operator": "=", "value": value}]}]


DEFINITIONS = [
    audience("shoes", _by_category("shoes")),
    audience("hats", _by_category("hats")),
    audience("five", _by_category("5")),  # a numeric string: numbers may equal it
    audience("yes", _by_category("true")),  # booleans equal their text
    audience("any_e", [{"event": "E"}]),
    audience(
        "two_rows",  # two rows on E: not indexed (only single plain rows are)
        [
            {"event": "E", "where": [{"property": "category", "operator": "=", "value": "hats"}]},
            {"event": "E", "join": "or", "count": ">= 3"},
        ],
    ),
    audience(
        "brand_and_shoes",
        [
            {
                "event": "E",
                "within": "1 day",
                "where": [
                    {"property": "brand", "operator": "=", "value": "acme"},
                    {"property": "category", "operator": "=", "value": "shoes"},
                ],
            }
        ],
    ),
    trait("n_hats", "counter", "E", where=_by_category("hats")[0]["where"]),
    trait("last_shoe", "last", "E", property="v", where=_by_category("shoes")[0]["where"]),
    audience(  # a nested property: not indexed (top-level properties only)
        "nested",
        [{"event": "E", "where": [{"property": "meta.category", "operator": "=", "value": "x"}]}],
    ),
]


def test_only_definitions_whose_constant_can_match_are_listeners() -> None:
    engine = Engine(DEFINITIONS)
    ranks = {n.key: r for r, n in enumerate(engine._nodes)}
    listeners = engine._listeners

    def keys(props: dict[str, Any]) -> set[str]:
        got, as_set = listeners.get("E", props)
        assert set(got) == as_set and list(got) == sorted(got)
        return {k for k, r in ranks.items() if r in as_set}

    always = {"any_e", "two_rows", "nested"}
    assert keys({"category": "shoes"}) == always | {"shoes", "last_shoe"}
    assert keys({"category": "shoes", "brand": "acme"}) == always | {"shoes", "last_shoe"} | {
        "brand_and_shoes"
    }
    assert keys({"category": "hats"}) == always | {"hats", "n_hats"}
    assert keys({"category": "other"}) == always
    assert keys({}) == always, "a missing value equals nothing"
    # values only the definitions' own filters can decide (coercions, arrays): all asked
    everyone = {"shoes", "hats", "five", "yes", "n_hats", "last_shoe"}
    for v in (5, 5.0, True, ["hats", "x"], {"a": 1}):
        assert everyone <= keys({"category": v}), v
    assert listeners.get("Other", {"category": "shoes"}) == ((), frozenset())


def _unindexed(engine: Engine) -> Engine:
    """The same engine asking every definition that names the event."""
    by_event: dict[str, tuple[int, ...]] = {}
    for rank, node in enumerate(engine._nodes):
        for name in node.events:
            by_event[name] = (*by_event.get(name, ()), rank)
    engine._listeners = EventListeners(by_event, lambda r, name: None)
    return engine


@pytest.mark.parametrize("seed", range(5))
def test_indexed_answers_equal_asking_everyone(seed: int) -> None:
    rng = random.Random(seed)
    values: list[Any] = ["shoes", "hats", "5", 5, 5.0, "true", True, False, None, "x", ["hats"]]
    values += [["shoes", 5], "Shoes", "", 0]
    fast, slow = Engine(DEFINITIONS), _unindexed(Engine(DEFINITIONS))
    profiles = {e: ProfileRecord(profile_id="user_id:u1") for e in ("fast", "slow")}
    for p in profiles.values():
        p.external_ids.append(ExternalId("user_id", "u1"))
    outs: dict[str, list[Any]] = {"fast": [], "slow": []}
    ts = T0
    for i in range(300):
        ts += rng.randrange(1, 120) * MIN
        props: dict[str, Any] = {"v": i}
        for prop in ("category", "brand"):
            v = rng.choice(values + ["acme"])
            if v is not None:
                props[prop] = v
        if rng.random() < 0.2:
            props["meta"] = {"category": rng.choice(["x", "y"])}
        late = ts - rng.randrange(0, 3) * 3 * 60 * MIN
        ev = event(rng.choice(["E", "E", "E", "F"]), late, f"m{i}", props)
        for name, engine in (("fast", fast), ("slow", slow)):
            outs[name].extend(engine.on_event(profiles[name], ev, ts))
    assert outs["fast"] == outs["slow"]
    assert [c.message_id for c in outs["fast"]] == [c.message_id for c in outs["slow"]]
    assert profiles["fast"].engine == profiles["slow"].engine
    assert any(c.key in ("shoes", "hats", "five", "yes") for c in outs["fast"])
