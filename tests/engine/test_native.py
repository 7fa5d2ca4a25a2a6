"""The native core's Python API (`engage_stream_core`) and how the engine is chosen.

The differential test (test_differential.py) holds the whole engine to the Python one on
random inputs; these pin the core's own contract — what it accepts, what `evaluate`
returns — and the coercions the operators must share with `operators.py`, case by case.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.models import AudienceDefinition
from engage_stream.engine import Engine, EngineSettings
from engage_stream.engine import native as native_module
from engage_stream.engine.changes import message_id
from engage_stream.engine.operators import compile_static
from engage_stream.profiles.record import ExternalId, ProfileRecord, TraitValue
from engage_stream.profiles.stage import build_engine
from tests.engine.harness import audience, event, exit_at, trait

core = pytest.importorskip("engage_stream_core", reason="native core not built (make setup)")

NativeEngine = native_module.NativeEngine


def dump(key: str, conditions: list[dict[str, Any]], **kw: Any) -> str:
    return native_module.definition_json(audience(key, conditions, **kw))


def profile(traits: dict[str, Any] | None = None, **audiences: bool) -> ProfileRecord:
    p = ProfileRecord(profile_id="user_id:u1")
    p.traits = {k: TraitValue(v, 1) for k, v in (traits or {}).items()}
    p.audiences = {k: TraitValue(v, 1) for k, v in audiences.items()}
    return p


# -- supports --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "conditions",
    [
        [{"trait": "plan", "operator": "equals", "value": "pro"}],
        [{"trait": "age", "source": "custom", "operator": "less_than", "value": 30}],
        [{"trait": "age", "operator": "at_least", "value": "18.5"}],
        [{"trait": "tags", "operator": "equals_any_of", "value": ["a", 1, True]}],
        [{"audience": "other", "member": False}],
        [{"group": [{"trait": "x", "operator": "exists"}], "negate": True}],
        [{"event": "Login", "within": "7 days"}],
        [
            {
                "event": "Login",
                "between": ["1 day", "2 days"],
                "count": {"operator": "<", "value": 2},
            }
        ],
        [
            {
                "event": "A",
                "performed": False,
                "where": [{"property": "p", "operator": "equals", "value": 1}],
            }
        ],
        [{"event": "Login"}, {"trait": "x", "operator": "exists"}],
        [{"event": "A", "then": {"event": "B", "within": "1 day"}}],
        [
            {"group": [{"event": "A", "then_not": {"event": "B", "within": "1 day"}}]},
            {"event": "C", "count": {"operator": "<", "value": 3}, "join": "or"},
        ],
    ],
)
def test_supported_shapes(conditions: list[dict[str, Any]]) -> None:
    assert core.supports(dump("a", conditions)) is None


@pytest.mark.parametrize(
    ("conditions", "reason"),
    [
        (
            [
                {
                    "event": "A",
                    "then": {
                        "event": "B",
                        "within": "1 day",
                        "where": [
                            {
                                "property": "sku",
                                "operator": "equals",
                                "value_from": {"parent_property": "sku"},
                            }
                        ],
                    },
                }
            ],
            "value_from",
        ),
        ([{"event": "A", "where": [{"property": "p.q", "operator": "exists"}]}], "nested property"),
        (
            [{"event": "A", "where": [{"property": "p", "operator": "contains", "value": "x"}]}],
            "filter operator contains",
        ),
        ([{"trait": "since", "operator": "within_last", "value": "7 days"}], "within_last"),
        ([{"trait": "profile.plan", "operator": "exists"}], "nested trait path"),
        ([{"trait": "x", "operator": "equals", "value_from": {"trait": "y"}}], "value_from"),
        ([{"trait": "x", "operator": "less_than", "value": "2026-01-01"}], "non-numeric"),
        ([{"trait": "x", "operator": "equals", "value": 2**70}], "beyond 2^53"),
        ([{"trait": "x", "operator": "contains", "value": "a"}], "contains"),
    ],
)
def test_unsupported_shapes_say_why(conditions: list[dict[str, Any]], reason: str) -> None:
    why = core.supports(dump("a", conditions))
    assert why is not None and reason in why
    with pytest.raises(ValueError, match=reason.replace("^", r"\^")):
        core.Core([dump("a", conditions)], [[]])


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"session": {"expires_after": "30 minutes"}}, "session"),
        (
            {"where": [{"property": "p", "operator": "equals", "value_from": {"trait": "x"}}]},
            "value_from",
        ),
        ({"where": [{"property": "a.b", "operator": "exists"}]}, "nested property"),
        ({"where": [{"property": "p", "operator": "contains", "value": "x"}]}, "contains"),
    ],
)
def test_computed_traits_the_core_does_not_keep_say_why(extra: dict[str, Any], reason: str) -> None:
    t = native_module.definition_json(trait("n", "sum", "Order", property="v", **extra))
    why = core.supports(t)
    assert why is not None and reason in why


def test_computed_traits_of_every_type_are_supported_and_bad_json_is_not() -> None:
    for kind in ("counter", "sum", "avg", "min", "max", "first", "last"):
        prop = {} if kind == "counter" else {"property": "order.total"}
        t = trait("n", kind, "Order", within="7 days", **prop)
        assert core.supports(native_module.definition_json(t)) is None, kind
    for kind in ("most_frequent", "unique_list", "unique_count"):
        t = trait("n", kind, "Order", within="7 days", property="sku")
        assert core.supports(native_module.definition_json(t)) is None, kind
    assert "unreadable" in (core.supports("{") or "")


# -- Core ------------------------------------------------------------------------------------
def test_dependents_must_come_after_their_dependency() -> None:
    a = dump("a", [{"trait": "plan", "operator": "exists"}])
    b = dump("b", [{"audience": "a"}])
    with pytest.raises(ValueError, match="one list of dependents and one window per definition"):
        core.Core([a, b], [[1]])
    with pytest.raises(ValueError, match="not after"):
        core.Core([a, b], [[], [0]])
    assert len(core.Core([a, b], [[1], []])) == 2


def test_evaluate_rejects_unknown_positions_and_leaves_the_profile_alone() -> None:
    c = core.Core([dump("a", [{"trait": "plan", "operator": "exists"}])], [[]])
    with pytest.raises(IndexError):
        c.evaluate(profile(), [1], True)
    p = profile({"plan": "pro"})
    assert c.evaluate(p, [0], True) == [(0, True, 0)]
    assert p.audiences == {}, "Python applies the changes"
    p.audiences["a"] = TraitValue(True, 5)
    assert c.evaluate(p, [0], True) == [], "no change: nothing returned"


def test_a_changed_membership_reaches_its_dependents_in_the_same_call() -> None:
    """b reads a's membership and c reads a as a trait (source any): both see the value a
    just took, though it is not on the profile yet, and carry a's origin."""
    c = core.Core(
        [
            dump("a", [{"trait": "plan", "operator": "equals", "value": "pro"}]),
            dump("b", [{"audience": "a"}]),
            dump("c", [{"trait": "a", "operator": "equals", "value": True}]),
        ],
        [[1, 2], [], []],
    )
    assert c.evaluate(profile({"plan": "pro"}), [0], True) == [
        (0, True, 0),
        (1, True, 0),
        (2, True, 0),
    ]
    # a leaves; b and c were members
    out = c.evaluate(profile({"plan": "free"}, a=True, b=True, c=True), [0, 2], True)
    assert out == [(0, False, 0), (1, False, 0), (2, False, 0)]
    assert c.evaluate(profile({"plan": "free"}, b=True), [1], True) == [(1, False, 1)]


def test_anonymous_profiles_are_members_only_with_include_anonymous() -> None:
    cond = [{"trait": "plan", "operator": "exists"}]
    gated = core.Core([dump("a", cond)], [[]])
    open_ = core.Core([dump("a", cond, include_anonymous=True)], [[]])
    p = profile({"plan": "pro"})
    assert gated.evaluate(p, [0], False) == []
    assert open_.evaluate(p, [0], False) == [(0, True, 0)]


TRAIT_VALUES: list[Any] = [
    None,
    "pro",
    "PRO",
    "5",
    "5.0",
    "05",
    "1e3",
    "1_000",
    " 5",
    "29.5",
    "-3",
    "TRUE",
    "false",
    "",
    0,
    1,
    5,
    30,
    -3,
    29.5,
    5.0,
    1.0,
    2**53 + 1,
    float(2**53),
    2**63,
    2**64 - 1,
    True,
    False,
    [],
    ["pro", 5],
    [["pro"]],
    [{"a": 1}],
    {"a": 1},
]
OPERANDS: list[tuple[str, Any]] = [
    *(
        (op, v)
        for op in ("equals", "not_equals")
        for v in ("pro", "5", "true", 5, 1, 5.0, True, False, 2**53 + 1, 2.0**52 + 0.5)
    ),
    *((op, v) for op in ("equals_any_of", "none_of") for v in (["pro", 30], [True], [1.0, "x"])),
    ("exists", None),
    ("not_exists", None),
    *(
        (op, v)
        for op in ("less_than", "greater_than", "at_most", "at_least")
        for v in (30, 29.5, "5", -3, 2**53 + 1, 0)
    ),
]


@pytest.mark.parametrize(("op", "value"), OPERANDS)
def test_operators_agree_with_operators_py(op: str, value: Any) -> None:
    """Every operand against every kind of value: the core's answer is compile_static's."""
    row: dict[str, Any] = {"trait": "x", "operator": op}
    if value is not None:
        row["value"] = value
    d = audience("a", [row], include_anonymous=True)
    c = core.Core([native_module.definition_json(d)], [[]], [None])
    pred = compile_static(d.conditions[0].operator, d.conditions[0].value)  # type: ignore[union-attr]
    for x in TRAIT_VALUES:
        expected = pred(x, 0)
        got = c.evaluate(profile({"x": x}), [0], True) == [(0, True, 0)]
        assert got == expected, (op, value, x)


def test_sources_read_as_profile_trait_does() -> None:
    """any: audience, then computed, then custom value; custom / computed: that one only
    (a null custom value is a tombstone: missing)."""
    c = core.Core(
        [
            dump("any", [{"trait": "k", "operator": "equals", "value": "c"}]),
            dump(
                "custom", [{"trait": "k", "source": "custom", "operator": "equals", "value": "u"}]
            ),
        ],
        [[], []],
    )
    p = profile({"k": "u"})
    p.computed_traits["k"] = TraitValue("c", 1)
    assert c.evaluate(p, [0, 1], True) == [(0, True, 0), (1, True, 1)]
    p = profile({"k": None})
    assert c.evaluate(p, [0, 1], True) == []


# -- NativeEngine / make_engine ---------------------------------------------------------------
def test_components_with_an_unsupported_definition_stay_in_python() -> None:
    same_sku = {"property": "sku", "operator": "equals", "value_from": {"parent_property": "sku"}}
    funnel = {
        "event": "Added",
        "within": "7 days",
        "then_not": {"event": "Order", "within": "1 day", "where": [same_sku]},
    }
    defs: list[Any] = [
        audience("pro", [{"trait": "plan", "operator": "equals", "value": "pro"}]),
        audience("us", [{"trait": "country", "operator": "equals", "value": "US"}]),
        audience("pro_us", [{"audience": "pro"}, {"audience": "us"}]),
        audience("buyer", [{"event": "Order", "within": "7 days"}]),
        audience("pro_buyer", [{"audience": "buyer"}, {"audience": "pro"}]),
        audience("abandoned", [funnel]),
        audience(
            "pro_abandoned", [{"audience": "abandoned"}, {"trait": "plan", "operator": "exists"}]
        ),
        trait("orders", "counter", "Order"),
        audience(
            "many", [{"trait": "orders", "source": "computed", "operator": "at_least", "value": 3}]
        ),
        audience("long", [{"event": "Order", "within": "30 days"}], include_history={"days": 7}),
        trait("orders_7d", "counter", "Order", within="7 days"),
        audience("many_7d", [{"trait": "orders_7d", "operator": "at_least", "value": 3}]),
    ]
    e = NativeEngine(defs)
    assert e.native_keys == (  # (rank order: traits first)
        "orders_7d",
        "pro",
        "us",
        "pro_us",
        "buyer",
        "pro_buyer",
        "many_7d",
    )
    assert "bucketed window" in e.python_reasons["orders"]
    assert "value_from" in e.python_reasons["abandoned"]
    assert (
        e.python_reasons["pro_abandoned"]
        == "linked (by references) to abandoned, which is not native"
    )
    assert e.python_reasons["many"].startswith("linked")
    assert "lookback cuts short" in e.python_reasons["long"]
    assert native_module.coverage(e) == (7, 12)


DAY = 86_400_000


def test_event_audiences_keep_the_python_engines_state_and_wake_ups() -> None:
    """The state is the Python engine's `[[times]]` string and the exit a `$d` entry, so
    either engine can take over the other's records."""
    d = audience("buyer", [{"event": "Order", "within": "7 days"}], include_anonymous=True)
    c = core.Core([dump("buyer", d.model_dump()["conditions"])], [[]], [[(0, 7 * DAY, 0)]])
    p = profile()
    p.profile_id = "user_id:u1"
    found = c.on_event(p, 10 * DAY, True, [], False, "Order", {}, 9 * DAY, 9 * DAY)
    assert found == [(0, True, 9 * DAY, -1, 0)]
    assert p.engine == {"$d": {"buyer": 16 * DAY}, "buyer": f"[[{9 * DAY}]]"}
    ref = Engine([d])
    q = ProfileRecord(
        profile_id="user_id:u1", engine={"$d": {"buyer": 16 * DAY}, "buyer": f"[[{9 * DAY}]]"}
    )
    q.next_wakeup = 16 * DAY
    q.audiences["buyer"] = TraitValue(True, 9 * DAY)
    assert [(x.value, x.at, x.cause) for x in ref.on_time(q, 20 * DAY)] == [
        (False, 16 * DAY, f"timer:{16 * DAY}")
    ]
    p.audiences["buyer"] = TraitValue(True, 9 * DAY)
    assert c.on_time(p, 20 * DAY, True) == [(0, False, 16 * DAY, 16 * DAY, 0)]
    assert p.engine == {"$d": {}} == {k: v for k, v in q.engine.items() if k != "$i"} | {"$d": {}}
    # a rebuild from history (recompute) keeps only what can still count
    p.audiences["buyer"] = TraitValue(False, 16 * DAY)
    past = [("Order", {}, 1 * DAY), ("Order", {}, 19 * DAY), ("Other", {}, 19 * DAY)]
    assert c.recompute(p, 20 * DAY, True, [0], False, [0], past) == [(0, True, 20 * DAY, -1, 0)]
    assert p.engine["buyer"] == f"[[{19 * DAY}]]"


def test_computed_trait_state_moves_between_the_engines() -> None:
    """A trait's state is the Python engine's column-wise window either way (the core
    spells it in its compact text): a record written by one engine and continued by the
    other gives the changes of either alone."""
    defs = [
        trait("spend", "sum", "Order", property="v", within="7 days", include_anonymous=True),
        trait(
            "top",
            "most_frequent",
            "Order",
            property="sku",
            within="7 days",
            min_frequency=1,
            include_anonymous=True,
        ),
    ]
    engines = {"python": Engine(defs), "native": NativeEngine(defs)}
    assert engines["native"].native_keys == ("spend", "top")
    orders = [
        event("Order", 1 * DAY, "m1", {"v": 10, "sku": "b"}),
        event("Order", 2 * DAY, "m2", {"v": 2.5, "sku": "a"}),
        event("Order", 3 * DAY, "m3", {"v": "1.25", "sku": "a"}),
    ]

    def run(first: str, then: str) -> tuple[list[Any], dict[str, Any]]:
        rec, out = ProfileRecord(profile_id="user_id:u1"), []
        for i, ev in enumerate(orders):
            out += engines[first if i < 2 else then].on_event(rec, ev, ev.timestamp)
            rec = ProfileRecord.loads(rec.dumps())
        out += engines[then].on_time(rec, exit_at(2 * DAY, 7 * DAY))
        seen = [(c.key, c.value, c.previous, c.at, c.cause, c.message_id) for c in out]
        assert all(rec.engine[k].startswith("~") == (then == "native") for k in ("spend", "top"))
        return seen, {k: Engine.state(rec, k) for k in ("spend", "top")}

    reference = run("python", "python")
    assert [c[:5] for c in reference[0]] == [
        ("spend", 10, None, 1 * DAY, "event:m1"),
        ("top", "b", None, 1 * DAY, "event:m1"),
        ("spend", 12.5, 10, 2 * DAY, "event:m2"),
        ("top", "a", "b", 2 * DAY, "event:m2"),  # (a tie: "a" orders first)
        ("spend", 13.75, 12.5, 3 * DAY, "event:m3"),
        ("spend", 3.75, 13.75, exit_at(DAY, 7 * DAY), f"timer:{exit_at(DAY, 7 * DAY)}"),
        ("spend", 1.25, 3.75, exit_at(2 * DAY, 7 * DAY), f"timer:{exit_at(2 * DAY, 7 * DAY)}"),
    ]  # (the window's exits, at the end of each event's grain + 7 days)
    assert reference[1] == {
        "spend": [[3 * DAY], [1.25], [0, [1.25], 1, 1], 1, [1], 1 * DAY],
        "top": [[3 * DAY], ["a"], {"a": 1}, 1, [1]],
    }
    assert run("python", "native") == reference
    assert run("native", "python") == reference
    assert run("native", "native") == reference


def test_float_state_reads_back_exactly() -> None:
    """A sum's partials are stored as shortest round-trip decimals; the core must read each
    back to the same double (serde_json's default float parser is ~1 ulp off for ~30 % of
    doubles: a chaos run's revenue came out 58464.990000000005 instead of 58464.99)."""
    defs = [trait("avg", "avg", "Order", property="v", within="2 days", include_anonymous=True)]
    orders = [event("Order", 0, "m1", {"v": 0.2}), event("Order", DAY, "m2", {"v": 19.99})]
    outputs = {}
    for name, engine in {"python": Engine(defs), "native": NativeEngine(defs)}.items():
        rec, out = ProfileRecord(profile_id="user_id:u1"), []
        for ev in orders:
            out += engine.on_event(rec, ev, ev.timestamp)
            rec = ProfileRecord.loads(rec.dumps())
        out += engine.on_time(rec, exit_at(0, 2 * DAY))  # 0.2 exits: 19.99 alone is left
        outputs[name] = [c.value for c in out]
    assert outputs["python"] == [0.2, 10.094999999999999, 19.99]
    assert outputs["native"] == outputs["python"]


def test_message_ids_hash_the_values_repr_as_python_writes_it() -> None:
    """The core writes `repr` itself for None, booleans and 64-bit integers (the usual
    values) and asks Python for the rest: every id is `changes.message_id`'s."""
    defs = [
        trait("biggest", "max", "Order", property="v", within="2 days", include_anonymous=True),
        trait("last", "last", "Order", property="v", within="2 days", include_anonymous=True),
        audience("buyer", [{"event": "Order", "within": "1 days"}], include_anonymous=True),
    ]
    values = [-7, 2**63 + 5, -(2**63), 2**40, 0.1, "x'y", True]
    orders = [event("Order", i * 1000, f"m{i}", {"v": v}) for i, v in enumerate(values)]
    engine = NativeEngine(defs)
    assert engine.native_keys and not engine.python_reasons
    rec, out = ProfileRecord(profile_id="user_id:u1"), []
    for ev in orders:
        out += engine.on_event(rec, ev, ev.timestamp)
    out += engine.on_time(rec, 3 * DAY)  # the exits: None values, False memberships
    assert {type(c.value) for c in out} >= {int, float, str, bool, type(None)}
    for c in out:
        assert c.message_id == message_id(c.kind, c.key, c.version, c.profile_id, c.cause, c.value)


def test_make_engine_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    defs = [audience("pro", [{"trait": "plan", "operator": "equals", "value": "pro"}])]
    monkeypatch.delenv(native_module.ENGINE_ENV, raising=False)
    assert isinstance(native_module.make_engine(defs), NativeEngine)
    assert type(native_module.make_engine(defs, choice="python")) is Engine
    monkeypatch.setenv(native_module.ENGINE_ENV, "python")
    assert type(native_module.make_engine(defs)) is Engine
    monkeypatch.setenv(native_module.ENGINE_ENV, "fast")
    with pytest.raises(ValueError, match="auto, native, python"):
        native_module.make_engine(defs)


def test_without_the_core_the_python_engine_runs_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    defs = [audience("pro", [{"trait": "plan", "operator": "equals", "value": "pro"}])]
    monkeypatch.delenv(native_module.ENGINE_ENV, raising=False)
    monkeypatch.setattr(native_module, "core", None)
    monkeypatch.setattr(native_module, "unavailable", "No module named 'engage_stream_core'")
    monkeypatch.setattr(native_module, "_told", False)
    with caplog.at_level(logging.WARNING, logger=native_module.__name__):
        assert type(native_module.make_engine(defs)) is Engine
        assert type(native_module.make_engine(defs)) is Engine
    lines = [r.getMessage() for r in caplog.records if r.name == native_module.__name__]
    assert lines == [
        "native core not available: No module named 'engage_stream_core'; using the Python engine"
    ]
    with pytest.raises(RuntimeError, match="native core not available"):
        native_module.make_engine(defs, choice="native")


def test_the_worker_builds_the_native_engine_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    defs: list[AudienceDefinition] = [
        audience("pro", [{"trait": "plan", "operator": "equals", "value": "pro"}])
    ]
    monkeypatch.delenv(native_module.ENGINE_ENV, raising=False)
    engines = build_engine(Catalog.from_definitions(defs), Settings())
    assert isinstance(engines.users, NativeEngine)
    monkeypatch.setenv(native_module.ENGINE_ENV, "python")
    assert type(build_engine(Catalog.from_definitions(defs), Settings()).users) is Engine


def test_identification_changes_reach_native_definitions() -> None:
    """A gated native audience enters when the profile gets a user id (no trait changed)."""
    from tests.engine.harness import event

    defs = [audience("pro", [{"trait": "plan", "operator": "equals", "value": "pro"}])]
    e = NativeEngine(defs)
    p = ProfileRecord(profile_id="anonymous_id:a")
    ev = event(None, 10, "m1", kind="identify", user=None, anon="a", traits={"plan": "pro"})
    p.traits["plan"] = TraitValue("pro", 10)
    assert e.on_event(p, ev, 10) == []
    p.external_ids.append(ExternalId(type="user_id", id="u", collection="users"))
    out = e.on_event(p, event("Login", 20, "m2", user="u", profile="anonymous_id:a"), 20)
    assert [(c.key, c.value, c.at, c.cause) for c in out] == [("pro", True, 20, "event:m2")]


def test_when_every_definition_is_native_the_engines_bookkeeping_still_happens() -> None:
    """No Python half runs then: late events are counted, `$i` is kept, and the wake-up of
    a definition the engine no longer has is dropped when due, as `Engine` does."""
    defs = [audience("buyer", [{"event": "Order", "within": "7 days"}], include_anonymous=True)]
    settings = EngineSettings(allowed_lateness_ms=DAY)
    engines = {
        "python": Engine(defs, settings=settings),
        "native": NativeEngine(defs, settings=settings),
    }
    assert engines["native"]._alone
    seen = {}
    for name, e in engines.items():
        rec = ProfileRecord(profile_id="user_id:u1")
        rec.engine["$d"] = {"gone": 2 * DAY}  # a deleted definition's wake-up
        rec.next_wakeup = 2 * DAY
        late = e.on_event(rec, event("Order", 1 * DAY, "m1"), 5 * DAY)  # 4 days late
        fresh = e.on_event(rec, event("Order", 5 * DAY, "m2"), 5 * DAY)
        seen[name] = (
            [(c.key, c.value) for c in late],
            [(c.key, c.value, c.at) for c in fresh],
            e.late_events,
            rec.engine,
            rec.next_wakeup,
        )
    assert seen["native"] == seen["python"]
    assert seen["native"][2] == 1  # the late one
    assert seen["native"][3]["$i"] == 0  # (no user id, email or idfa: anonymous)
    assert "gone" not in seen["native"][3]["$d"]
