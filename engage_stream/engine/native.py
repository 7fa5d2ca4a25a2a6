"""The engine with the native core (`engage_stream_core`, native/) doing what it supports.

`NativeEngine` implements `profiles.processor.EngineLike` exactly as `Engine` does — the
same changes (keys, values, `at`, causes, messageIds, in the same order) and the same
per-profile state — with the definitions split in two:
- the *native* ones go to the Rust core, all of them in one call per input;
- the rest go to a Python `Engine` built over them alone.

Which definitions are native: whole *components* of the dependency graph (definitions
linked by one reading the other's value) in which the core supports every definition.
Why whole components: the two halves then never read each other's values, so each can
be evaluated on its own, and the combined output is the Python engine's order by merging
the two by rank (`Engine`'s topological order restricted to one component is that
component's own order). The core supports audiences whose conditions read only traits
and memberships (equality, existence and numeric order operators), one-row event
audiences in a plain window, and computed traits of every type over an explicit window
(`within` / `between`) with constant filters (`engage_stream_core.supports` and
`python_reasons` say why another is not). The core keeps the Python engine's state layout
and wake-ups in `ProfileRecord.engine` — a computed trait's window spelled in a compact
text rather than JSON (`state_text`: two to four times shorter; the record is decoded,
stored, changelogged and compressed whole on every event) — and each engine reads the
other's spelling, so a deployment can switch engines on running state either way.

`make_engine` builds the engine a worker or a replay uses: native when the core imports
(`ENGAGE_ENGINE=auto`, the default, or `native`), the Python `Engine` with one log line
saying why when it does not, or when `ENGAGE_ENGINE=python` (`replay --engine`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import orjson

from engage_stream.engine.aggregates import CompiledTrait
from engage_stream.engine.changes import Change
from engage_stream.engine.conditions import CompiledAudience, EventLeaf, FunnelLeaf
from engage_stream.engine.engine import (
    DUE,
    IDENTIFIED,
    AnyDefinition,
    Engine,
    EngineSettings,
    is_identified,
)
from engage_stream.events import ProfileEvent
from engage_stream.profiles.record import ProfileRecord, TraitValue

log = logging.getLogger(__name__)

ENGINE_ENV = "ENGAGE_ENGINE"
CHOICES = ("auto", "native", "python")
DEFAULT_SETTINGS = EngineSettings()


def _load_core() -> tuple[ModuleType | None, str]:
    try:
        import engage_stream_core
    except ImportError as exc:
        return None, str(exc) or type(exc).__name__
    return engage_stream_core, ""


core, unavailable = _load_core()
_told = False


def engine_choice() -> str:
    """`ENGAGE_ENGINE`: auto (native when the core imports), native, or python."""
    choice = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENGINE_ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    return choice


def make_engine(
    definitions: Sequence[AnyDefinition],
    versions: Mapping[str, int] | None = None,
    applied_at: Mapping[str, int] | None = None,
    settings: EngineSettings = DEFAULT_SETTINGS,
    choice: str | None = None,
) -> Engine | NativeEngine:
    """The engine `choice` (default `engine_choice()`) names; `native` without the core
    raises, `auto` falls back to the Python engine and logs why, once per process."""
    global _told
    choice = choice or engine_choice()
    if choice == "python":
        return Engine(definitions, versions, applied_at, settings)
    if core is None:
        if choice == "native":
            raise RuntimeError(f"native core not available: {unavailable}")
        if not _told:
            _told = True
            log.warning("native core not available: %s; using the Python engine", unavailable)
        return Engine(definitions, versions, applied_at, settings)
    return NativeEngine(definitions, versions, applied_at, settings)


class NativeEngine:
    """`Engine`'s interface and results, with the core's definitions evaluated natively.

    `native_keys`: the definitions the core evaluates (in evaluation order);
    `python_reasons`: for every other enabled definition, why it stays in Python."""

    def __init__(
        self,
        definitions: Sequence[AnyDefinition],
        versions: Mapping[str, int] | None = None,
        applied_at: Mapping[str, int] | None = None,
        settings: EngineSettings = DEFAULT_SETTINGS,
    ) -> None:
        if core is None:
            raise RuntimeError(f"native core not available: {unavailable}")
        # the whole set in Python, for the global order, the windows and the reference's
        # own tables (built once per definition set; it never evaluates anything)
        full = Engine(definitions, versions, applied_at, settings)
        self.settings = settings
        self.versions = full.versions
        self._definitions = {d.key: d for d in definitions}
        native, windows, self.python_reasons = _split(full, self._definitions, applied_at or {})
        self._python = Engine(
            [d for d in definitions if d.key not in native], versions, applied_at, settings
        )
        ranks = sorted(full._rank[k] for k in native)  # evaluation order
        pos = {r: i for i, r in enumerate(ranks)}
        self.native_keys: tuple[str, ...] = tuple(full._keys[r] for r in ranks)
        self._native_pos = {k: i for i, k in enumerate(self.native_keys)}
        self._rank = full._rank  # key -> global rank: merges the two halves' changes
        self._version = [full._version[r] for r in ranks]
        self._core = core.Core(
            [definition_json(self._definitions[k]) for k in self.native_keys],
            [[pos[d] for d in full._dependents[r]] for r in ranks],
            [windows.get(k) for k in self.native_keys],
            settings.max_timer_steps,
        )
        self._core.set_outputs(self._version, Change, TraitValue)
        # every definition native: the Python half has nothing to evaluate and is skipped
        self._alone = not self._python._keys
        self._timed_keys = tuple(k for k in self.native_keys if k in windows)
        self._timed_set = frozenset(self._timed_keys)
        self._windowed = frozenset(self._native_pos[k] for k in self._timed_keys)
        self._listens = frozenset().union(*(full._nodes[full._rank[k]].events for k in windows))
        # forcing tables of the reference, restricted to the native positions
        self._by_key: dict[str, tuple[int, ...]] = {}
        for trait, rs in full._by_key.items():
            mine = tuple(pos[r] for r in rs if r in pos)
            if mine:
                self._by_key[trait] = mine
        self._empty_true = tuple(pos[r] for r in full._empty_true if r in pos)
        self._gated = tuple(pos[r] for r in full._gated if r in pos)

    # -- EngineLike ---------------------------------------------------------------------------
    @property
    def late_events(self) -> int:
        return self._python.late_events

    def definition(self, key: str) -> AnyDefinition:
        return self._definitions[key]

    state = staticmethod(Engine.state)

    def on_event(self, profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Change]:
        if not self.native_keys:
            return self._python.on_event(profile, event, now_ms)
        # what reaches native definitions, decided as `Engine.on_event` decides it
        seen = profile.engine.get(IDENTIFIED)
        identified = is_identified(profile)
        seeds: set[int] = set()
        if event.type == "identify":
            by_key = self._by_key
            for k in event.traits:
                ps = by_key.get(k)
                if ps:
                    seeds.update(ps)
        if seen is None:
            seeds.update(self._empty_true)
        elif bool(seen) != identified:
            seeds.update(self._gated)
        name = event.event
        ingest = name is not None and name in self._listens
        lateness = self.settings.allowed_lateness_ms
        late = name is not None and lateness > 0 and event.timestamp < now_ms - lateness
        if late:
            ingest = False  # (counted in late_events)
        wake = profile.next_wakeup
        due = wake is not None and wake <= now_ms
        known = (len(profile.audiences), len(profile.computed_traits))
        if self._alone:
            if late:
                self._python.late_events += 1
            profile.engine[IDENTIFIED] = 1 if identified else 0
            timers = due and self._forget_unknown_dues(profile, now_ms)
            out: list[Change] = []
        else:
            stash = self._stash(profile, now_ms) if due and self._timed_keys else None
            timers = bool(stash)  # (native boundaries due: the core runs them)
            if not (seeds or ingest or timers):
                return self._python.on_event(profile, event, now_ms)
            out = self._python.on_event(profile, event, now_ms)
            self._restore(profile, stash)
        if not (seeds or ingest or timers):
            return self._finish(profile, [], None, out, known)
        ts = event.timestamp
        at = ts if ts < now_ms else now_ms
        found = self._core.on_event(
            profile,
            now_ms,
            identified,
            sorted(seeds),
            timers,
            name if ingest else None,
            event.properties,
            ts,
            at,
        )
        return self._finish(profile, found, "event:" + event.message_id, out, known)

    def on_time(self, profile: ProfileRecord, now_ms: int) -> list[Change]:
        wake = profile.next_wakeup
        known = (len(profile.audiences), len(profile.computed_traits))
        if self._alone:
            timers = wake is not None and wake <= now_ms
            if timers and self._forget_unknown_dues(profile, now_ms):
                found = self._core.on_time(profile, now_ms, is_identified(profile))
                return self._finish(profile, found, None, [], known)
            return self._finish(profile, [], None, [], known)
        if not self._timed_keys or wake is None or wake > now_ms:
            return self._python.on_time(profile, now_ms)
        stash = self._stash(profile, now_ms)
        if not stash:
            return self._python.on_time(profile, now_ms)
        out = self._python.on_time(profile, now_ms)
        self._restore(profile, stash)
        found = self._core.on_time(profile, now_ms, is_identified(profile))
        return self._finish(profile, found, None, out, known)

    def recompute(
        self,
        profile: ProfileRecord,
        keys: set[str],
        history: Iterable[ProfileEvent],
        now_ms: int,
        cause: str | None = None,
    ) -> list[Change]:
        if not self.native_keys:
            return self._python.recompute(profile, keys, history, now_ms, cause)
        history = list(history)  # (read by both halves)
        est = profile.engine
        first = IDENTIFIED not in est
        mine = {k for k in keys if k in self._native_pos}
        dues = est.get(DUE)
        for k in mine:
            est.pop(k, None)
            if dues:
                dues.pop(k, None)
        wake = profile.next_wakeup  # (as Engine.recompute reads it: before the keys' dues go)
        timers = bool(self._timed_keys) and wake is not None and wake <= now_ms
        known = (len(profile.audiences), len(profile.computed_traits))
        stash = self._stash(profile, now_ms) if timers else None
        out = self._python.recompute(profile, keys - mine, history, now_ms, cause)
        seeds = {self._native_pos[k] for k in mine}
        if first:
            seeds.update(self._empty_true)
        if not (seeds or timers):
            return out
        self._restore(profile, stash)
        rebuild = sorted(p for p in seeds if p in self._windowed and self.native_keys[p] in mine)
        listens = self._listens
        past = (
            [(e.event, e.properties, e.timestamp) for e in history if e.event in listens]
            if rebuild
            else []
        )
        found = self._core.recompute(
            profile, now_ms, is_identified(profile), sorted(seeds), timers, rebuild, past
        )
        return self._finish(profile, found, cause, out, known)

    def drop(self, profile: ProfileRecord, keys: set[str]) -> None:
        self._python.drop(profile, keys)  # (key by key, whichever half evaluated it)

    # -- internals ----------------------------------------------------------------------------
    def _forget_unknown_dues(self, profile: ProfileRecord, now_ms: int) -> bool:
        """Drop the due wake-ups of definitions this engine does not have, as
        `Engine._run_timers` does; whether a native one is due. Called only when the
        profile's earliest wake-up is due."""
        dues = profile.engine.get(DUE)
        if not dues:
            return False
        timed = self._timed_set
        if dues.keys() <= timed:  # (the common case; the caller saw the earliest one due)
            return True
        due = False
        for k in [k for k, d in dues.items() if d <= now_ms]:
            if k in timed:
                due = True
            else:
                del dues[k]
        return due

    def _stash(self, profile: ProfileRecord, now_ms: int) -> dict[str, int] | None:
        """Take the native wake-ups that are due out of `$d` while the Python half runs its
        own: `Engine._run_timers` forgets due keys it does not evaluate."""
        dues = profile.engine.get(DUE)
        if not dues:
            return None
        timed = self._timed_set
        out = {k: d for k, d in dues.items() if d <= now_ms and k in timed}
        for k in out:
            del dues[k]
        return out

    @staticmethod
    def _restore(profile: ProfileRecord, stash: dict[str, int] | None) -> None:
        dues = profile.engine.get(DUE)
        if dues is None:
            dues = profile.engine[DUE] = {}
        if stash:
            dues.update(stash)

    def _finish(
        self,
        profile: ProfileRecord,
        found: list[tuple[int, Any, int, int, int]],
        cause: str | None,
        python_out: list[Change],
        known: tuple[int, int],
    ) -> list[Change]:
        """Apply the core's changes to `profile` (`Core.changes` builds them), recompute its
        wake-up, and merge the changes with the Python half's as the Python engine orders them: the
        boundaries by (instant, rank), then the input's evaluation by rank. `known`: how
        many audiences and computed traits the profile held before the Python half ran — the
        ones first stored by this call are put in the order the Python engine stores them."""
        est = profile.engine
        dues = est.get(DUE)
        if dues:
            profile.next_wakeup = min(dues.values())
        else:
            est.pop(DUE, None)
            profile.next_wakeup = None
        if not found:
            return python_out
        timers, mine, *added = self._core.changes(profile, found, cause)
        if not python_out:  # (stored in the Python engine's order already)
            return timers + mine
        i = 0
        while i < len(python_out) and python_out[i].cause.startswith("timer:"):
            i += 1
        rank = self._rank
        if timers:
            out = python_out[:i] + timers
            if i:  # (one change per key and instant: the keys are unique)
                out.sort(key=lambda ch: (int(ch.cause[6:]), rank[ch.key]))
        else:
            out = python_out[:i]
        if i < len(python_out):
            rest = python_out[i:] + mine
            if mine:
                rest.sort(key=lambda ch: rank[ch.key])
            out += rest
        else:
            out += mine
        stores = (profile.audiences, profile.computed_traits)
        for kind, store, was, new in zip(
            ("audience", "computed_trait"), stores, known, added, strict=True
        ):
            if new:
                _reorder(store, was, kind, out)
        return out


def definition_json(d: AnyDefinition) -> str:
    """What the core compiles: the definition's Python-mode dump as JSON (its own
    `model_dump_json` writes a filter's `false` as `0`)."""
    data = d.model_dump()
    try:
        return orjson.dumps(data).decode()
    except TypeError:  # an integer beyond 64 bits (which the core then declines)
        return json.dumps(data)


def _leaf_unsupported(leaf: EventLeaf | FunnelLeaf) -> str | None:
    """Why the core does not keep an event row's state (None: it does)."""
    if not leaf.w.linear:
        return "an event row whose window the lookback cuts short is not ported yet"
    if isinstance(leaf, EventLeaf):
        return None if leaf.fast else "an event row with dynamic filters is not ported yet"
    dynamic = (leaf.pdyn, leaf.cdyn, leaf.ptimed, leaf.ctimed)
    if any(f is not None for f in dynamic) or leaf.pextract:
        return "a funnel with dynamic filters is not ported yet"
    return None


def _leaf_window(leaf: EventLeaf | FunnelLeaf) -> tuple[int, int, int]:
    return leaf.w.a, leaf.w.b, leaf.span if isinstance(leaf, FunnelLeaf) else 0


def _reorder(store: dict[str, TraitValue], known: int, kind: str, changes: list[Change]) -> None:
    """Re-insert the values after the first `known` in the order of their first change."""
    new = list(store)[known:]
    fresh = set(new)
    order = list(dict.fromkeys(c.key for c in changes if c.kind == kind and c.key in fresh))
    if order != new:
        values = {k: store.pop(k) for k in new}
        for k in order:
            store[k] = values.pop(k)
        store.update(values)  # (defensive: a key no change names keeps its place last)


Windows = list[tuple[int, int, int]]  # (a, b, funnel span) per event row


def _split(
    full: Engine, definitions: Mapping[str, AnyDefinition], applied_at: Mapping[str, int]
) -> tuple[set[str], dict[str, Windows], dict[str, str]]:
    """(keys the core evaluates, the windows of each native definition with event rows —
    a computed trait: its own —, why each other enabled definition is not native)."""
    assert core is not None
    keys = full._keys
    n = len(keys)
    reason: dict[int, str] = {}
    windows: dict[str, Windows] = {}
    for r, k in enumerate(keys):
        d = definitions[k]
        why = core.supports(definition_json(d))
        node = full._nodes[r]
        cut = d.include_history is None and applied_at.get(k, 0) > 0  # (Engine._arrival_cut)
        if why is None and cut and (isinstance(node, CompiledTrait) or node.event_leaves):
            why = "include_history false with a creation time is not ported yet"
        if why is None and isinstance(node, CompiledTrait):
            if node.mode != "exact" or not node.plain_window:
                why = f"a computed trait with a {node.mode} window the core does not keep yet"
            else:
                windows[k] = [(node.a, node.b, node.grain)]  # (a trait's third: its grain)
        elif why is None and isinstance(node, CompiledAudience) and node.event_leaves:
            why = next(filter(None, map(_leaf_unsupported, node.event_leaves)), None)
            if why is None:
                windows[k] = [_leaf_window(leaf) for leaf in node.event_leaves]
        if why is not None:
            reason[r] = why
    # components of the dependency graph (undirected)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r, deps in enumerate(full._dependents):
        for d in deps:
            parent[find(r)] = find(d)
    blocked: dict[int, str] = {}
    for r in reason:
        blocked.setdefault(find(r), keys[r])
    native: set[str] = set()
    reasons: dict[str, str] = {}
    for r, k in enumerate(keys):
        if r in reason:
            reasons[k] = reason[r]
        elif find(r) in blocked:
            reasons[k] = f"linked (by references) to {blocked[find(r)]}, which is not native"
        else:
            native.add(k)
    return native, {k: w for k, w in windows.items() if k in native}, reasons


def coverage(engine: Engine | NativeEngine) -> tuple[int, int]:
    """(definitions evaluated natively, definitions evaluated): for reports."""
    if isinstance(engine, NativeEngine):
        return len(engine.native_keys), len(engine.native_keys) + len(engine.python_reasons)
    return 0, len(engine._keys)


__all__ = [
    "CHOICES",
    "ENGINE_ENV",
    "NativeEngine",
    "coverage",
    "core",
    "engine_choice",
    "make_engine",
    "unavailable",
]
