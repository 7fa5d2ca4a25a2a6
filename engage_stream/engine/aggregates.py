"""Computed traits (reference §2): per-type aggregates over a window, updated in O(1)
per event (amortised), with state bounded by the window.

Storage, by window (see windows.py for when an event counts):
- *exact* (explicit `within` / `between`): one entry per qualifying event in the window,
  sorted by time, stored column-wise as `[times, contributions, total, k]` (a counter's
  contributions are all 1 and not stored: `None`) — two flat lists decode and encode at
  about half the cost of one small list per event. The entries that already count are a
  prefix (`k` of them); invertible aggregates (counter, sum, avg, most_frequent,
  unique_*) keep a running total of that prefix, adding an entry when it starts to count
  and subtracting it when it leaves, so an evaluation never re-reads the window. (State
  written as `[[[ts, contribution], ...], total, k]` by earlier versions is converted
  when read);
- *bucketed* (no explicit window: the hour-precise lookback, or nothing): one
  `[hour, partial]` per hour with events (a single bucket when nothing ever leaves),
  plus `pending` events whose time is not reached yet, plus the running total — a 90-day
  counter keeps at most 2,160 entries however many events there are;
- *dynamic* (a `where` filter compares with a trait): `[ts, contribution, values]` per
  event; the filter is re-decided at every evaluation (the trait may have changed).

Non-invertible types read the window's ends: first = oldest counting entry, last = newest
(older entries are dropped: they can never be the answer again); min / max keep a
"staircase" — an entry with a newer entry at least as good can never be the answer again,
since the newer one leaves later — so the answer is the oldest kept entry.

Exact and order-independent: sums are Shewchuk partials (the algorithm behind
`math.fsum`, exact under addition and subtraction), a sum is an int while no float is in
it, and ties break on values, never on arrival. Any arrival order of the same events
yields the same value.

Values: counter, sum, avg, min, max, most_frequent, first, last, unique_list,
unique_count. An event without the property (or, for sum/avg/min/max, whose property is
not a number) does not count. No qualifying event → None (the trait is cleared).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from typing import Any

import orjson

from engage_stream.definitions.models import ComputedTraitDefinition
from engage_stream.engine.filters import (
    DynamicFilters,
    always,
    compile_dynamic_filters,
    compile_static_filters,
    equality_filter,
)
from engage_stream.engine.operators import get_path, split_path
from engage_stream.engine.windows import INF, Window
from engage_stream.profiles.record import ProfileRecord

Partial = Any


def _ts(entry: list[Any]) -> int:
    return entry[0]  # type: ignore[no-any-return]


def _number(v: Any) -> int | float | None:
    t = type(v)
    if t is int:
        return v  # type: ignore[no-any-return]
    if t is float and math.isfinite(v):
        return v  # type: ignore[no-any-return]
    return None


def value_key(v: Any) -> str:
    """How most_frequent / unique compare values: as strings (non-strings as JSON)."""
    return v if type(v) is str else orjson.dumps(v).decode()


def _msum(partials: list[float], x: float) -> None:
    """Add x to a list of non-overlapping float partials, exactly (Shewchuk / msum)."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


# -- invertible aggregates: partial = running total of some events ----------------------
class Invertible:
    """lift(contribution) → partial; merge / unmerge partials (mutating the first)."""

    def lift(self, c: Any) -> Partial:
        raise NotImplementedError

    def zero(self) -> Partial:
        raise NotImplementedError

    def merge(self, p: Partial, q: Partial, sign: int = 1) -> Partial:
        raise NotImplementedError

    def value(self, p: Partial) -> Any:
        raise NotImplementedError


class _Counter(Invertible):
    def lift(self, c: Any) -> Partial:
        return 1

    def zero(self) -> Partial:
        return 0

    def merge(self, p: Partial, q: Partial, sign: int = 1) -> Partial:
        return p + sign * q

    def value(self, p: Partial) -> Any:
        return p or None


class _Sum(Invertible):
    """[int part, float partials, count, float count]."""

    def __init__(self, average: bool) -> None:
        self.average = average

    def lift(self, c: Any) -> Partial:
        return [c, [], 1, 0] if type(c) is int else [0, [c], 1, 1]

    def zero(self) -> Partial:
        return [0, [], 0, 0]

    def merge(self, p: Partial, q: Partial, sign: int = 1) -> Partial:
        p[0] += sign * q[0]
        floats = p[1]
        for x in q[1]:
            _msum(floats, sign * x)
        p[2] += sign * q[2]
        p[3] += sign * q[3]
        if not p[3]:
            p[1] = []
        return p

    def value(self, p: Partial) -> Any:
        if not p[2]:
            return None
        total = math.fsum([*p[1], p[0]]) if p[3] else p[0]
        return total / p[2] if self.average else total


class _Counts(Invertible):
    """{value key: occurrences}."""

    def __init__(self, final: Callable[[dict[str, int]], Any]) -> None:
        self.final = final

    def lift(self, c: Any) -> Partial:
        return {c: 1}

    def zero(self) -> Partial:
        return {}

    def merge(self, p: Partial, q: Partial, sign: int = 1) -> Partial:
        for k, n in q.items():
            m = p.get(k, 0) + sign * n
            if m:
                p[k] = m
            else:
                del p[k]
        return p

    def value(self, p: Partial) -> Any:
        return self.final(p) if p else None


def _most_frequent(min_frequency: int) -> Callable[[dict[str, int]], Any]:
    def pick(counts: dict[str, int]) -> str | None:
        # the highest count (if frequent enough), ties broken by the smallest value
        n = max(counts.values())
        if n < min_frequency:
            return None
        return min(k for k, m in counts.items() if m == n)

    return pick


# -- ends: first / last / min / max ------------------------------------------------------
def _better(kind: str) -> Callable[[Any, Any], bool]:
    """better(newer, older): the newer entry makes the older one useless."""
    if kind == "max":
        return lambda new, old: bool(new >= old)
    if kind == "min":
        return lambda new, old: bool(new <= old)
    return lambda new, old: True  # last: any newer entry wins


class CompiledTrait:
    """One computed trait: compiled filters, window and aggregate; see module doc."""

    kind = "computed_trait"

    def __init__(self, d: ComputedTraitDefinition, applied_at: int) -> None:
        self.key = d.key
        self.definition = d
        self.include_anonymous = d.include_anonymous
        self.event = d.event
        self.events = frozenset({d.event})
        self.type = d.type
        self.path = split_path(d.property) if d.property else None
        self.static = compile_static_filters(d.where)
        self.dyn: DynamicFilters | None = compile_dynamic_filters(d.where)
        self.deps: set[str] = self.dyn.trait_keys() if self.dyn is not None else set()
        self.w = Window.of(d.within, d.between, d.include_history, applied_at)
        self.mode = (
            "dynamic" if self.dyn is not None else "bucketed" if self.w.bucketable else "exact"
        )
        self.inv: Invertible | None = None
        t = d.type
        if t == "counter":
            self.inv = _Counter()
        elif t in ("sum", "avg"):
            self.inv = _Sum(average=t == "avg")
        elif t == "most_frequent":
            self.inv = _Counts(_most_frequent(d.min_frequency))
        elif t == "unique_list":
            self.inv = _Counts(sorted)
        elif t == "unique_count":
            self.inv = _Counts(len)
        self.numeric = t in ("sum", "avg", "min", "max")
        self.keyed = t in ("most_frequent", "unique_list", "unique_count")
        self.ends = t in ("first", "last")
        self.better = _better(t) if t in ("min", "max", "last") else None
        # first/last: ties at one instant break on the value, never on arrival
        self.order: Callable[[list[Any]], Any] = (
            (lambda e: (e[0], value_key(e[1]))) if self.ends else _ts
        )
        # hot-path specialisations (same results as the general code they replace)
        self.usable = self.w.usable_fn()
        self.filtered = self.static is not always
        self.since = self.w.since
        self.plain_window = self.w.linear and self.w.b > self.w.a
        self.linear = self.w.linear  # leave(ts) == ts + b
        self.b = self.w.b
        self.agg = "counter" if t == "counter" else "counts" if self.keyed else "other"
        self.evaluate = (  # type: ignore[method-assign]
            self._evaluate_exact_or_none if self.mode == "exact" else self._evaluate_any
        )

    def equality_filter(self, name: str) -> tuple[str, str] | None:
        """(property, string) every stored event must equal, if any (index.EventListeners)."""
        return equality_filter(self.definition.where) if name == self.event else None

    # -- ingest -------------------------------------------------------------------------
    def contribution(self, props: dict[str, Any]) -> Any:
        """What one event adds (None: it does not count)."""
        if self.path is None:
            return 1
        p = self.path
        v = props.get(p[0]) if len(p) == 1 else get_path(props, p)
        if v is None:
            return None
        if self.numeric:
            return _number(v)
        if self.keyed:
            return value_key(v)
        return v

    def ingest(
        self, state: Any, name: str, props: dict[str, Any], ts: int, message_id: str, now: int
    ) -> tuple[Any, bool]:
        """(state, whether the event counts for this trait at all). `state` may still be
        the stored JSON string: it is only decoded when the event counts."""
        if self.filtered and not self.static(props, ts):
            return state, False
        if self.plain_window:  # Window.usable for ts + b windows, inlined
            if ts + self.b <= now or ts < self.since:
                return state, False
        elif not self.usable(ts, now):
            return state, False
        c = self.contribution(props)
        if c is None:
            return state, False
        if type(state) is str:
            state = orjson.loads(state)
        if self.mode == "dynamic":
            state = state or [[]]
            insort(state[0], [ts, c, self.dyn.values(props)], key=_ts)  # type: ignore[union-attr]
        elif self.mode == "exact":
            if state is None:
                state = [[], None if self.agg == "counter" else [], self._zero(), 0]
            elif len(state) == 3:
                state = self._columns(state)
            times, values = state[0], state[1]
            n = len(times)
            if not n or times[-1] < ts:
                i = n  # the newest: what the search below finds, cheaper
            else:
                i = bisect_right(times, ts)
                if self.ends:  # one instant: ordered by the value too (never by arrival)
                    vk = value_key(c)
                    j = bisect_left(times, ts)
                    while j < i and value_key(values[j]) <= vk:
                        j += 1
                    i = j
            times.insert(i, ts)
            if values is not None:
                values.insert(i, c)
            if i < state[3]:  # a newer entry already counts, so this one does too
                state[3] += 1
                if self.inv is not None:
                    state[2] = self.inv.merge(state[2], self.inv.lift(c))
        else:
            if state is None:
                state = [[], [], self.inv.zero() if self.inv else None]
            if ts <= now:
                self._bucket_add(state, ts, c)
            else:
                insort(state[1], [ts, c], key=self.order)
        return state, True

    def _zero(self) -> Partial:
        return self.inv.zero() if self.inv is not None else None

    def _columns(self, state: list[Any]) -> list[Any]:
        """Exact state of earlier versions (`[[[ts, c], ...], total, k]`) column-wise."""
        entries, total, k = state
        values = None if self.agg == "counter" else [e[1] for e in entries]
        return [[e[0] for e in entries], values, total, k]

    def _partial(self, ts: int, c: Any) -> Partial:
        if self.inv is not None:
            return self.inv.lift(c)
        if self.ends:
            return [ts, value_key(c), c]
        return c  # min / max

    def _bucket_add(self, state: list[Any], ts: int, c: Any) -> None:
        main = state[0]
        key = self.w.bucket(ts)
        q = self._partial(ts, c)
        if self.inv is not None:
            state[2] = self.inv.merge(state[2], q)
        i = bisect_left(main, key, key=_ts)
        if i == len(main) or main[i][0] != key:
            main.insert(i, [key, q])
            return
        p = main[i][1]
        if self.inv is not None:
            main[i][1] = self.inv.merge(p, q)
        elif self.type == "first":
            main[i][1] = min(p, q, key=lambda x: (x[0], x[1]))
        elif self.type == "last":
            main[i][1] = max(p, q, key=lambda x: (x[0], x[1]))
        elif self.type == "max":
            main[i][1] = max(p, q) if p != q else (p if type(p) is int else q)
        else:
            main[i][1] = min(p, q) if p != q else (p if type(p) is int else q)

    # -- evaluate -------------------------------------------------------------------------
    def evaluate(self, state: Any, profile: ProfileRecord, t: int) -> tuple[Any, int, Any]:
        """(value or None, next instant the value can change or INF, pruned state)."""
        return self._evaluate_any(state, profile, t)  # (replaced per instance in __init__)

    def _evaluate_exact_or_none(
        self, state: Any, profile: ProfileRecord, t: int
    ) -> tuple[Any, int, Any]:
        if state is None:
            return None, INF, None
        if len(state) == 3:
            state = self._columns(state)
        return self._evaluate_exact(state, t)

    def _evaluate_any(self, state: Any, profile: ProfileRecord, t: int) -> tuple[Any, int, Any]:
        if state is None:
            return None, INF, None
        if self.mode == "bucketed":
            return self._evaluate_bucketed(state, t)
        if self.mode == "exact":
            return self._evaluate_exact(state, t)
        return self._evaluate_dynamic(state, profile, t)

    def _staircase(self, entries: list[Any], k: int, value_at: int) -> int:
        """Drop counting entries (the first k) that a newer counting entry beats; returns
        the new k. The survivors' values strictly improve towards the oldest."""
        better = self.better
        assert better is not None
        keep: list[Any] = []
        best: Any = None
        for i in range(k - 1, -1, -1):
            e = entries[i]
            if best is None or not better(best, e[value_at]):
                keep.append(e)
                best = e[value_at]
        if len(keep) != k:
            keep.reverse()
            entries[:k] = keep
        return len(keep)

    def _evaluate_exact(self, state: list[Any], t: int) -> tuple[Any, int, Any]:
        times, values, total, k = state
        w, inv = self.w, self.inv
        limit = t - w.a
        n = len(times)
        agg = self.agg
        if k < n and times[k] <= limit:  # start counting
            k0 = k
            while k < n and times[k] <= limit:
                k += 1
            if agg == "counter":  # _Counter: lift = 1, merge = +
                total += k - k0
            elif agg == "counts":  # _Counts: lift(c) = {c: 1}
                for x in range(k0, k):
                    c = values[x]
                    m = total.get(c, 0) + 1
                    if m:
                        total[c] = m
                    else:
                        del total[c]
            elif inv is not None:
                for x in range(k0, k):
                    total = inv.merge(total, inv.lift(values[x]))
        i = 0
        if self.linear:  # stop counting: ts + b <= t
            cut = t - self.b
            while i < n and times[i] <= cut:
                i += 1
        else:
            leave = w.leave
            while i < n and leave(times[i]) <= t:
                i += 1
        if i:  # (an entry that leaves has counted: it entered before it left)
            if agg == "counter":
                total -= i
            elif agg == "counts":
                for x in range(i):
                    c = values[x]
                    m = total.get(c, 0) - 1
                    if m:
                        total[c] = m
                    else:
                        del total[c]
            elif inv is not None:
                for x in range(i):
                    total = inv.merge(total, inv.lift(values[x]), -1)
            del times[:i]
            if values is not None:
                del values[:i]
            k -= i
        if self.better is not None and k > 1:
            k = self._staircase_columns(times, values, k)
        state[2], state[3] = total, k
        if inv is not None:
            value = inv.value(total)
        elif k == 0:
            value = None
        else:
            value = values[0]  # first, or the best of min / max, or the kept last
        if not times:
            return value, INF, None
        due = times[0] + self.b if self.linear else w.leave(times[0])
        if k < len(times):
            due = min(due, times[k] + w.a)
        return value, due, state

    def _staircase_columns(self, times: list[int], values: list[Any], k: int) -> int:
        """`_staircase` on the column-wise exact state."""
        if self.type == "last":  # any newer entry wins: only the newest counting one stays
            del times[: k - 1]
            del values[: k - 1]
            return 1
        better = self.better
        assert better is not None
        keep: list[int] = []
        best: Any = None
        for i in range(k - 1, -1, -1):
            v = values[i]
            if best is None or not better(best, v):
                keep.append(i)
                best = v
        if len(keep) != k:
            keep.reverse()
            times[:k] = [times[i] for i in keep]
            values[:k] = [values[i] for i in keep]
        return len(keep)

    def _evaluate_bucketed(self, state: list[Any], t: int) -> tuple[Any, int, Any]:
        main, pending, total = state
        while pending and pending[0][0] <= t:
            ts, c = pending.pop(0)
            self._bucket_add(state, ts, c)
        total = state[2]
        w, inv = self.w, self.inv
        i = 0
        while i < len(main) and w.bucket_leave(main[i][0]) <= t:
            if inv is not None:
                total = inv.merge(total, main[i][1], -1)
            i += 1
        if i:
            del main[:i]
        state[2] = total
        if self.better is not None and len(main) > 1:
            self._staircase(main, len(main), 1)
        if inv is not None:
            value = inv.value(total)
        elif not main:
            value = None
        elif self.ends:
            value = main[0][1][2]
        else:
            value = main[0][1]
        due = w.bucket_leave(main[0][0]) if main else INF
        if pending and pending[0][0] < due:
            due = pending[0][0]
        return value, due, state if (main or pending) else None

    def _evaluate_dynamic(
        self, state: list[Any], profile: ProfileRecord, t: int
    ) -> tuple[Any, int, Any]:
        entries = state[0]
        w = self.w
        leave = w.leave
        i = 0
        while i < len(entries) and leave(entries[i][0]) <= t:
            i += 1
        if i:
            del entries[:i]
        j = bisect_right(entries, t - w.a, key=_ts)
        ok = self.dyn.ok  # type: ignore[union-attr]
        inv = self.inv
        total: Partial = inv.zero() if inv is not None else None
        best: list[Any] | None = None
        for k in range(j):
            e = entries[k]
            if not ok(e[2], profile):
                continue
            if inv is not None:
                total = inv.merge(total, inv.lift(e[1]))
            elif best is None or self._wins(e, best):
                best = e
        value = inv.value(total) if inv is not None else (best[1] if best is not None else None)
        due = INF
        if entries:
            due = leave(entries[0][0])
            if j < len(entries):
                due = min(due, entries[j][0] + w.a)
        return value, due, state if entries else None

    def _wins(self, e: list[Any], best: list[Any]) -> bool:
        """Does entry e (newer or equal time than best, in scan order) replace best?"""
        t = self.type
        if t == "first":
            return bool((e[0], value_key(e[1])) < (best[0], value_key(best[1])))
        if t == "last":
            return bool((e[0], value_key(e[1])) >= (best[0], value_key(best[1])))
        if e[1] == best[1]:
            return type(e[1]) is int
        return bool(e[1] > best[1]) if t == "max" else bool(e[1] < best[1])
