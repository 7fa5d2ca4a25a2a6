"""The native engine against the Python reference, on random definitions and inputs.

Each case draws a definition set (audiences of the shapes the native core evaluates —
trait and membership conditions — mixed with ones it does not: event conditions, computed
traits, duration operators, references linking the two) and an input stream for a few
profiles: identifies with random trait values, tracked events, out-of-order timestamps,
clock advances (some in bursts, so that events share a grained window's grain), and
definition edits (a changed definition, an added or removed one)
followed by the backfill the profile stage runs. Both engines see the same calls; after
every step each record goes through a save/load round trip (`dumps` / `loads`), and the
changes (kind, key, version, profile, value, previous, at, cause, messageId) and the saved
records must be identical. A divergence is shrunk (steps, then definitions dropped while
it persists) and printed as the minimal failing case.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition
from engage_stream.engine import Engine
from engage_stream.engine.state_text import decode as decode_state
from engage_stream.events import ProfileEvent
from engage_stream.profiles.processor import _apply_external_ids, _apply_metadata, _apply_traits
from engage_stream.profiles.record import ProfileRecord

pytest.importorskip("engage_stream_core", reason="native core not built (make setup)")

from engage_stream.engine.native import NativeEngine  # noqa: E402

H = 3_600_000
DAY = 24 * H
T0 = 1_700_006_400_000  # a UTC midnight
CASES = 2_000

TRAITS = ("plan", "country", "age", "score", "tags", "vip", "email")
VALUES: tuple[Any, ...] = (
    "pro",
    "free",
    "Pro",
    "US",
    "5",
    "5.0",
    "-3",
    "29.5",
    "1e3",
    "TRUE",
    "false",
    "",
    0,
    5,
    30,
    -3,
    29.5,
    5.0,
    2**53 + 1,
    2**63,
    True,
    False,
    None,
    ["pro", "US"],
    [5, "x"],
    [],
    [["pro"]],
    {"a": 1},
    "2026-01-01T00:00:00Z",
)
CONSTANTS: tuple[Any, ...] = ("pro", "free", "US", "5", "true", 5, 30, 29.5, 5.0, True, False, 0)
ORDER_CONSTANTS: tuple[Any, ...] = (5, 30, 29.5, -3, "30", "5.5", 0)
EQ_OPS = ("equals", "not_equals", "equals_any_of", "none_of", "exists", "not_exists")
ORDER_OPS = ("less_than", "greater_than", "at_most", "at_least")
EVENTS = ("Order", "View")
TRAIT_TYPES = (
    "counter",
    "sum",
    "avg",
    "min",
    "max",
    "first",
    "last",
    "most_frequent",
    "unique_list",
    "unique_count",
)
PRICES: tuple[Any, ...] = (5, 20, "15", 29.5, None, 0.1, 0.2, -3, 1e300, 2**63, "1.50", 5.0, "x")
# money: sums whose partials need all 17 digits to read back exactly
PRICES += (19.99, 1234.57, 0.07, 58464.99, "3.33")


# -- random definitions ----------------------------------------------------------------------
def _trait_row(rng: random.Random, keys: list[str]) -> dict[str, Any]:
    source = rng.choice(("custom", "custom", "any", "computed"))
    name = rng.choice(TRAITS)
    if source != "custom" and keys and rng.random() < 0.15:
        name = rng.choice(keys)  # a trait condition on an earlier definition's value
    return {"trait": name, "source": source, **_comparison(rng, EQ_OPS + ORDER_OPS)}


def _comparison(rng: random.Random, ops: tuple[str, ...]) -> dict[str, Any]:
    op = rng.choice(ops)
    out: dict[str, Any] = {"operator": op}
    if op in ORDER_OPS:
        out["value"] = rng.choice(ORDER_CONSTANTS)
    elif op in ("equals_any_of", "none_of"):
        out["value"] = rng.sample(CONSTANTS, rng.randint(1, 3))
    elif op in ("equals", "not_equals"):
        out["value"] = rng.choice(CONSTANTS)
    return out


def _rows(rng: random.Random, audiences: list[str], traits: list[str], depth: int) -> list[Any]:
    rows: list[dict[str, Any]] = []
    for i in range(rng.randint(1, 3)):
        x = rng.random()
        if x < 0.55:
            row = _trait_row(rng, audiences + traits)
        elif x < 0.8 and audiences:
            row = {"audience": rng.choice(audiences), "member": rng.random() < 0.7}
        elif x < 0.9 and depth < 2:
            row = {"group": _rows(rng, audiences, traits, depth + 1), "negate": rng.random() < 0.4}
        else:
            row = _trait_row(rng, [])
        if i > 0 and rng.random() < 0.4:
            row["join"] = "or"
        rows.append(row)
    return rows


COUNT_OPS = (">=", ">", "=", "!=", "<=", "<")


def _event_row(rng: random.Random) -> dict[str, Any]:
    """One event row: the native core's shape when it stands alone (a plain count in a
    window, constant filters on top-level properties)."""
    cond: dict[str, Any] = {"event": rng.choice(EVENTS)}
    x = rng.random()
    if x < 0.5:
        cond["within"] = rng.choice(("6 hours", "1 day", "2 days", "3 days"))
    elif x < 0.75:
        cond["between"] = rng.choice((["1 day", "2 days"], ["6 hours", "3 days"]))
    if rng.random() < 0.6:
        cond["count"] = {"operator": rng.choice(COUNT_OPS), "value": rng.randint(0, 3)}
    if rng.random() < 0.2:
        cond["performed"] = False
    if rng.random() < 0.5:
        f = _trait_row(rng, [])
        cond["where"] = [
            {"property": rng.choice(("price", "cat")), "operator": f["operator"]}
            | ({"value": f["value"]} if "value" in f else {})
        ]
    return cond


def _funnel_row(rng: random.Random) -> dict[str, Any]:
    row = _event_row(rng)
    step: dict[str, Any] = {"event": rng.choice(EVENTS), "within": rng.choice(("6 hours", "1 day"))}
    if rng.random() < 0.3:
        step["where"] = [{"property": "cat", **_comparison(rng, EQ_OPS)}]
    if rng.random() < 0.15:  # (a reference to the parent: not native)
        step["where"] = [
            {"property": "cat", "operator": "equals", "value_from": {"parent_property": "cat"}}
        ]
    row["then" if rng.random() < 0.5 else "then_not"] = step
    return row


def _other_audience(rng: random.Random, audiences: list[str], traits: list[str]) -> list[Any]:
    """Event rows beside others, funnels, and shapes the core does not evaluate."""
    x = rng.random()
    if x < 0.35:
        rows: list[Any] = [_event_row(rng) if rng.random() < 0.6 else _funnel_row(rng)]
        rows += _rows(rng, audiences, traits, 1)
        if rng.random() < 0.3:
            rows.append({"group": [_event_row(rng)], "negate": rng.random() < 0.5, "join": "or"})
        rng.shuffle(rows)
        return rows
    if x < 0.6:
        return [_funnel_row(rng)]
    if x < 0.7:
        row = _event_row(rng)
        row["where"] = [{"property": "cat", "operator": "equals", "value_from": {"trait": "plan"}}]
        return [row]
    if x < 0.85:
        return [{"trait": "since", "operator": "within_last", "value": f"{rng.randint(1, 3)} days"}]
    return [{"trait": "profile.plan", "operator": "exists"}]


def definition_set(rng: random.Random) -> list[AudienceDefinition | ComputedTraitDefinition]:
    """Audiences a0.. (references only to earlier ones: no cycles) and traits t0.."""
    out: list[AudienceDefinition | ComputedTraitDefinition] = []
    traits: list[str] = []
    for i in range(rng.randint(0, 3)):
        key = f"t{i}"
        kind = rng.choice(TRAIT_TYPES)
        spec: dict[str, Any] = {"key": key, "type": kind, "event": rng.choice(EVENTS)}
        if kind != "counter":
            spec["property"] = rng.choice(("price", "price", "cat", "info.x", "missing"))
        x = rng.random()
        if x < 0.5:
            spec["within"] = rng.choice(("2 days", "3 hours", "1 days"))
        elif x < 0.65:
            spec["between"] = {"start": "1 days", "end": "2 days"}
        if rng.random() < 0.25:
            spec["where"] = [{"property": "cat", **_comparison(rng, EQ_OPS + ORDER_OPS)}]
        if kind == "most_frequent":
            spec["min_frequency"] = rng.choice((1, 2))
        if kind in ("min", "max") and rng.random() < 0.3:
            spec["as_string"] = True
        if rng.random() < 0.15:
            spec["include_history"] = rng.choice((False, {"days": 1}))
        spec["include_anonymous"] = rng.random() < 0.5
        out.append(ComputedTraitDefinition.model_validate(spec))
        traits.append(key)
    audiences: list[str] = []
    for i in range(rng.randint(1, 7)):
        key = f"a{i}"
        x = rng.random()
        if x < 0.3:
            rows = _other_audience(rng, audiences, traits)
        elif x < 0.55:
            rows = [_event_row(rng)]
        else:
            rows = _rows(rng, audiences, traits, 0)
        spec = {"key": key, "conditions": rows, "include_anonymous": rng.random() < 0.5}
        y = rng.random()
        if y < 0.15:
            spec["include_history"] = False
        elif y < 0.3:
            spec["include_history"] = {"days": rng.choice((1, 2))}  # (cuts some windows)
        if rng.random() < 0.05:
            spec["enabled"] = False
        out.append(AudienceDefinition.model_validate(spec))
        audiences.append(key)
    rng.shuffle(out)  # (the engines order by dependencies, then kind and position)
    return out


def edited(
    rng: random.Random, defs: list[AudienceDefinition | ComputedTraitDefinition], n: int
) -> list[AudienceDefinition | ComputedTraitDefinition]:
    """One edit: an audience's conditions redrawn, one removed, or one added."""
    defs = list(defs)
    audiences = [d for d in defs if isinstance(d, AudienceDefinition)]
    x = rng.random()
    if x < 0.6 and audiences:
        d = rng.choice(audiences)
        earlier = [a.key for a in audiences if a.key < d.key]
        traits = [t.key for t in defs if isinstance(t, ComputedTraitDefinition)]
        rows = [_event_row(rng)] if rng.random() < 0.4 else _rows(rng, earlier, traits, 0)
        new = AudienceDefinition.model_validate({**d.model_dump(), "conditions": rows})
        defs[defs.index(d)] = new
    elif x < 0.8 and len(defs) > 1:
        gone = rng.choice(defs)
        defs = [d for d in defs if d.key != gone.key]
    else:
        key = f"b{n}"  # (unique: n is the edit's number)
        rows = _rows(rng, [a.key for a in audiences], [], 0)
        defs.append(AudienceDefinition.model_validate({"key": key, "conditions": rows}))
    return defs


# -- random inputs -----------------------------------------------------------------------------
@dataclass
class Case:
    sets: list[list[AudienceDefinition | ComputedTraitDefinition]]  # [0]: initial; edits
    # ("event", ProfileEvent, now) | ("tick", pid, now) | ("edit", set index, now)
    steps: list[tuple[Any, ...]]

    def describe(self) -> str:
        lines = ["definition sets:"]
        used = {0} | {s[1] for s in self.steps if s[0] == "edit"}
        for i, defs in enumerate(self.sets):
            if i not in used:
                continue
            lines.append(f"  set {i}:")
            lines += [
                f"    {orjson.dumps(d.model_dump(exclude_defaults=True)).decode()}" for d in defs
            ]
        lines.append("steps:")
        for s in self.steps:
            if s[0] == "event":
                ev = s[1]
                lines.append(f"  event now={s[2]} {ev.to_json().decode()}")
            else:
                lines.append(f"  {s}")
        return "\n".join(lines)


def make_case(seed: int) -> Case:
    rng = random.Random(seed)
    sets = [definition_set(rng)]
    pids = [f"anonymous_id:p{i}" for i in range(rng.randint(1, 2))]
    steps: list[tuple[Any, ...]] = []
    now = T0
    for n in range(rng.randint(4, 18)):
        now += rng.randint(0, 2 * DAY) if rng.random() < 0.7 else rng.randint(0, 3 * 60_000)
        pid = rng.choice(pids)
        x = rng.random()
        if x < 0.1:
            sets.append(edited(rng, sets[-1], len(sets)))
            steps.append(("edit", len(sets) - 1, now))
            continue
        if x < 0.25:
            steps.append(("tick", pid, now))
            continue
        ts = now - rng.choice((0, 0, H, DAY, 3 * DAY))  # late and out-of-order events
        anon = pid.split(":", 1)[1]
        user = f"u-{anon}" if rng.random() < 0.3 else None
        if x < 0.7:
            traits = {k: rng.choice(VALUES) for k in rng.sample(TRAITS, rng.randint(1, 3))}
            if "since" not in traits and rng.random() < 0.2:
                traits["since"] = "2023-11-14T00:00:00Z"
            kind, name, props = "identify", None, {}
        else:
            kind, name, traits = "track", rng.choice(EVENTS), {}
            props = {"price": rng.choice(PRICES), "cat": rng.choice(VALUES)}
            if rng.random() < 0.3:
                props["info"] = {"x": rng.choice(VALUES)}
        ev = ProfileEvent(
            message_id=f"m{seed}-{n}",
            type=kind,
            timestamp=ts,
            received_at=now,
            profile_id=pid,
            event=name,
            user_id=user,
            anonymous_id=anon,
            properties=props,
            traits=traits,
        )
        steps.append(("event", ev, now))
    return Case(sets, steps)


# -- running --------------------------------------------------------------------------------
@dataclass
class Side:
    """One engine's run: its records (saved and loaded after every step) and output."""

    make: Any  # (definitions, versions) -> engine
    engine: Any = None
    versions: dict[str, int] = field(default_factory=dict)
    records: dict[str, ProfileRecord] = field(default_factory=dict)
    history: dict[str, list[ProfileEvent]] = field(default_factory=dict)


def _changes(cs: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (c.kind, c.key, c.version, c.profile_id, c.value, c.previous, c.at, c.cause, c.message_id)
        for c in cs
    ]


def _step(side: Side, step: tuple[Any, ...], case: Case) -> list[Any]:
    """The profile stage's calls for one step (see ProfileProcessor.apply / sweep)."""
    out: list[Any] = []
    if step[0] == "edit":  # a new engine, then every profile brought to it
        defs, now = case.sets[step[1]], step[2]
        old, side.versions = side.versions, versions_at(case, step[1])
        side.engine = side.make(defs, side.versions)
        removed = {k for k in old if k not in side.versions}
        stale = {k for k, v in side.versions.items() if old.get(k) != v}
        for pid in sorted(side.records):
            rec = side.records[pid]
            if removed:
                side.engine.drop(rec, removed)
            if stale:
                hist = sorted(side.history[pid], key=lambda e: (e.timestamp, e.message_id))
                out += side.engine.recompute(rec, stale, hist, now)
        return out
    if step[0] == "tick":
        rec = side.records.get(step[1])
        if rec is not None and rec.next_wakeup is not None and rec.next_wakeup <= step[2]:
            out += side.engine.on_time(rec, step[2])
        return out
    ev, now = step[1], step[2]
    rec = side.records.get(ev.profile_id)
    created = rec is None
    if rec is None:
        rec = side.records[ev.profile_id] = ProfileRecord(profile_id=ev.profile_id)
    side.history.setdefault(ev.profile_id, []).append(ev)
    if ev.type == "identify":
        _apply_traits(rec, ev)
    _apply_external_ids(rec, ev)
    _apply_metadata(rec, ev, created)
    return side.engine.on_event(rec, ev, now)  # type: ignore[no-any-return]


def versions_at(case: Case, k: int) -> dict[str, int]:
    """Set k's versions: a key's version moves each time its definition's JSON does."""
    versions: dict[str, int] = {}
    seen: dict[str, str] = {}
    for defs in case.sets[: k + 1]:
        for d in defs:
            text = d.model_dump_json()
            if seen.get(d.key) != text:
                versions[d.key] = versions.get(d.key, 0) + 1
                seen[d.key] = text
    return {d.key: versions[d.key] for d in case.sets[k]}


@dataclass
class Run:
    divergence: str | None = None
    native_changes: int = 0  # changes of definitions the native core evaluated
    native_defs: int = 0  # in the first set: evaluated natively / by the Python half
    python_defs: int = 0


def run_case(case: Case) -> Run:
    """Both engines over `case`; where they first differ, if they do."""
    sides = [Side(Engine), Side(NativeEngine)]
    try:
        for s in sides:
            s.versions = versions_at(case, 0)
            s.engine = s.make(case.sets[0], s.versions)
    except ValueError:
        return Run()  # (a set the engine rejects: both reject it)
    run = Run(native_defs=len(sides[1].engine.native_keys))
    run.python_defs = len(sides[1].engine.python_reasons)
    for i, step in enumerate(case.steps):
        outs = []
        for s in sides:
            try:
                outs.append(_changes(_step(s, step, case)))
            except ValueError as exc:  # an edit the engine rejects: both must
                outs.append([("rejected", str(exc))])
            for pid, rec in list(s.records.items()):
                s.records[pid] = ProfileRecord.loads(rec.dumps())
        if outs[0] != outs[1]:
            run.divergence = f"step {i}: changes differ\n  python: {outs[0]}\n  native: {outs[1]}"
            return run
        if outs[0] and outs[0][0][0] == "rejected":
            return run
        native = set(getattr(sides[1].engine, "native_keys", ()))
        run.native_changes += sum(c[1] in native for c in outs[1])
        for pid in sides[0].records:
            # equal as data (the order of keys in `engine` and `$d` may differ: the two
            # halves store their states and wake-ups at different moments of a call; the
            # core spells a window in its compact text, the Python engine in JSON)
            a, b = sides[0].records[pid].dumps(), sides[1].records[pid].dumps()
            if _as_data(a) != _as_data(b):
                run.divergence = f"step {i}: record {pid} differs\n  python: {a!r}\n  native: {b!r}"
                return run
    return run


def _as_data(stored: bytes) -> dict[str, Any]:
    """A stored record as data, each definition's state decoded from its text."""
    record = orjson.loads(stored)
    record["engine"] = {
        k: decode_state(v) if type(v) is str else v for k, v in record["engine"].items()
    }
    return record  # type: ignore[no-any-return]


def divergence(case: Case) -> str | None:
    return run_case(case).divergence


def shrink(case: Case) -> Case:
    """Drop steps, then definitions, one at a time while the engines still differ."""
    changed = True
    while changed:
        changed = False
        for i in range(len(case.steps) - 1, -1, -1):
            smaller = Case(case.sets, case.steps[:i] + case.steps[i + 1 :])
            if divergence(smaller) is not None:
                case, changed = smaller, True
        keys = sorted({d.key for defs in case.sets for d in defs})
        for key in keys:
            sets = [[d for d in defs if d.key != key] for defs in case.sets]
            smaller = Case(sets, case.steps)
            if divergence(smaller) is not None:
                case, changed = smaller, True
    return case


def test_the_native_engine_gives_the_python_engines_changes_and_state() -> None:
    native_changes = native_defs = python_defs = 0
    for seed in range(CASES):
        case = make_case(seed)
        run = run_case(case)
        if run.divergence is not None:
            small = shrink(case)
            pytest.fail(
                f"seed {seed}: the engines differ — {divergence(small)}\n"
                f"minimal case:\n{small.describe()}"
            )
        native_changes += run.native_changes
        native_defs += run.native_defs
        python_defs += run.python_defs
    # the cases exercise both halves, and the native one changes memberships
    assert native_defs > CASES and python_defs > CASES, (native_defs, python_defs)
    assert native_changes > CASES, native_changes


def test_shrinking_finds_a_minimal_case_for_a_planted_divergence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failure report: a native engine that gets one cause wrong is caught, and the
    case printed has no step or definition the divergence does not need."""
    original = NativeEngine.on_event

    def wrong(self: NativeEngine, profile: Any, event: ProfileEvent, now_ms: int) -> list[Any]:
        out = original(self, profile, event, now_ms)
        return [c for c in out if c.key not in self.native_keys or c.value is not True]

    monkeypatch.setattr(NativeEngine, "on_event", wrong)
    for seed in range(CASES):
        case = make_case(seed)
        if divergence(case) is not None:
            break
    else:
        pytest.fail("no case shows a native engine that drops its entries")
    small = shrink(case)
    assert divergence(small) is not None
    events = [s for s in small.steps if s[0] == "event"]
    assert len(events) <= 2, small.describe()
    assert len(small.sets[0]) <= 2, small.describe()
    assert small.describe().count("event now=") == len(events)
