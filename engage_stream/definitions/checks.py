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
checked for cycles, not for existence.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from engage_stream.definitions.models import (
    DATE_OPS,
    DURATION_OPS,
    LIST_OPS,
    NO_VALUE_OPS,
    ORDER_OPS,
    STRING_OPS,
    AudienceCondition,
    AudienceDefinition,
    ComputedTraitDefinition,
    EventCondition,
    GroupCondition,
    Op,
    PropertyFilter,
    TraitCondition,
)
from engage_stream.definitions.problems import Path_, Problem, Source

AnyDefinition = AudienceDefinition | ComputedTraitDefinition

NUMERIC_TRAIT_TYPES = frozenset({"counter", "sum", "avg", "min", "max", "unique_count"})
LIST_TRAIT_TYPES = frozenset({"unique_list"})

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


def iter_references(defn: AnyDefinition) -> Iterator[Reference]:
    """Every reference a definition makes, with its path inside the definition."""
    if isinstance(defn, ComputedTraitDefinition):
        yield from _filter_refs(defn.where, ("where",))
        return
    yield from _condition_refs(defn.conditions, ("conditions",))


def _condition_refs(conditions: Sequence[object], base: Path_) -> Iterator[Reference]:
    for i, cond in enumerate(conditions):
        path = (*base, i)
        if isinstance(cond, AudienceCondition):
            yield Reference("audience", cond.audience, (*path, "audience"))
        elif isinstance(cond, TraitCondition):
            yield Reference("trait", cond.trait, (*path, "trait"), cond.source)
            if cond.value_from is not None and cond.value_from.trait is not None:
                yield Reference("value_from", cond.value_from.trait, (*path, "value_from", "trait"))
        elif isinstance(cond, EventCondition):
            yield from _filter_refs(cond.where, (*path, "where"))
            funnel = cond.funnel
            if funnel is not None:
                name = "then" if funnel[1] else "then_not"
                yield from _filter_refs(funnel[0].where, (*path, name, "where"))
        elif isinstance(cond, GroupCondition):
            yield from _condition_refs(cond.group, (*path, "group"))


def _filter_refs(filters: Sequence[PropertyFilter], base: Path_) -> Iterator[Reference]:
    for i, f in enumerate(filters):
        if f.value_from is not None and f.value_from.trait is not None:
            yield Reference("value_from", f.value_from.trait, (*base, i, "value_from", "trait"))


def _suggest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_definitions(
    definitions: Sequence[AnyDefinition],
    sources: Sequence[Source] | None = None,
    declared: dict[str, str] | None = None,
) -> list[Problem]:
    """Cross-definition problems. `sources[i]` says where `definitions[i]` was written
    (file and YAML node, for line numbers); without it problems name `<definitions>`.
    `declared` maps keys of definitions that failed their own validation to their kind,
    so a reference to them is not reported as unknown as well."""
    if sources is None:
        sources = [Source("<definitions>", d.key) for d in definitions]
    problems: list[Problem] = []

    # -- duplicate keys (audiences and computed traits share one namespace) --------------
    first: dict[str, int] = {}
    for i, d in enumerate(definitions):
        if d.key in first:
            j = first[d.key]
            other = sources[j]
            at = f"{other.file}:{other.line()}" if other.line() else other.file
            problems.append(
                sources[i].problem(
                    ("key",),
                    f"duplicate key '{d.key}': already used by the "
                    f"{_kind_name(definitions[j])} at {at} (audience and computed-trait keys "
                    "share one namespace)",
                )
            )
        else:
            first[d.key] = i
    unique = [(definitions[i], sources[i]) for i in sorted(first.values())]

    audiences = {d.key: d for d, _ in unique if isinstance(d, AudienceDefinition)}
    traits = {d.key: d for d, _ in unique if isinstance(d, ComputedTraitDefinition)}
    declared = declared or {}
    declared_audiences = {k for k, kind in declared.items() if kind == "audience"}
    declared_traits = {k for k, kind in declared.items() if kind == "computed_trait"}

    # -- references ---------------------------------------------------------------------
    edges: dict[str, list[tuple[str, Path_]]] = {d.key: [] for d, _ in unique}
    for d, src in unique:
        for ref in iter_references(d):
            problems.extend(
                _check_reference(
                    d, src, ref, audiences, traits, declared_audiences, declared_traits
                )
            )
            target = _dependency(ref, audiences, traits)
            if target is not None:
                edges[d.key].append((target, ref.path))
        if isinstance(d, AudienceDefinition):
            problems.extend(_check_types(d, src, audiences, traits))
        names: set[str] = set()
        for i, dest in enumerate(d.destinations):
            if dest.name in names:
                problems.append(
                    src.problem(
                        ("destinations", i, "name"),
                        f"destination '{dest.name}' is listed twice (one entry per "
                        "destination; it can send both identify and track)",
                    )
                )
            names.add(dest.name)

    # -- cycles ---------------------------------------------------------------------------
    by_key = {d.key: (d, src) for d, src in unique}
    for cycle in find_cycles(edges):
        head = cycle[0]
        d, src = by_key[head]
        path = next(p for t, p in edges[head] if t == cycle[1])
        kinds = {_kind_name(by_key[k][0]) for k in cycle}
        what = "audience cycle" if kinds == {"audience"} else "definition cycle"
        problems.append(src.problem(path, f"{what}: {' -> '.join(cycle)}"))
    return problems


def _kind_name(d: AnyDefinition) -> str:
    return "audience" if isinstance(d, AudienceDefinition) else "computed trait"


def _dependency(
    ref: Reference,
    audiences: dict[str, AudienceDefinition],
    traits: dict[str, ComputedTraitDefinition],
) -> str | None:
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
    d: AnyDefinition,
    src: Source,
    ref: Reference,
    audiences: dict[str, AudienceDefinition],
    traits: dict[str, ComputedTraitDefinition],
    declared_audiences: set[str],
    declared_traits: set[str],
) -> list[Problem]:
    if ref.kind == "audience":
        if ref.target in audiences or ref.target in declared_audiences:
            return []
        if ref.target in traits or ref.target in declared_traits:
            msg = (
                f"'{ref.target}' is a computed trait, not an audience "
                f"(compare it with a trait condition: `trait: {ref.target}`)"
            )
        else:
            msg = f"unknown audience '{ref.target}'" + _suggest(ref.target, list(audiences))
        return [src.problem(ref.path, msg)]
    if ref.kind == "trait" and ref.source == "computed":
        if ref.target in traits or ref.target in declared_traits:
            return []
        if ref.target in audiences or ref.target in declared_audiences:
            msg = (
                f"'{ref.target}' is an audience, not a computed trait "
                f"(use `audience: {ref.target}`, or `source: any`)"
            )
        else:
            msg = (
                f"unknown computed trait '{ref.target}': source: computed needs a computed "
                "trait defined alongside" + _suggest(ref.target, list(traits))
            )
        return [src.problem(ref.path, msg)]
    return []


def _check_types(
    d: AudienceDefinition,
    src: Source,
    audiences: dict[str, AudienceDefinition],
    traits: dict[str, ComputedTraitDefinition],
) -> Iterator[Problem]:
    """Operators and values that cannot fit the computed trait / membership compared."""
    for cond, path in _trait_conditions(d.conditions, ("conditions",)):
        if cond.source == "custom":
            continue
        op, value = cond.operator, cond.value
        if cond.trait in traits and cond.source in ("any", "computed"):
            t = traits[cond.trait]
            if t.type in NUMERIC_TRAIT_TYPES:
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
