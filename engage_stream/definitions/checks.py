"""Checks across definitions, after each one validated on its own.

- keys are unique across audiences and computed traits (one namespace: an audience key is
  also the trait name its membership is written under, reference §1.5/§3.2);
- `audience:` conditions name a defined audience;
- `trait:` conditions with `source: computed` name a defined computed trait;
- no cycles between definitions (reference §1.1: "The audience would create a cycle"),
  through audience conditions, through trait conditions whose trait is an audience (or a
  computed trait), and through `value_from.trait` references;
- a destination is listed once per definition (reference §3: one configuration per
  destination);
- a trait condition's operator and value fit the type of the computed trait (or audience
  membership) it compares, e.g. no `starts_with` on a counter.

`value_from.trait` may name any trait (custom traits are open-ended), so it is only
checked for cycles, not for existence. Definitions that failed their own validation take
part too (from their raw YAML), so one run reports every problem.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from engage_stream.definitions.models import (
    DATE_OPS,
    DURATION_OPS,
    KEY_PATTERN,
    LIST_OPS,
    NO_VALUE_OPS,
    ORDER_OPS,
    STRING_OPS,
    AudienceDefinition,
    ComputedTraitDefinition,
    GroupCondition,
    Op,
    TraitCondition,
    condition_kind,
)
from engage_stream.definitions.problems import Path_, Problem, Source

AnyDefinition = AudienceDefinition | ComputedTraitDefinition

NUMERIC_TRAIT_TYPES = frozenset({"counter", "sum", "avg", "min", "max", "unique_count"})
LIST_TRAIT_TYPES = frozenset({"unique_list"})
KIND_NAMES = {"audience": "audience", "computed_trait": "computed trait"}
_SOURCES = ("any", "custom", "computed")

_NOT_ON_NUMBERS = STRING_OPS | {Op.contains_any_of} | DATE_OPS | DURATION_OPS
_NOT_ON_LISTS = ORDER_OPS | DATE_OPS | DURATION_OPS
_ON_MEMBERSHIP = frozenset({Op.equals, Op.not_equals, *NO_VALUE_OPS})


@dataclass(frozen=True, slots=True)
class Reference:
    """One definition naming another (or a trait) at `path` inside it."""

    kind: str  # "audience" | "trait" | "value_from"
    target: str
    path: Path_
    source: str = "any"  # TraitCondition.source for kind "trait"


@dataclass(frozen=True, slots=True)
class Item:
    """One definition as the cross-checks see it. The checks read its raw fields (the YAML
    mapping, or a parsed model's dump), so one that failed its own validation (`definition`
    None) is still checked for references, cycles and duplicates. `in_force`: already
    applied (on the definitions topic), not from the files being checked."""

    key: str
    kind: str  # "audience" | "computed_trait"
    data: Mapping[str, Any]
    source: Source
    definition: AnyDefinition | None = None
    in_force: bool = False

    @classmethod
    def parsed(cls, defn: AnyDefinition, source: Source, in_force: bool = False) -> Item:
        return cls(defn.key, defn.kind, defn.model_dump(), source, defn, in_force)

    @classmethod
    def draft(cls, data: Any, source: Source, in_force: bool = False) -> Item | None:
        """The readable rest of an invalid definition; None without a usable key and kind."""
        if not isinstance(data, Mapping):
            return None
        key, kind = data.get("key"), data.get("kind")
        if not (isinstance(key, str) and key and isinstance(kind, str) and kind in KIND_NAMES):
            return None
        return cls(key, kind, data, source, None, in_force)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]


def references(data: Mapping[str, Any]) -> Iterator[Reference]:
    """Every reference a definition makes, with its path inside it. Best effort on raw
    YAML: malformed parts are skipped (their own validation reports them)."""
    if data.get("kind") == "computed_trait":
        yield from _filter_refs(data.get("where"), ("where",))
    else:
        yield from _condition_refs(data.get("conditions"), ("conditions",))


def _mappings(rows: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if isinstance(rows, list):
        yield from ((i, r) for i, r in enumerate(rows) if isinstance(r, Mapping))


def _name(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _condition_refs(rows: Any, base: Path_) -> Iterator[Reference]:
    for i, row in _mappings(rows):
        path = (*base, i)
        match condition_kind(row):
            case "audience":
                target = _name(row["audience"])
                if target is not None and re.match(KEY_PATTERN, target):
                    yield Reference("audience", target, (*path, "audience"))
            case "trait":
                target = _name(row["trait"])
                if target is not None:
                    source = row.get("source", "any")
                    source = source if source in _SOURCES else "any"
                    yield Reference("trait", target, (*path, "trait"), source)
                yield from _value_from_ref(row, path)
            case "event":
                yield from _filter_refs(row.get("where"), (*path, "where"))
                for step in ("then", "then_not"):
                    if isinstance(row.get(step), Mapping):
                        yield from _filter_refs(row[step].get("where"), (*path, step, "where"))
            case "group":
                yield from _condition_refs(row["group"], (*path, "group"))


def _filter_refs(filters: Any, base: Path_) -> Iterator[Reference]:
    for i, f in _mappings(filters):
        yield from _value_from_ref(f, (*base, i))


def _value_from_ref(row: Mapping[str, Any], path: Path_) -> Iterator[Reference]:
    ref = row.get("value_from")
    target = _name(ref.get("trait")) if isinstance(ref, Mapping) else None
    if target is not None:
        yield Reference("value_from", target, (*path, "value_from", "trait"))


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_definitions(
    definitions: Sequence[AnyDefinition], sources: Sequence[Source] | None = None
) -> list[Problem]:
    """Cross-definition problems of parsed definitions. `sources[i]` says where
    `definitions[i]` was written (file and YAML node, for line numbers); without it
    problems name `<definitions>`."""
    if sources is None:
        sources = [Source("<definitions>", d.key) for d in definitions]
    return check_items([Item.parsed(d, s) for d, s in zip(definitions, sources, strict=True)])


def check_items(items: Sequence[Item]) -> list[Problem]:
    """Cross-definition problems of `items`, in order (the first of two equal keys wins)."""
    problems: list[Problem] = []

    # -- duplicate keys (audiences and computed traits share one namespace) --------------
    first: dict[str, Item] = {}
    for item in items:
        other = first.setdefault(item.key, item)
        if other is not item:
            line = other.source.line()
            at = f"{other.source.file}:{line}" if line else other.source.file
            problems.append(
                item.source.problem(
                    ("key",),
                    f"duplicate key '{item.key}': already used by the {other.kind_name} at "
                    f"{at} (audience and computed-trait keys share one namespace)",
                )
            )
    unique = list(first.values())
    audiences = {i.key for i in unique if i.kind == "audience"}
    traits = {i.key for i in unique if i.kind == "computed_trait"}
    parsed_traits = {
        i.key: i.definition for i in unique if isinstance(i.definition, ComputedTraitDefinition)
    }

    # -- references ---------------------------------------------------------------------
    edges: dict[str, list[tuple[str, Path_]]] = {i.key: [] for i in unique}
    for item in unique:
        for ref in references(item.data):
            problems.extend(_check_reference(item.source, ref, audiences, traits))
            target = _dependency(ref, audiences, traits)
            if target is not None:
                edges[item.key].append((target, ref.path))
        if isinstance(item.definition, AudienceDefinition):
            problems.extend(_check_types(item.definition, item.source, audiences, parsed_traits))
        names: set[str] = set()
        for i, dest in _mappings(item.data.get("destinations")):
            name = dest.get("name")
            if not isinstance(name, str):
                continue
            if name in names:
                problems.append(
                    item.source.problem(
                        ("destinations", i, "name"),
                        f"destination '{name}' is listed twice (one entry per "
                        "destination; it can send both identify and track)",
                    )
                )
            names.add(name)

    # -- cycles ---------------------------------------------------------------------------
    for found in find_cycles(edges):
        cycle = _from_files(found, first)
        head = first[cycle[0]]
        path = next(p for t, p in edges[head.key] if t == cycle[1])
        kinds = {first[k].kind for k in cycle}
        what = "audience cycle" if kinds == {"audience"} else "definition cycle"
        problems.append(head.source.problem(path, f"{what}: {' -> '.join(cycle)}"))
    return problems


def _from_files(cycle: list[str], items: Mapping[str, Item]) -> list[str]:
    """The cycle starting at its smallest key from the files checked, when it runs through
    definitions already in force too: the problem then points at a line of the files."""
    ring = cycle[:-1]
    heads = [k for k in ring if not items[k].in_force]
    if not heads or not items[ring[0]].in_force:
        return cycle
    i = ring.index(min(heads))
    return [*ring[i:], *ring[:i], ring[i]]


def _dependency(ref: Reference, audiences: Set[str], traits: Set[str]) -> str | None:
    """The defined key a reference makes its definition depend on, if any."""
    if ref.kind == "audience":
        return ref.target if ref.target in audiences else None
    if ref.kind == "trait" and ref.source == "custom":
        return None
    if ref.kind == "trait" and ref.source == "computed":
        return ref.target if ref.target in traits else None
    if ref.target in audiences or ref.target in traits:
        return ref.target
    return None


def _check_reference(
    src: Source, ref: Reference, audiences: Set[str], traits: Set[str]
) -> list[Problem]:
    if ref.kind == "audience":
        if ref.target in audiences:
            return []
        if ref.target in traits:
            msg = (
                f"'{ref.target}' is a computed trait, not an audience "
                f"(compare it with a trait condition: `trait: {ref.target}`)"
            )
        else:
            msg = f"unknown audience '{ref.target}'" + _suggest(ref.target, audiences)
        return [src.problem(ref.path, msg)]
    if ref.kind == "trait" and ref.source == "computed":
        if ref.target in traits:
            return []
        if ref.target in audiences:
            msg = (
                f"'{ref.target}' is an audience, not a computed trait "
                f"(use `audience: {ref.target}`, or `source: any`)"
            )
        else:
            msg = (
                f"unknown computed trait '{ref.target}': source: computed needs a computed "
                "trait defined alongside" + _suggest(ref.target, traits)
            )
        return [src.problem(ref.path, msg)]
    return []


def _check_types(
    d: AudienceDefinition,
    src: Source,
    audiences: Set[str],
    traits: Mapping[str, ComputedTraitDefinition],
) -> Iterator[Problem]:
    """Operators and values that cannot fit the computed trait / membership compared."""
    for cond, path in _trait_conditions(d.conditions, ("conditions",)):
        if cond.source == "custom":
            continue
        op, value = cond.operator, cond.value
        if cond.trait in traits and cond.source in ("any", "computed"):
            t = traits[cond.trait]
            if t.type in NUMERIC_TRAIT_TYPES and not t.as_string:
                if op in _NOT_ON_NUMBERS:
                    yield src.problem(
                        (*path, "operator"),
                        f"operator {op.value} cannot apply to '{t.key}', a {t.type} computed "
                        "trait (a number)",
                    )
                elif cond.value_from is None and not _numbers(op, value):
                    yield src.problem(
                        (*path, "value"),
                        f"'{t.key}' is a {t.type} computed trait (a number): compare it with "
                        f"a number, not {value!r}",
                    )
            elif t.type in LIST_TRAIT_TYPES and op in _NOT_ON_LISTS:
                yield src.problem(
                    (*path, "operator"),
                    f"operator {op.value} cannot apply to '{t.key}', a unique_list computed "
                    "trait (a list of values)",
                )
        elif cond.trait in audiences and cond.source == "any":
            if op not in _ON_MEMBERSHIP:
                yield src.problem(
                    (*path, "operator"),
                    f"'{cond.trait}' is an audience (membership is true/false): use equals, "
                    f"not_equals, exists or not_exists, not {op.value}",
                )
            elif value is not None and value not in (True, False, "true", "false"):
                yield src.problem(
                    (*path, "value"),
                    f"'{cond.trait}' is an audience (membership is true/false), not {value!r}",
                )


def _numbers(op: Op, value: object) -> bool:
    def num(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if op in NO_VALUE_OPS:
        return True
    if op in LIST_OPS:
        return isinstance(value, list) and all(num(v) for v in value)
    return num(value)


def _trait_conditions(
    conditions: Sequence[object], base: Path_
) -> Iterator[tuple[TraitCondition, Path_]]:
    for i, cond in enumerate(conditions):
        if isinstance(cond, TraitCondition):
            yield cond, (*base, i)
        elif isinstance(cond, GroupCondition):
            yield from _trait_conditions(cond.group, (*base, i, "group"))


def find_cycles(edges: dict[str, list[tuple[str, Path_]]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, as `[a, b, ..., a]`,
    starting at the component's smallest key (deterministic)."""
    graph = {k: sorted({t for t, _ in v if t in edges}) for k, v in edges.items()}
    cycles: list[list[str]] = []
    for comp in _sccs(graph):
        members = set(comp)
        start = min(comp)
        if len(comp) == 1 and start not in graph[start]:
            continue
        cycles.append(_cycle_from(start, graph, members))
    return sorted(cycles)


def _cycle_from(start: str, graph: dict[str, list[str]], members: set[str]) -> list[str]:
    """Shortest path start -> ... -> start inside the component (BFS)."""
    prev: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for t in graph[node]:
                if t not in members:
                    continue
                if t == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if t not in seen:
                    seen.add(t)
                    prev[t] = node
                    nxt.append(t)
        frontier = nxt
    return [start, start]  # unreachable for a real cycle


def _sccs(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iterative (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for t in it:
                if t not in index:
                    index[t] = low[t] = counter
                    counter += 1
                    stack.append(t)
                    on_stack.add(t)
                    work.append((t, iter(graph[t])))
                    advanced = True
                    break
                if t in on_stack:
                    low[node] = min(low[node], index[t])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(sorted(comp))
    return out
