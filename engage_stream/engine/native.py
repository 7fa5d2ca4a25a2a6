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
component's own order). The first slice of the core supports audiences whose conditions
read only traits and memberships with equality, existence and numeric order operators
(`engage_stream_core.supports` says why another is not); such an audience keeps no state
and sets no wake-up, so native definitions add nothing to `ProfileRecord.engine`: a
deployment can switch engines on running state either way.

`make_engine` builds the engine a worker or a replay uses: native when the core imports
(`ENGAGE_ENGINE=auto`, the default, or `native`), the Python `Engine` with one log line
saying why when it does not, or when `ENGAGE_ENGINE=python` (`replay --engine`).
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType

from engage_stream.engine.changes import Change, make_change, message_id
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
        # the whole set in Python, for the global order and the reference's own tables
        # (built once per definition set; it never evaluates anything)
        full = Engine(definitions, versions, applied_at, settings)
        self.settings = settings
        self.versions = full.versions
        self._definitions = {d.key: d for d in definitions}
        native, self.python_reasons = _split(full, self._definitions)
        self._python = Engine(
            [d for d in definitions if d.key not in native], versions, applied_at, settings
        )
        ranks = sorted(full._rank[k] for k in native)  # evaluation order
        pos = {r: i for i, r in enumerate(ranks)}
        self.native_keys: tuple[str, ...] = tuple(full._keys[r] for r in ranks)
        self._native_pos = {k: i for i, k in enumerate(self.native_keys)}
        self._rank = full._rank  # key -> global rank: merges the two halves' changes
        self._core = core.Core(
            [self._definitions[k].model_dump_json() for k in self.native_keys],
            [[pos[d] for d in full._dependents[r]] for r in ranks],
        )
        self._global_rank = ranks
        self._version = [full._version[r] for r in ranks]
        self._definition_cause = [Change.definition_cause(v) for v in self._version]
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
        seeds: set[int] = set()
        if self.native_keys:
            # what forces native definitions, as `Engine.on_event` decides it (none has
            # events or wake-ups): the identify's traits and the identified state
            seen = profile.engine.get(IDENTIFIED)
            identified = is_identified(profile)
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
        if not seeds:
            return self._python.on_event(profile, event, now_ms)
        known = len(profile.audiences)
        out = self._python.on_event(profile, event, now_ms)
        ts = event.timestamp
        at = ts if ts < now_ms else now_ms
        cause = "event:" + event.message_id
        return self._native(profile, seeds, identified, at, cause, out, known)

    def on_time(self, profile: ProfileRecord, now_ms: int) -> list[Change]:
        # native definitions have no wake-ups
        return self._python.on_time(profile, now_ms)

    def recompute(
        self,
        profile: ProfileRecord,
        keys: set[str],
        history: Iterable[ProfileEvent],
        now_ms: int,
        cause: str | None = None,
    ) -> list[Change]:
        est = profile.engine
        first = IDENTIFIED not in est
        mine = {k for k in keys if k in self._native_pos}
        known = len(profile.audiences)
        if mine:
            dues = est.get(DUE)
            for k in mine:  # (no state of its own: only what another engine left)
                est.pop(k, None)
                if dues:
                    dues.pop(k, None)
        out = self._python.recompute(profile, keys - mine, history, now_ms, cause)
        seeds = {self._native_pos[k] for k in mine}
        if first:
            seeds.update(self._empty_true)
        if not seeds:
            return out
        return self._native(profile, seeds, is_identified(profile), now_ms, cause, out, known)

    def drop(self, profile: ProfileRecord, keys: set[str]) -> None:
        self._python.drop(profile, keys)  # (key by key, whichever half evaluated it)

    # -- internals ----------------------------------------------------------------------------
    def _native(
        self,
        profile: ProfileRecord,
        seeds: set[int],
        identified: bool,
        at: int,
        cause: str | None,
        python_out: list[Change],
        known: int,
    ) -> list[Change]:
        """Evaluate `seeds` natively, apply the membership changes to `profile` and merge
        them into the Python half's evaluation (after its timer changes, by rank).
        `known`: how many audiences the profile held before the Python half ran — the
        audiences first stored by this call are put in the order the Python engine stores
        them (the merged one), so that the saved record is the same bytes."""
        found = self._core.evaluate(profile, sorted(seeds), identified)
        if not found:
            return python_out
        pid = profile.profile_id
        audiences = profile.audiences
        mine: list[Change] = []
        added = False
        for p, member, origin in found:
            key = self.native_keys[p]
            c = cause if cause is not None else self._definition_cause[origin]
            tv = audiences.get(key)
            added = added or tv is None
            when = at if tv is None or tv.ts <= at else tv.ts
            version = self._version[p]
            mid = message_id("audience", key, version, pid, c, member)
            mine.append(
                make_change("audience", key, version, pid, member, not member, when, c, mid)
            )
            audiences[key] = TraitValue(member, when)
        # the Python half: its timer changes, then one evaluation in rank order
        i = 0
        while i < len(python_out) and python_out[i].cause.startswith("timer:"):
            i += 1
        rank = self._rank
        out = python_out[:i]
        out.extend(heapq.merge(python_out[i:], mine, key=lambda ch: rank[ch.key]))
        if added:
            _reorder(audiences, known, out)
        return out


def _reorder(audiences: dict[str, TraitValue], known: int, changes: list[Change]) -> None:
    """Re-insert the audiences after the first `known` in the order of their first change."""
    new = list(audiences)[known:]
    fresh = set(new)
    order = list(dict.fromkeys(c.key for c in changes if c.kind == "audience" and c.key in fresh))
    if order != new:
        values = {k: audiences.pop(k) for k in new}
        for k in order:
            audiences[k] = values.pop(k)
        audiences.update(values)  # (defensive: a key no change names keeps its place last)


def _split(
    full: Engine, definitions: Mapping[str, AnyDefinition]
) -> tuple[set[str], dict[str, str]]:
    """(keys the core evaluates, why each other enabled definition is not native)."""
    assert core is not None
    keys = full._keys
    n = len(keys)
    reason: dict[int, str] = {}
    for r, k in enumerate(keys):
        why = core.supports(definitions[k].model_dump_json())
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
    return native, reasons


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
