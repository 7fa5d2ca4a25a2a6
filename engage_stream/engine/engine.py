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
  new input (a window edge, a funnel deadline, a trait date crossing `within_last` ...);
  `next_wakeup` is its minimum;
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
from typing import Any

import orjson

from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition
from engage_stream.engine.aggregates import CompiledTrait
from engage_stream.engine.changes import Change
from engage_stream.engine.conditions import CompiledAudience
from engage_stream.engine.index import build_index
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
    return any(x.type in IDENTIFIED_TYPES for x in profile.external_ids)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


class Engine:
    """Evaluates audiences and computed traits for one profile at a time.

    - `versions`: key → definition version (default 1), carried by every `Change`.
    - `applied_at`: key → when the definition was applied (epoch ms); with
      `include_history: false` only events at or after it count. Missing → 0 (all count).
    - `include_anonymous: false` gates computed traits as it gates audiences: a profile
      without user_id / email / idfa has no value (its events are still kept, so the
      value appears when it is identified).
    - Disabled definitions (`enabled: false`) are not evaluated; stored values stay.
    - Changes come out in time order of their cause, and for one instant in the
      evaluation order: dependencies first, computed traits before audiences, then
      definition order.
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
                compiled.append(CompiledTrait(d, at))
        index = build_index(compiled)
        self._nodes: list[Compiled] = [compiled[p] for p in index.order]  # by rank
        self._rank: dict[str, int] = {n.key: r for r, n in enumerate(self._nodes)}
        self._by_event = index.by_event
        self._by_key = index.by_key
        self._dependents = index.dependents
        self._is_audience = [isinstance(n, CompiledAudience) for n in self._nodes]
        self._gated = tuple(r for r, n in enumerate(self._nodes) if not n.include_anonymous)
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
        return orjson.loads(st) if type(st) is str else st

    def on_event(self, profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Change]:
        out: list[Change] = []
        self._run_timers(profile, now_ms, out)
        est = profile.engine
        forced: set[int] = set()  # evaluated whatever the event does to their state
        ingest: tuple[int, ...] = ()
        if event.event is not None:
            lateness = self.settings.allowed_lateness_ms
            if lateness > 0 and event.timestamp < now_ms - lateness:
                self.late_events += 1
            else:
                ingest = self._by_event.get(event.event, ())
        if event.type == "identify":
            for k in event.traits:
                forced.update(self._by_key.get(k, ()))
        identified = is_identified(profile)
        seen = est.get(IDENTIFIED)
        if seen is None:
            forced.update(self._empty_true)
        elif bool(seen) != identified:
            forced.update(self._gated)
        est[IDENTIFIED] = 1 if identified else 0
        if ingest or forced:
            cause = Change.event_cause(event.message_id)
            at = min(event.timestamp, now_ms)
            self._evaluate(profile, forced, now_ms, at, {}, cause, out, event, ingest)
        self._finish(profile)
        return out

    def on_time(self, profile: ProfileRecord, now_ms: int) -> list[Change]:
        out: list[Change] = []
        self._run_timers(profile, now_ms, out)
        self._finish(profile)
        return out

    def recompute(
        self,
        profile: ProfileRecord,
        keys: set[str],
        history: Iterable[ProfileEvent],
        now_ms: int,
    ) -> list[Change]:
        """Rebuild the state of `keys` from `history` (time-ordered), evaluate at now and
        emit what differs from the stored membership / value."""
        out: list[Change] = []
        est = profile.engine
        dues = est.get(DUE)
        for k in keys:
            est.pop(k, None)
            if dues:
                dues.pop(k, None)
        self._run_timers(profile, now_ms, out)
        ranks = sorted(self._rank[k] for k in keys if k in self._rank)
        if ranks:
            wanted = set().union(*(self._nodes[r].events for r in ranks))
            events = [e for e in history if e.event is not None and e.event in wanted]
            for r in ranks:
                node = self._nodes[r]
                st: Any = None
                for e in events:
                    if e.event in node.events:
                        st, _ = node.ingest(
                            st, e.event, e.properties, e.timestamp, e.message_id, now_ms
                        )
                if st is not None:
                    est[node.key] = orjson.dumps(st).decode()
        seeds = set(ranks)
        if IDENTIFIED not in est:
            seeds.update(self._empty_true)
            est[IDENTIFIED] = 1 if is_identified(profile) else 0
        if seeds:
            self._evaluate(profile, seeds, now_ms, now_ms, {}, None, out)
        self._finish(profile)
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
        self._finish(profile)

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

    def _run_timers(self, profile: ProfileRecord, now: int, out: list[Change]) -> None:
        """Fire every due boundary in time order, each evaluated at its own instant."""
        if profile.next_wakeup is None or profile.next_wakeup > now:
            return  # next_wakeup is the minimum of `$d` (kept so by every call)
        est = profile.engine
        steps = 0
        while True:
            dues = est.get(DUE)
            if not dues:
                return
            tau = min(dues.values())
            if tau > now:
                return
            steps += 1
            last = steps > self.settings.max_timer_steps
            if last:  # catch up in one evaluation at `now`
                tau = now
                due_keys = [k for k, d in dues.items() if d <= now]
            else:
                due_keys = [k for k, d in dues.items() if d == tau]
            ranks: set[int] = set()
            for k in due_keys:
                r = self._rank.get(k)
                if r is None:
                    del dues[k]  # a definition this engine does not have
                else:
                    ranks.add(r)
            if ranks:
                cause = Change.timer_cause(tau)
                self._evaluate(profile, ranks, tau, tau, {}, cause, out)
            if last:
                for k in [k for k, d in dues.items() if d <= now]:
                    del dues[k]  # defensive: a due is always after its evaluation
                return

    def _evaluate(
        self,
        profile: ProfileRecord,
        seeds: set[int],
        t: int,
        at: int,
        causes: dict[int, str],
        cause: str | None,
        out: list[Change],
        event: ProfileEvent | None = None,
        ingest: tuple[int, ...] = (),
    ) -> None:
        """Evaluate `seeds` (and the `ingest` ranks the event changed) at `t` in
        topological order, then whatever reads a changed value. `cause` None: each
        definition's own `definition:<version>` (recompute), inherited by its dependents."""
        est = profile.engine
        dues = est.get(DUE)
        if dues is None:
            dues = est[DUE] = {}
        identified = is_identified(profile)
        forced = set(seeds)  # evaluated even if the event leaves their state unchanged
        ingested = set(ingest)
        if event is not None:
            name, props, ts, mid = event.event, event.properties, event.timestamp, event.message_id
        queued = forced | ingested
        todo = sorted(queued)  # ranks: the topological order
        nodes, audience, dependents = self._nodes, self._is_audience, self._dependents
        i = 0
        while i < len(todo):
            r = todo[i]
            i += 1
            node = nodes[r]
            key = node.key
            st = est.get(key)
            if r in ingested:
                st, changed = node.ingest(st, name, props, ts, mid, t)
                if not changed and r not in forced:
                    # nothing stored, no input changed, and every boundary up to now has
                    # run: the result is the one already stored
                    continue
            if type(st) is str:
                st = orjson.loads(st)
            if audience[r]:
                value, due, st = node.evaluate(st, profile, t, identified)  # type: ignore[call-arg]
            else:
                value, due, st = node.evaluate(st, profile, t)  # type: ignore[call-arg]
                if not (identified or node.include_anonymous):
                    value, due = None, INF
            if st is None:
                if key in est:
                    del est[key]
            else:
                est[key] = orjson.dumps(st).decode()
            if due < INF:
                dues[key] = due
            elif key in dues:
                del dues[key]
            c = cause if cause is not None else causes.get(r)
            if c is None:
                c = Change.definition_cause(self.versions[key])
            if self._emit(node, profile, value, at, c, out):
                for dep in dependents[r]:
                    forced.add(dep)
                    causes.setdefault(dep, c)
                    if dep not in queued:
                        queued.add(dep)
                        insort(todo, dep, lo=i)  # dependents rank after r

    def _emit(
        self,
        node: Compiled,
        profile: ProfileRecord,
        value: Any,
        at: int,
        cause: str,
        out: list[Change],
    ) -> bool:
        key = node.key
        if isinstance(node, CompiledAudience):
            tv = profile.audiences.get(key)
            was = tv is not None and tv.value is True
            if value is was:
                return False
            previous: Any = was
            store = profile.audiences
        else:
            tv = profile.computed_traits.get(key)
            previous = tv.value if tv is not None else None
            if _same(previous, value):
                return False
            store = profile.computed_traits
        if tv is not None and tv.ts > at:
            at = tv.ts
        change = Change(
            kind="audience" if isinstance(node, CompiledAudience) else "computed_trait",
            key=key,
            version=self.versions[key],
            profile_id=profile.profile_id,
            value=value,
            previous=previous,
            at=at,
            cause=cause,
        )
        if value is None:
            store.pop(key, None)
        else:
            store[key] = TraitValue(value, at, change.message_id)
        out.append(change)
        return True

    def _finish(self, profile: ProfileRecord) -> None:
        est = profile.engine
        dues = est.get(DUE)
        if dues:
            profile.next_wakeup = min(dues.values())
        else:
            est.pop(DUE, None)
            profile.next_wakeup = None
