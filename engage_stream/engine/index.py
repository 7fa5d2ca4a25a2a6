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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


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
