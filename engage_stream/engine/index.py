"""Which definitions an input touches, and in which order they are evaluated.

Why: an event must only touch the definitions that name its event; a changed trait or
audience must re-evaluate exactly its dependents, after the value they read is final.
Definitions are put in one topological order (dependencies first; among independent
ones computed traits before audiences, then definition order), and everything the engine
evaluates in one step is processed in that order — which also makes the order of the
emitted changes deterministic.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Node(Protocol):
    key: str
    kind: str
    events: frozenset[str]
    deps: set[str]


@dataclass(frozen=True)
class Index:
    order: list[int]  # topological order: positions in the input sequence
    by_event: dict[str, tuple[int, ...]]  # event name -> ranks (ascending)
    by_key: dict[str, tuple[int, ...]]  # trait / audience key -> ranks of dependents
    dependents: list[tuple[int, ...]]  # rank -> ranks that read its value


def build_index(nodes: Sequence[Node]) -> Index:
    """Ranks are positions in the topological order. Raises ValueError on a cycle."""
    pos_of = {n.key: i for i, n in enumerate(nodes)}
    children: list[list[int]] = [[] for _ in nodes]
    indegree = [0] * len(nodes)
    for i, n in enumerate(nodes):
        for dep in sorted(n.deps):
            j = pos_of.get(dep)
            if j is None:
                continue  # a custom trait
            if j == i:
                raise ValueError(f"{n.key} refers to itself")
            children[j].append(i)
            indegree[i] += 1
    heap = [(_prio(n), i) for i, n in enumerate(nodes) if indegree[i] == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        _, i = heapq.heappop(heap)
        order.append(i)
        for c in children[i]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(heap, (_prio(nodes[c]), c))
    if len(order) != len(nodes):
        stuck = sorted(nodes[i].key for i in range(len(nodes)) if indegree[i] > 0)
        raise ValueError(f"definitions form a cycle: {', '.join(stuck)}")
    rank = {pos: r for r, pos in enumerate(order)}
    by_event: dict[str, list[int]] = {}
    by_key: dict[str, list[int]] = {}
    dependents: list[list[int]] = [[] for _ in nodes]
    for r, pos in enumerate(order):
        n = nodes[pos]
        for name in n.events:
            by_event.setdefault(name, []).append(r)
        for dep in n.deps:
            by_key.setdefault(dep, []).append(r)
            j = pos_of.get(dep)
            if j is not None:
                dependents[rank[j]].append(r)
    return Index(
        order=order,
        by_event={k: tuple(sorted(v)) for k, v in by_event.items()},
        by_key={k: tuple(sorted(v)) for k, v in by_key.items()},
        dependents=[tuple(sorted(d)) for d in dependents],
    )


def _prio(n: Node) -> int:
    return 0 if n.kind == "computed_trait" else 1


_EACH: object = object()  # "a value only each definition's own filter can decide"


class EventListeners:
    """Which definitions an event can touch: its name, then its equality filters.

    Why: most definitions that listen to an event name keep only some of those events
    (`category = shoes`, `page_name = Pricing`), and on a typical event all but one of a
    family of such definitions reject it. A definition whose stored events must satisfy
    `<top-level property> equals <string>` (`equality(rank, name)`) is indexed under that
    property and string: an event whose property is another string, or missing, cannot
    pass its filter (string against string equality is exact, and a missing value equals
    nothing), so the definition is not even asked. Any other value (a number, a boolean,
    a list) is left to the definitions' own filters, which know the coercions.

    `get` returns `(ranks ascending, the same as a set)`; results are memoised per
    combination of matched constants, so the memo is bounded by the definitions."""

    def __init__(
        self,
        by_event: dict[str, tuple[int, ...]],
        equality: Callable[[int, str], tuple[str, str] | None],
    ) -> None:
        self._plain: dict[str, tuple[tuple[int, ...], frozenset[int]]] = {}
        self._indexed: dict[
            str, tuple[list[int], list[tuple[str, dict[str, tuple[int, ...]], tuple[int, ...]]]]
        ] = {}
        self._memo: dict[tuple[Any, ...], tuple[tuple[int, ...], frozenset[int]]] = {}
        for name, ranks in by_event.items():
            always: list[int] = []
            groups: dict[str, dict[str, list[int]]] = {}
            for r in ranks:
                eq = equality(r, name)
                if eq is None:
                    always.append(r)
                else:
                    groups.setdefault(eq[0], {}).setdefault(eq[1], []).append(r)
            if not groups:
                self._plain[name] = (ranks, frozenset(ranks))
                continue
            self._indexed[name] = (
                always,
                [
                    (
                        prop,
                        {v: tuple(rs) for v, rs in table.items()},
                        tuple(sorted(r for rs in table.values() for r in rs)),
                    )
                    for prop, table in sorted(groups.items())
                ],
            )

    def get(self, name: str, props: dict[str, Any]) -> tuple[tuple[int, ...], frozenset[int]]:
        plain = self._plain.get(name)
        if plain is not None:
            return plain
        spec = self._indexed.get(name)
        if spec is None:
            return _NONE
        always, groups = spec
        sel: list[Any] = [name]
        for prop, table, _ in groups:
            v = props.get(prop)
            if type(v) is str:
                sel.append(v if v in table else None)
            elif v is None:
                sel.append(None)
            else:
                sel.append(_EACH)
        memo_key = tuple(sel)
        hit = self._memo.get(memo_key)
        if hit is None:
            ranks = list(always)
            for (_, table, everyone), v in zip(groups, sel[1:], strict=True):
                if v is _EACH:
                    ranks.extend(everyone)
                elif v is not None:
                    ranks.extend(table[v])
            ranks.sort()
            hit = self._memo[memo_key] = (tuple(ranks), frozenset(ranks))
        return hit


_NONE: tuple[tuple[int, ...], frozenset[int]] = ((), frozenset())
