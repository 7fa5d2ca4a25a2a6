"""Audience conditions compiled to plain objects and closures, with their per-profile state.

An audience is compiled once into
- *event leaves* (one per event condition row, `EventLeaf` or `FunnelLeaf`), each owning one
  slot of the audience's state list in `ProfileRecord.engine[key]`;
- *trait leaves* and *audience leaves*, which read the profile and keep no state;
- an expression over them: rows joined by `join`, AND binding tighter than OR, groups as
  parentheses, `negate` as NOT (reference §1.2).

State per leaf is bounded by the window, never by the profile's history:
- `EventLeaf` without trait references keeps sorted event times, and of the events that
  already count only the newest `cap` (`count.value`, or + 1, see `count_cap`): the count
  is only ever compared with `count.value`, and since older events leave first, an older
  event can only be in the window when all the kept newer ones are — so min(count, cap),
  all the comparison needs, stays exact forever;
- `EventLeaf` whose filters reference traits keeps `[ts, property values]` for the events
  in the window (the filter is re-decided at evaluation: the trait may have changed);
- `EventLeaf` with a relative-date filter keeps `[ts, property values, spans]` until its
  spans end (`spans`: the instants it counts at, windows.py), rescanned at evaluation;
- `FunnelLeaf` keeps parent and child occurrences in the window (`[ts, values]`, plus
  `spans` when that side has a relative-date filter).
(A funnel, or a relative-date filter, with neither a window nor a lookback —
`include_history: false` and no `within` — is bounded only by the events since the
definition was applied.)

Wake-ups: an `EventLeaf` reports the exact instant its answer flips (replaying the enter
and leave edges of what it keeps, at most `EDGE_WALK` instants per evaluation: past that
it wakes up without a flip and replays on); funnel and trait leaves report the next
instant their answer *can* change (a parent entering or leaving, a deadline, a trait date crossing a
relative boundary). The audience's due time is the earliest over its leaves.
"""

from __future__ import annotations

import operator
from bisect import bisect_right, insort
from collections.abc import Callable, Sequence
from typing import Any

from engage_stream.definitions.models import (
    DURATION_OPS,
    AudienceCondition,
    AudienceDefinition,
    Count,
    EventCondition,
    FunnelStep,
    GroupCondition,
    TraitCondition,
)
from engage_stream.engine.filters import (
    DynamicFilters,
    TimedMatch,
    compile_dynamic_filters,
    compile_static_filters,
    compile_timed_filters,
    equality_filter,
    trait_value,
)
from engage_stream.engine.operators import (
    Path,
    compile_dynamic,
    compile_static,
    duration_next_edge,
    get_path,
    split_path,
)
from engage_stream.engine.state_text import decode as decode_state
from engage_stream.engine.windows import INF, Spans, Window, inside, live, next_bound
from engage_stream.profiles.record import ProfileRecord

Node = Callable[[list[bool], ProfileRecord, int], bool]  # (event leaf truths, profile, now)

_COUNT_OPS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "=": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    "<": operator.lt,
}


def count_test(c: Count) -> Callable[[int], bool]:
    f, v = _COUNT_OPS[c.operator], c.value
    return lambda n: f(n, v)


def count_cap(c: Count) -> int:
    """The comparison only depends on min(count, cap): `>= v` and `< v` need v, the
    others v + 1 (at least 1 kept, so "performed" leaves still have a next edge)."""
    return max(1, c.value if c.operator in (">=", "<") else c.value + 1)


def _ts(entry: list[Any]) -> int:
    return entry[0]  # type: ignore[no-any-return]


EDGE_WALK = 32  # edge instants `next_edge` replays per evaluation: bounds its work


def next_flip(test: Callable[[int], bool], n: int, starts: Edges, ends: Edges) -> int:
    """The first instant at which `test(count)` flips, the count being `n` now and moving
    +1 at each of `starts` and -1 at each of `ends` (sorted instants after now, read one
    at a time as reached); after `EDGE_WALK` instants without a flip, the next one (a
    wake-up that flips nothing: the replay goes on from there)."""
    cur = test(n)
    ns, ne = len(starts), len(ends)
    i = k = 0
    s = starts[0] if ns else INF
    e = ends[0] if ne else INF
    for _ in range(EDGE_WALK):
        at = s if s < e else e
        if at >= INF:
            return INF
        while s == at:
            n += 1
            i += 1
            s = starts[i] if i < ns else INF
        while e == at:
            n -= 1
            k += 1
            e = ends[k] if k < ne else INF
        if test(n) != cur:
            return at
    return s if s < e else e


class _Enters:
    """`times[j:]` entering at `ts + a`, computed when read."""

    __slots__ = ("times", "j", "a")

    def __init__(self, times: list[int], j: int, a: int) -> None:
        self.times, self.j, self.a = times, j, a

    def __len__(self) -> int:
        return len(self.times) - self.j

    def __getitem__(self, i: int) -> int:
        return self.times[self.j + i] + self.a


class _Leaves:
    """`times` leaving at `leave(ts)`, computed when read."""

    __slots__ = ("times", "leave")

    def __init__(self, times: list[int], leave: Callable[[int], int]) -> None:
        self.times, self.leave = times, leave

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, k: int) -> int:
        return self.leave(self.times[k])


Edges = list[int] | _Enters | _Leaves


def _prune(st: list[Any], t: int, leave: Callable[[int], int], keyed: bool) -> None:
    """Drop the prefix of entries that left the window by `t` (leave is monotonic)."""
    i, n = 0, len(st)
    if keyed:
        while i < n and leave(st[i][0]) <= t:
            i += 1
    else:
        while i < n and leave(st[i]) <= t:
            i += 1
    if i:
        del st[:i]


class EventLeaf:
    """Performed / not performed an event, `count` compared, within a window."""

    __slots__ = (
        "event",
        "static",
        "dyn",
        "timed",
        "w",
        "test",
        "performed",
        "cap",
        "equality",
        "usable",
        "fast",
        "a",
        "b",
        "at_least",
        "empty_truth",
    )

    def __init__(self, cond: EventCondition, window: Window) -> None:
        self.event = cond.event
        self.equality = equality_filter(cond.where)
        self.static = compile_static_filters(cond.where)
        self.dyn: DynamicFilters | None = compile_dynamic_filters(cond.where)
        self.timed: TimedMatch | None = compile_timed_filters(cond.where)
        self.w = window
        self.test = count_test(cond.count)
        self.performed = cond.performed
        self.cap = count_cap(cond.count)
        self.usable = window.usable_fn()
        # plain times in a window that leaves at ts + b: `step`'s arithmetic fast path
        self.fast = self.dyn is None and self.timed is None and window.linear
        self.a, self.b = window.a, window.b
        self.at_least = cond.count.value if cond.count.operator == ">=" else None
        self.empty_truth = self.holds(None, ProfileRecord(profile_id=""), 0)

    def trait_keys(self) -> set[str]:
        return self.dyn.trait_keys() if self.dyn is not None else set()

    def prepare(self, name: str, props: dict[str, Any], ts: int, now: int) -> Any:
        """What to store for this event (decided without the state), or None."""
        if not self.static(props):
            return None
        if self.timed is not None:
            spans = self.w.spans(ts, self.timed(props))
            if not live(spans, now):
                return None
            return [ts, self.dyn.values(props) if self.dyn is not None else [], spans]
        if not self.usable(ts, now):
            return None
        return ts if self.dyn is None else [ts, self.dyn.values(props)]

    def insert(self, st: Any, item: Any) -> list[Any]:
        if st is None:
            return [item]
        if type(item) is int:
            insort(st, item)
        else:
            insort(st, item, key=_ts)
        return st  # type: ignore[no-any-return]

    def advance(self, st: list[Any], t: int) -> list[Any] | None:
        w = self.w
        if self.timed is not None:  # (counting no longer a contiguous run: filter)
            if any(e[2][-1] <= t for e in st):
                st = [e for e in st if e[2][-1] > t]
        elif self.dyn is None:
            _prune(st, t, w.leave, False)
            j = bisect_right(st, t - w.a)
            if j > self.cap:
                del st[: j - self.cap]
        else:
            _prune(st, t, w.leave, True)
        return st or None

    def count(self, st: list[Any] | None, profile: ProfileRecord, t: int) -> int:
        if not st:
            return 0
        dyn = self.dyn
        if self.timed is not None:
            n, cap = 0, self.cap
            for e in st:
                if inside(e[2], t) and (dyn is None or dyn.ok(e[1], profile)):
                    n += 1
                    if n >= cap:
                        break
            return n
        if dyn is None:
            return bisect_right(st, t - self.w.a)
        j = bisect_right(st, t - self.w.a, key=_ts)
        n, ok, cap = 0, dyn.ok, self.cap
        for i in range(j):
            if ok(st[i][1], profile):
                n += 1
                if n >= cap:
                    break
        return n

    def holds(self, st: list[Any] | None, profile: ProfileRecord, t: int) -> bool:
        r = self.test(self.count(st, profile, t))
        return r if self.performed else not r

    def step(self, st: list[Any], profile: ProfileRecord, t: int) -> tuple[bool, Any, int]:
        """`advance`, `holds` and `next_edge` at once on stored state: (answer, state or
        None, next edge or INF)."""
        if not self.fast:
            st = self.advance(st, t)  # type: ignore[assignment]
            if st is None:
                return self.empty_truth, None, INF
            return self.holds(st, profile, t), st, self.next_edge(st, t, profile)
        a, b = self.a, self.b
        i = bisect_right(st, t - b)  # left: ts + b <= t
        if i:
            del st[:i]
        j = bisect_right(st, t - a)  # counting
        cap = self.cap
        if j > cap:
            del st[: j - cap]
            j = cap
        if not st:
            return self.empty_truth, None, INF
        v = self.at_least
        r = j >= v if v is not None else self.test(j)
        truth = r if self.performed else not r
        if v is not None and a == 0 and st[-1] <= t:
            # next_edge's common case in closed form: the count only falls, oldest first,
            # and `>= v` flips when the count drops below v
            n = len(st)
            return truth, st, (st[n - v] + b if v and n >= v else INF)
        return truth, st, self.next_edge(st, t, profile)

    def next_edge(self, st: list[Any], t: int, profile: ProfileRecord) -> int:
        """The first instant after `t` at which this leaf's answer flips, by replaying the
        enter/leave edges of the stored events (the capped count decides the comparison
        exactly, see module doc). Enter and leave times are both sorted like the event
        times, so the replay merges two runs from `t` on, lazily: no sort, and at most
        `EDGE_WALK` instants (see `next_flip`)."""
        if self.timed is not None:
            return self._next_edge_timed(st, t, profile)
        w = self.w
        a, leave = w.a, w.leave
        test = self.test
        if self.dyn is None:
            if a == 0 and st[-1] <= t:
                # the common case: everything stored counts, so the count can only fall,
                # one event at a time, oldest first
                n = len(st)
                cur = test(n)
                for k in range(1, n + 1):
                    if test(n - k) != cur:
                        return leave(st[k - 1])
                return INF
            times: list[int] = st
        else:
            ok = self.dyn.ok
            times = [e[0] for e in st if ok(e[1], profile)]
        j = bisect_right(times, t - a)  # counting now; the rest enter later, in order
        return next_flip(test, j, _Enters(times, j, a), _Leaves(times, leave))

    def _next_edge_timed(self, st: list[Any], t: int, profile: ProfileRecord) -> int:
        """`next_edge` over spans: any interval may start or end next, so sort them."""
        dyn = self.dyn
        starts: list[int] = []
        ends: list[int] = []
        n = 0
        for e in st:
            if dyn is not None and not dyn.ok(e[1], profile):
                continue
            spans: Spans = e[2]
            i = bisect_right(spans, t)
            n += i & 1
            starts.extend(spans[i + (i & 1) :: 2])
            ends.extend(spans[i + 1 - (i & 1) :: 2])
        starts.sort()
        ends.sort()
        return next_flip(self.test, n, starts, ends)


class FunnelLeaf:
    """Parent event (the row) then / then not a child event within `span` after each parent
    occurrence; the count is over qualifying parent occurrences in the parent window
    (reference §1.3: every occurrence counts, so Added → Completed → Added is still an
    abandonment).

    A parent at `tp` qualifies at `t`:
    - then:     some child at `tc` with tp < tc <= min(tp + span, t);
    - then_not: t >= tp + span and no child with tp < tc <= tp + span (only once the
      child's window is over can "did not" be known).
    State: `[parents, children]`, each a sorted list of `[ts, values]`."""

    __slots__ = (
        "event",
        "child_event",
        "pstatic",
        "pdyn",
        "ptimed",
        "pextract",
        "cstatic",
        "cdyn",
        "ctimed",
        "w",
        "test",
        "performed",
        "must",
        "span",
        "cap",
        "empty_truth",
    )

    def __init__(self, cond: EventCondition, step: FunnelStep, must: bool, window: Window) -> None:
        self.must = must
        self.event = cond.event
        self.child_event = step.event
        self.pstatic = compile_static_filters(cond.where)
        self.pdyn = compile_dynamic_filters(cond.where)
        self.ptimed = compile_timed_filters(cond.where)
        own = len(self.pdyn.extract) if self.pdyn is not None else 0
        parent_extract: list[Path] = []
        self.cstatic = compile_static_filters(step.where)
        self.cdyn = compile_dynamic_filters(step.where, parent_extract, own)
        self.ctimed = compile_timed_filters(step.where)
        self.pextract = tuple(parent_extract)
        self.w = window
        self.span = step.within.ms
        self.test = count_test(cond.count)
        self.performed = cond.performed
        self.cap = count_cap(cond.count)
        self.empty_truth = self.holds(None, ProfileRecord(profile_id=""), 0)

    def trait_keys(self) -> set[str]:
        keys: set[str] = set()
        for d in (self.pdyn, self.cdyn):
            if d is not None:
                keys |= d.trait_keys()
        return keys

    def prepare(self, name: str, props: dict[str, Any], ts: int, now: int) -> Any:
        """[parent entry or None, child entry or None], or None when it is neither. An
        entry is `[ts, values]`, plus the instants it qualifies at (`spans`) when that
        side has a relative-date filter."""
        w = self.w
        parent = child = None
        if name == self.event and self.pstatic(props):
            spans = None if self.ptimed is None else w.spans(ts, self.ptimed(props))
            if w.usable(ts, now) if spans is None else live(spans, now):
                vals = self.pdyn.values(props) if self.pdyn is not None else []
                if self.pextract:
                    vals.extend(get_path(props, p) for p in self.pextract)
                parent = [ts, vals] if spans is None else [ts, vals, spans]
        if name == self.child_event and self.cstatic(props) and ts > w.since and w.leave(ts) > now:
            spans = None if self.ctimed is None else self.ctimed(props)
            if spans is None or live(spans, now):
                vals = self.cdyn.values(props) if self.cdyn is not None else []
                child = [ts, vals] if spans is None else [ts, vals, spans]
        if parent is None and child is None:
            return None
        return [parent, child]

    def insert(self, st: Any, item: Any) -> list[Any]:
        st = st or [[], []]
        for role in (0, 1):
            entry = item[role]
            if entry is not None:
                entries = st[role]
                if not entries or entries[-1][0] <= entry[0]:
                    entries.append(entry)  # the newest: where insort would put it
                else:
                    insort(entries, entry, key=_ts)
        return st  # type: ignore[no-any-return]

    def advance(self, st: list[Any], t: int) -> list[Any] | None:
        w = self.w
        if w.linear:  # left: ts + b <= t
            cut = t - w.b
            for entries in st:
                i, n = 0, len(entries)
                while i < n and entries[i][0] <= cut:
                    i += 1
                if i:
                    del entries[:i]
        else:
            leave = w.leave
            _prune(st[0], t, leave, True)
            _prune(st[1], t, leave, True)
        return st if st[0] or st[1] else None

    def count(self, st: list[Any] | None, profile: ProfileRecord, t: int) -> int:
        if not st:
            return 0
        parents, children = st
        j = bisect_right(parents, t - self.w.a, key=_ts)
        n, nc = 0, len(children)
        must, span, pdyn, cdyn = self.must, self.span, self.pdyn, self.cdyn
        ptimed, ctimed = self.ptimed is not None, self.ctimed is not None
        for i in range(j):
            p = parents[i]
            tp, pv = p[0], p[1]
            if (pdyn is not None and not pdyn.ok(pv, profile)) or (ptimed and not inside(p[2], t)):
                continue
            deadline = tp + span
            found = False
            k = bisect_right(children, tp, key=_ts)
            while k < nc:
                c = children[k]
                if c[0] > deadline or (must and c[0] > t):
                    break
                if (cdyn is None or cdyn.ok(c[1], profile, pv)) and (not ctimed or inside(c[2], t)):
                    found = True
                    break
                k += 1
            if found if must else (t >= deadline and not found):
                n += 1
                if n >= self.cap:
                    break
        return n

    def holds(self, st: list[Any] | None, profile: ProfileRecord, t: int) -> bool:
        r = self.test(self.count(st, profile, t))
        return r if self.performed else not r

    def step(self, st: list[Any], profile: ProfileRecord, t: int) -> tuple[bool, Any, int]:
        """`advance`, `holds` and `next_edge` at once (see EventLeaf.step)."""
        st = self.advance(st, t)  # type: ignore[assignment]
        if st is None:
            return self.empty_truth, None, INF
        return self.holds(st, profile, t), st, self.next_edge(st, t, profile)

    def next_edge(self, st: list[Any], t: int, profile: ProfileRecord) -> int:
        parents, children = st
        w = self.w
        edge = INF
        if parents:
            edge = w.leave(parents[0][0])
            j = bisect_right(parents, t - w.a, key=_ts)
            if j < len(parents):
                edge = min(edge, parents[j][0] + w.a)
            if not self.must:
                k = bisect_right(parents, t - self.span, key=_ts)
                if k < len(parents):
                    edge = min(edge, parents[k][0] + self.span)
        if self.must and children:
            k = bisect_right(children, t, key=_ts)
            if k < len(children):
                edge = min(edge, children[k][0])
        for timed, entries in ((self.ptimed, parents), (self.ctimed, children)):
            if timed is not None:
                for e in entries:
                    edge = min(edge, next_bound(e[2], t))
        return edge


class TraitLeaf:
    """A trait compared with an operator; duration operators are relative to `now`, and
    their flip instants are wake-ups."""

    __slots__ = ("source", "path", "pred", "dyn", "ref", "op", "value")

    def __init__(self, cond: TraitCondition) -> None:
        self.source = cond.source
        self.path = split_path(cond.trait)
        self.op = cond.operator
        self.value = cond.value
        self.ref: Path | None = None
        if cond.value_from is not None:
            if cond.value_from.trait is None:  # (the models reject it)
                raise ValueError("parent_property references are only allowed in funnel steps")
            self.ref = split_path(cond.value_from.trait)
            self.dyn = compile_dynamic(cond.operator)
        else:
            self.pred = compile_static(cond.operator, cond.value)

    @property
    def timed(self) -> bool:
        return self.op in DURATION_OPS

    def trait_keys(self) -> set[str]:
        keys = {self.path[0]}
        if self.ref is not None:
            keys.add(self.ref[0])
        return keys

    def read(self, profile: ProfileRecord) -> Any:
        key = self.path[0]
        if self.source == "any":
            v = profile.trait(key)
        else:
            tv = (profile.traits if self.source == "custom" else profile.computed_traits).get(key)
            v = tv.value if tv is not None else None
        return get_path(v, self.path[1:]) if len(self.path) > 1 and v is not None else v

    def holds(self, truths: list[bool], profile: ProfileRecord, t: int) -> bool:
        x = self.read(profile)
        if self.ref is not None:
            return self.dyn(x, trait_value(profile, self.ref))
        return self.pred(x, t)

    def next_edge(self, profile: ProfileRecord, t: int) -> int:
        e = duration_next_edge(self.op, self.value, self.read(profile), t)
        return INF if e is None else e


def _and(nodes: list[Node]) -> Node:
    if len(nodes) == 1:
        return nodes[0]

    def all_of(e: list[bool], p: ProfileRecord, t: int) -> bool:
        for n in nodes:  # noqa: SIM110 (hot path: no generator)
            if not n(e, p, t):
                return False
        return True

    return all_of


def _or(nodes: list[Node]) -> Node:
    if len(nodes) == 1:
        return nodes[0]

    def any_of(e: list[bool], p: ProfileRecord, t: int) -> bool:
        for n in nodes:  # noqa: SIM110 (hot path: no generator)
            if n(e, p, t):
                return True
        return False

    return any_of


def _slot(i: int) -> Node:
    return lambda e, p, t: e[i]


def _member(key: str, member: bool) -> Node:
    def part_of(e: list[bool], p: ProfileRecord, t: int) -> bool:
        tv = p.audiences.get(key)
        return (tv is not None and tv.value is True) is member

    return part_of


def _negate(node: Node) -> Node:
    return lambda e, p, t: not node(e, p, t)


class CompiledAudience:
    """One audience: event leaves (with state), trait/audience leaves, the expression."""

    kind = "audience"

    def __init__(self, d: AudienceDefinition, applied_at: int) -> None:
        self.key = d.key
        self.definition = d
        self.include_anonymous = d.include_anonymous
        self.history = d.include_history
        self.applied_at = applied_at
        self.event_leaves: list[EventLeaf | FunnelLeaf] = []
        self.timed_traits: list[TraitLeaf] = []
        self.deps: set[str] = set()
        self.expr = self._rows(d.conditions)
        by_event: dict[str, list[int]] = {}
        for i, leaf in enumerate(self.event_leaves):
            by_event.setdefault(leaf.event, []).append(i)
            if isinstance(leaf, FunnelLeaf) and leaf.child_event != leaf.event:
                by_event.setdefault(leaf.child_event, []).append(i)
        self.by_event = {k: tuple(v) for k, v in by_event.items()}
        self.events = frozenset(by_event)
        # specialised paths for the most common shape: a single event row
        if len(d.conditions) == 1 and isinstance(d.conditions[0], EventCondition):
            self.evaluate = self._evaluate_one  # type: ignore[method-assign]
            leaf = self.event_leaves[0]
            if isinstance(leaf, EventLeaf) and leaf.dyn is None and leaf.timed is None:
                self.ingest = self._ingest_one_time  # type: ignore[method-assign]

    # -- compilation ---------------------------------------------------------------------
    def _rows(self, rows: Sequence[Any]) -> Node:
        groups: list[list[Node]] = [[]]
        for i, row in enumerate(rows):
            if i > 0 and row.join == "or":
                groups.append([])
            groups[-1].append(self._row(row))
        return _or([_and(g) for g in groups])

    def _row(self, row: Any) -> Node:
        if isinstance(row, EventCondition):
            window = Window.of(row.within, row.between, self.history, self.applied_at)
            funnel = row.funnel
            leaf: EventLeaf | FunnelLeaf = (
                FunnelLeaf(row, *funnel, window) if funnel is not None else EventLeaf(row, window)
            )
            self.deps |= leaf.trait_keys()
            self.event_leaves.append(leaf)
            return _slot(len(self.event_leaves) - 1)
        if isinstance(row, TraitCondition):
            tl = TraitLeaf(row)
            self.deps |= tl.trait_keys()
            if tl.timed:
                self.timed_traits.append(tl)
            return tl.holds
        if isinstance(row, AudienceCondition):
            self.deps.add(row.audience)
            return _member(row.audience, row.member)
        if isinstance(row, GroupCondition):
            inner = self._rows(row.group)
            return _negate(inner) if row.negate else inner
        raise TypeError(f"unknown condition row {type(row).__name__}")

    def equality_filter(self, name: str) -> tuple[str, str] | None:
        """(property, string) every event named `name` must equal to be stored, if any
        (see index.EventListeners): only for one plain event row listening to it."""
        slots = self.by_event.get(name, ())
        if len(slots) != 1:
            return None
        leaf = self.event_leaves[slots[0]]
        return leaf.equality if isinstance(leaf, EventLeaf) else None

    # -- state -----------------------------------------------------------------------------
    def ingest(
        self, state: Any, name: str, props: dict[str, Any], ts: int, message_id: str, now: int
    ) -> tuple[Any, bool]:
        """(state, whether the event was stored anywhere): an event no leaf keeps cannot
        change the result, so the engine skips evaluating it. `state` may still be the
        stored JSON string: it is only decoded when something is stored."""
        slots = self.by_event.get(name)
        changed = False
        if not slots:
            return state, changed
        leaves = self.event_leaves
        for i in slots:
            leaf = leaves[i]
            item = leaf.prepare(name, props, ts, now)
            if item is None:
                continue
            if type(state) is str:
                state = decode_state(state)
            if state is None:
                state = [None] * len(leaves)
            state[i] = leaf.insert(state[i], item)
            changed = True
        return state, changed

    def _ingest_one_time(
        self, state: Any, name: str, props: dict[str, Any], ts: int, message_id: str, now: int
    ) -> tuple[Any, bool]:
        """`ingest` for an audience whose only event row keeps plain times."""
        leaf: EventLeaf = self.event_leaves[0]  # type: ignore[assignment]
        if name != leaf.event or not leaf.static(props) or not leaf.usable(ts, now):
            return state, False
        if type(state) is str:
            state = decode_state(state)
        if state is None:
            return [[ts]], True
        st = state[0]
        if st is None:
            state[0] = [ts]
        elif not st or st[-1] <= ts:
            st.append(ts)  # the newest: where insort would put it
        else:
            insort(st, ts)
        return state, True

    def evaluate(
        self, state: Any, profile: ProfileRecord, t: int, identified: bool
    ) -> tuple[bool, int, Any]:
        """(member, next instant the answer can change or INF, pruned state or None)."""
        truths: list[bool] = []
        due = INF
        live = False
        for i, leaf in enumerate(self.event_leaves):
            st = state[i] if state is not None else None
            if st is None:
                truths.append(leaf.empty_truth)
                continue
            truth, st, e = leaf.step(st, profile, t)
            state[i] = st
            truths.append(truth)
            if st is not None:
                live = True
                if e < due:
                    due = e
        allowed = self.include_anonymous or identified
        member = allowed and self.expr(truths, profile, t)
        if not allowed:
            due = INF  # nothing can change until the profile is identified
        else:
            for tl in self.timed_traits:
                e = tl.next_edge(profile, t)
                if e < due:
                    due = e
        return member, due, state if live else None

    def _evaluate_one(
        self, state: Any, profile: ProfileRecord, t: int, identified: bool
    ) -> tuple[bool, int, Any]:
        """`evaluate` for an audience that is one event row (expression = that row)."""
        leaf = self.event_leaves[0]
        st = state[0] if state is not None else None
        if st is None:
            truth, due = leaf.empty_truth, INF
        else:
            truth, st, due = leaf.step(st, profile, t)
            state[0] = st
        if not (self.include_anonymous or identified):
            return False, INF, state if st is not None else None
        return truth, due, state if st is not None else None
