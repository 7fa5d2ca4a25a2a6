"""The evaluation engine: definitions + one profile + (event | clock | history) → changes.

Pure and deterministic: no I/O, no wall clock; `now_ms` is the caller's evaluation clock
(the partition clock live, event times then `--until` in a replay). Implements
`profiles.processor.EngineLike`.

Per-profile state lives in `ProfileRecord.engine` (plain JSON, saved with orjson):
- `<definition key>`: that definition's state (conditions.py / aggregates.py) as a JSON
  *string*, absent when empty. Kept encoded so that loading and saving a profile does not
  rebuild the state of the definitions an event does not touch: only the ones evaluated
  are decoded (and re-encoded);
- `$d`: `{key: due_ms}`, the next instant each definition's result can change with no
  new input (a window edge, a funnel deadline, a trait or event-filter date crossing
  `within_last` ...); `next_wakeup` is its minimum;
- `$i`: whether the profile was identified (user_id / email / idfa) when last seen; its
  absence marks a profile the engine has never evaluated.

Time semantics (see also windows.py):
- Every call first runs the boundaries that are due (`$d` <= now) *in time order*, one
  instant at a time, each evaluated at that instant: the changes they produce carry
  `at` = the boundary and `cause = timer:<boundary>`. The boundary is a function of the
  stored events, so the output does not depend on when ticks arrive or how many; a
  profile that receives an event after a missed tick first gets the overdue exits.
- An event is then ingested and the definitions it touches are evaluated at `now`;
  their changes carry `cause = event:<messageId>` and `at = min(event time, now)`.
- `recompute` evaluates at `now` with `cause = definition:<version>`, `at = now`.
- `at` never goes below the `at` of the value it replaces (so a late event cannot
  move a membership's timestamp backwards).
- `allowed_lateness_ms > 0`: an event older than `now - lateness` is not ingested
  (`late_events` counts them); its traits were still applied by the profile stage, so
  trait dependents are still re-evaluated.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from typing import Any

import orjson

from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition
from engage_stream.engine.aggregates import CompiledTrait
from engage_stream.engine.changes import Change, make_change, message_id
from engage_stream.engine.conditions import CompiledAudience
from engage_stream.engine.index import EventListeners, build_index
from engage_stream.engine.state_text import decode as decode_state
from engage_stream.engine.windows import INF
from engage_stream.events import ProfileEvent
from engage_stream.profiles.record import ProfileRecord, TraitValue

DUE = "$d"
IDENTIFIED = "$i"
IDENTIFIED_TYPES = frozenset({"user_id", "email", "ios.idfa", "android.idfa"})

AnyDefinition = AudienceDefinition | ComputedTraitDefinition
Compiled = CompiledAudience | CompiledTrait


@dataclass(frozen=True)
class EngineSettings:
    # 0: every late event is applied by its event time; > 0: events older than
    # now - lateness are ignored by the engine (counted in Engine.late_events)
    allowed_lateness_ms: int = 0
    # boundaries processed one by one per call before the rest is evaluated at `now` at
    # once (only reached after a very long pause with very dense windows)
    max_timer_steps: int = 10_000


def is_identified(profile: ProfileRecord) -> bool:
    """Reference §1.1: without include_anonymous, a member needs a user_id, email or idfa."""
    for x in profile.external_ids:  # noqa: SIM110 (hot path: no generator)
        if x.type in IDENTIFIED_TYPES:
            return True
    return False


_MISSING: Any = object()


class Engine:
    """Evaluates audiences and computed traits for one profile at a time.

    - `versions`: key → definition version (default 1), carried by every `Change`.
    - `applied_at`: key → when the definition was applied (epoch ms); with
      `include_history: false` only events at or after it count. Missing → 0 (all count).
    - `include_anonymous: false` gates computed traits as it gates audiences: a profile
      without user_id / email / idfa has no value (its events are still kept, so the
      value appears when it is identified).
    - Disabled definitions (`enabled: false`) are not evaluated; stored values stay (the
      catalog keeps every inactive definition in the versions profiles are synced to, so
      the profile stage recomputes rather than `drop`s it: see `recompute`).
    - Changes come out in time order of their cause, and for one instant in the
      evaluation order: dependencies first, computed traits before audiences, then
      definition order.

    Within one call a definition's state is decoded from `ProfileRecord.engine` at most
    once and encoded back once, at the end of the call (`_finish`), however many
    boundaries and the event evaluate it in between (`ws`, the call's working states).
    """

    def __init__(
        self,
        definitions: Sequence[AnyDefinition],
        versions: Mapping[str, int] | None = None,
        applied_at: Mapping[str, int] | None = None,
        settings: EngineSettings = EngineSettings(),
    ) -> None:
        self.settings = settings
        self._definitions: dict[str, AnyDefinition] = {}
        for d in definitions:
            if d.key in self._definitions:
                raise ValueError(f"duplicate definition key {d.key}")
            self._definitions[d.key] = d
        versions = versions or {}
        applied_at = applied_at or {}
        self.versions: dict[str, int] = {d.key: versions.get(d.key, 1) for d in definitions}
        compiled: list[Compiled] = []
        for d in definitions:
            if not d.enabled:
                continue
            at = applied_at.get(d.key, 0)
            if isinstance(d, AudienceDefinition):
                compiled.append(CompiledAudience(d, at))
            else:
                compiled.append(CompiledTrait(d, at, settings.allowed_lateness_ms))
        index = build_index(compiled)
        self._nodes: list[Compiled] = [compiled[p] for p in index.order]  # by rank
        nodes = self._nodes
        self._rank: dict[str, int] = {n.key: r for r, n in enumerate(nodes)}
        self._listeners = EventListeners(
            index.by_event, lambda r, name: nodes[r].equality_filter(name)
        )
        self._by_key = index.by_key
        self._dependents = index.dependents
        # per rank
        self._keys = [n.key for n in nodes]
        self._is_audience = [isinstance(n, CompiledAudience) for n in nodes]
        self._anonymous = [n.include_anonymous for n in nodes]
        self._version = [self.versions[n.key] for n in nodes]
        self._kind = [n.kind for n in nodes]
        self._evaluators = [n.evaluate for n in nodes]
        self._ingesters = [n.ingest for n in nodes]
        self._definition_cause = [Change.definition_cause(v) for v in self._version]
        self._gated = tuple(r for r, n in enumerate(nodes) if not n.include_anonymous)
        # `include_history: false`: rank -> creation instant; only events *received* from
        # then on reach the definition (reference §1.1), whatever their own timestamps
        self._arrival_cut = {
            r: applied_at[n.key]
            for r, n in enumerate(nodes)
            if self._definitions[n.key].include_history is None and applied_at.get(n.key, 0) > 0
        }
        self._empty_true = self._members_when_empty()
        self.late_events = 0

    # -- public API -----------------------------------------------------------------------
    def definition(self, key: str) -> AnyDefinition:
        return self._definitions[key]

    @staticmethod
    def state(profile: ProfileRecord, key: str) -> Any:
        """A definition's decoded state on a profile (None when empty), for tests and
        debugging."""
        st = profile.engine.get(key)
        return decode_state(st) if type(st) is str else st

    def on_event(self, profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Change]:
        out: list[Change] = []
        ws: dict[str, Any] = {}
        identified = is_identified(profile)
        wake = profile.next_wakeup
        if wake is not None and wake <= now_ms:
            self._run_timers(profile, now_ms, out, ws, identified)
        est = profile.engine
        forced: set[int] = set()  # evaluated whatever the event does to their state
        ingest = _NO_LISTENERS
        name = event.event
        if name is not None:
            lateness = self.settings.allowed_lateness_ms
            if lateness > 0 and event.timestamp < now_ms - lateness:
                self.late_events += 1
            else:
                ingest = self._listeners.get(name, event.properties)
                cut = self._arrival_cut
                if cut and ingest[0]:
                    arrived = event.received_at
                    kept = tuple(r for r in ingest[0] if arrived >= cut.get(r, 0))
                    if len(kept) != len(ingest[0]):
                        ingest = (kept, frozenset(kept))
        if event.type == "identify":
            by_key = self._by_key
            for k in event.traits:
                ranks = by_key.get(k)
                if ranks:
                    forced.update(ranks)
        seen = est.get(IDENTIFIED)
        if seen is None:
            forced.update(self._empty_true)
        elif bool(seen) != identified:
            forced.update(self._gated)
        est[IDENTIFIED] = 1 if identified else 0
        if ingest[0] or forced:
            cause = "event:" + event.message_id
            ts = event.timestamp
            at = ts if ts < now_ms else now_ms
            self._evaluate(profile, forced, now_ms, at, cause, out, ws, identified, event, ingest)
        self._finish(profile, ws)
        return out

    def on_time(self, profile: ProfileRecord, now_ms: int) -> list[Change]:
        out: list[Change] = []
        ws: dict[str, Any] = {}
        wake = profile.next_wakeup
        if wake is not None and wake <= now_ms:
            self._run_timers(profile, now_ms, out, ws, is_identified(profile))
        self._finish(profile, ws)
        return out

    def recompute(
        self,
        profile: ProfileRecord,
        keys: set[str],
        history: Iterable[ProfileEvent],
        now_ms: int,
        cause: str | None = None,
    ) -> list[Change]:
        """Rebuild the state of `keys` from `history` (time-ordered), evaluate at now and
        emit what differs from the stored membership / value. A key this engine does not
        evaluate (a disabled definition) loses its state and wake-ups and keeps its stored
        value: nothing reads or sends it until it is evaluated again, from history.
        `cause`: what the changes carry (default: each definition's `definition:<version>`;
        a merge passes `merge:<profile>` so its changes have messageIds of their own)."""
        out: list[Change] = []
        ws: dict[str, Any] = {}
        est = profile.engine
        dues = est.get(DUE)
        for k in keys:
            est.pop(k, None)
            if dues:
                dues.pop(k, None)
        identified = is_identified(profile)
        wake = profile.next_wakeup
        if wake is not None and wake <= now_ms:
            self._run_timers(profile, now_ms, out, ws, identified)
        ranks = sorted(self._rank[k] for k in keys if k in self._rank)
        if ranks:
            wanted = set().union(*(self._nodes[r].events for r in ranks))
            events = [e for e in history if e.event is not None and e.event in wanted]
            for r in ranks:
                node = self._nodes[r]
                st: Any = None
                since = self._arrival_cut.get(r, 0)
                for e in events:
                    if e.event in node.events and e.received_at >= since:
                        st, _ = node.ingest(
                            st, e.event, e.properties, e.timestamp, e.message_id, now_ms
                        )
                if st is not None:
                    ws[node.key] = st
        seeds = set(ranks)
        if IDENTIFIED not in est:
            seeds.update(self._empty_true)
            est[IDENTIFIED] = 1 if identified else 0
        if seeds:
            self._evaluate(profile, seeds, now_ms, now_ms, cause, out, ws, identified)
        self._finish(profile, ws)
        return out

    def drop(self, profile: ProfileRecord, keys: set[str]) -> None:
        """Forget definitions; their last value stays on the profile as a custom trait
        (reference §1.1, §2)."""
        est = profile.engine
        dues = est.get(DUE)
        for k in sorted(keys):
            est.pop(k, None)
            if dues:
                dues.pop(k, None)
            for source in (profile.audiences, profile.computed_traits):
                tv = source.pop(k, None)
                if tv is not None:
                    current = profile.traits.get(k)
                    if current is None or current.ts <= tv.ts:
                        profile.traits[k] = tv
        self._finish(profile, {})

    # -- internals --------------------------------------------------------------------------
    def _members_when_empty(self) -> tuple[int, ...]:
        """Audiences a profile with no events and no traits belongs to ("did not perform",
        "not exists" ...): evaluated when the engine first sees a profile, since no event
        or trait would otherwise touch them."""
        empty = ProfileRecord(profile_id="")
        out: list[int] = []
        for r, node in enumerate(self._nodes):
            if isinstance(node, CompiledAudience):
                member, _, _ = node.evaluate(None, empty, 0, True)
                if member:
                    out.append(r)
                    empty.audiences[node.key] = TraitValue(True, 0)
        return tuple(out)

    def _run_timers(
        self,
        profile: ProfileRecord,
        now: int,
        out: list[Change],
        ws: dict[str, Any],
        identified: bool,
    ) -> None:
        """Fire every due boundary in time order, each evaluated at its own instant.

        The due boundaries (`$d` <= now) are kept in a heap for the call; an entry is
        current while `$d` still holds it (evaluations move dues, and push the new ones
        that are due too)."""
        dues = profile.engine.get(DUE)
        if not dues:
            return
        heap = [(d, k) for k, d in dues.items() if d <= now]
        if not heap:
            return
        heapify(heap)
        rank = self._rank
        keys = self._keys
        max_steps = self.settings.max_timer_steps
        steps = 0
        while heap:
            tau, k = heap[0]
            if dues.get(k) != tau:
                heappop(heap)  # moved since it was pushed
                continue
            steps += 1
            if steps > max_steps:  # catch up in one evaluation at `now`
                tau = now
                due_keys = [k for k, d in dues.items() if d <= now]
                heap.clear()
            else:
                due_keys = []
                while heap and heap[0][0] == tau:
                    d, k = heappop(heap)
                    if dues.get(k) == d:
                        due_keys.append(k)
            ranks: set[int] = set()
            for k in due_keys:
                r = rank.get(k)
                if r is None:
                    dues.pop(k, None)  # a definition this engine does not have
                else:
                    ranks.add(r)
            if ranks:
                cause = f"timer:{tau}"
                done = self._evaluate(profile, ranks, tau, tau, cause, out, ws, identified)
                for r in done:
                    d = dues.get(keys[r])
                    if d is not None and d <= now:
                        heappush(heap, (d, keys[r]))
            if steps > max_steps:
                for k in [k for k, d in dues.items() if d <= now]:
                    del dues[k]  # defensive: a due is always after its evaluation
                return

    def _evaluate(
        self,
        profile: ProfileRecord,
        seeds: set[int],
        t: int,
        at: int,
        cause: str | None,
        out: list[Change],
        ws: dict[str, Any],
        identified: bool,
        event: ProfileEvent | None = None,
        ingest: tuple[tuple[int, ...], frozenset[int]] | None = None,
    ) -> list[int]:
        """Evaluate `seeds` (and the `ingest` ranks the event reaches) at `t` in
        topological order, then whatever reads a changed value; returns the ranks
        considered. `seeds` are evaluated even if the event leaves their state unchanged
        (the set grows by the dependents of every change). `cause` None: each
        definition's own `definition:<version>` (recompute), inherited by its dependents."""
        dues = profile.engine.get(DUE)
        if dues is None:
            dues = profile.engine[DUE] = {}
        reached = ingest[1] if ingest is not None and ingest[0] else _NO_LISTENERS[1]
        todo = sorted(seeds.union(reached))
        queued = set(todo)
        inherited: dict[int, str] = {}  # rank -> the cause of the change it reads (recompute)
        i = 0
        while i < len(todo):
            r = todo[i]
            i += 1
            key = self._keys[r]
            state = self._working_state(profile, ws, key)
            if r in reached:
                assert event is not None and event.event is not None
                state, stored = self._ingesters[r](
                    state, event.event, event.properties, event.timestamp, event.message_id, t
                )
                if not stored and r not in seeds:
                    # nothing stored, no input changed, and every boundary up to now has
                    # run: the result is the one already stored
                    continue
            if type(state) is str:
                state = decode_state(state)
            if self._is_audience[r]:
                value, due, state = self._evaluators[r](state, profile, t, identified)
            else:
                value, due, state = self._evaluators[r](state, profile, t)
                if not (identified or self._anonymous[r]):
                    value, due = None, INF  # (reference §1.1: an anonymous profile has none)
            ws[key] = state
            if due < INF:
                dues[key] = due
            else:
                dues.pop(key, None)
            c = cause or inherited.get(r) or self._definition_cause[r]
            change = self._emit(profile, r, value, at, c)
            if change is None:
                continue
            out.append(change)
            for dep in self._dependents[r]:  # (dependents rank after r)
                seeds.add(dep)
                if cause is None:
                    inherited.setdefault(dep, c)
                if dep not in queued:
                    queued.add(dep)
                    insort(todo, dep, lo=i)
        return todo

    @staticmethod
    def _working_state(profile: ProfileRecord, ws: dict[str, Any], key: str) -> Any:
        """A definition's state as this call left it, else as stored (maybe still JSON)."""
        state = ws.get(key, _MISSING)
        return profile.engine.get(key) if state is _MISSING else state

    def _emit(
        self, profile: ProfileRecord, r: int, value: Any, at: int, cause: str
    ) -> Change | None:
        """The change of definition `r` to `value`, written to the profile; None when the
        stored value is already it. `at` never moves below the stored value's."""
        key = self._keys[r]
        if self._is_audience[r]:
            store = profile.audiences
            tv = store.get(key)
            previous: Any = tv is not None and tv.value is True
            if value is previous:
                return None
        else:
            store = profile.computed_traits
            tv = store.get(key)
            previous = tv.value if tv is not None else None
            if type(previous) is type(value) and previous == value:  # (1 != True, 1 != 1.0)
                return None
        when = at if tv is None or tv.ts <= at else tv.ts
        kind, version, pid = self._kind[r], self._version[r], profile.profile_id
        mid = message_id(kind, key, version, pid, cause, value)
        if value is None:
            store.pop(key, None)
        else:
            store[key] = TraitValue(value, when)  # (no message id: nothing reads it)
        return make_change(kind, key, version, pid, value, previous, when, cause, mid)  # type: ignore[arg-type]

    def _finish(self, profile: ProfileRecord, ws: dict[str, Any]) -> None:
        est = profile.engine
        if ws:
            dumps = orjson.dumps
            for key, st in ws.items():
                if st is None:
                    est.pop(key, None)
                else:
                    est[key] = dumps(st).decode()
        dues = est.get(DUE)
        if dues:
            profile.next_wakeup = min(dues.values())
        else:
            est.pop(DUE, None)
            profile.next_wakeup = None


_NO_LISTENERS: tuple[tuple[int, ...], frozenset[int]] = ((), frozenset())
