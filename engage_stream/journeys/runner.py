"""Every journey over one profile: what the profile processor calls after the engine.

The machine (`machine.py`) knows one journey and one state; this keeps a profile's states
(`ProfileRecord.journeys`: journey key -> {version: state}) in step with the journey
catalog and feeds each the inputs that concern it:

- an event, with the audience / trait changes it caused (changes first, in time order:
  an event-triggered journey's audience filter sees the membership the event itself
  made, and a classic journey's entry the audience it joined);
- the changes a clock advance, backfill or merge caused, then the clock itself (every
  wait and hold due by then fires at its own instant);
- a newly published version (once per profile, from the stage's sweep): historical entry.

Versions. A profile's state of the current version takes entries if the journey is live;
a state of an earlier version keeps moving its instances (drain) but takes none, and is
dropped once empty; with `on_new_version: archive`, an archived journey, or a deleted
version, its instances end (`instance_exited`, reason archived). A classic journey's
profile enters the new version only after leaving the draining one (reference §4.1).

The 25 concurrent instances per profile (reference §4.2) are counted across journeys
and versions. A state with nothing in it (never entered, nothing pending) is not stored:
most profiles never enter most journeys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engage_stream.engine.changes import Change
from engage_stream.events import ProfileEvent
from engage_stream.journeys.catalog import JourneyCatalog, JourneyEntry
from engage_stream.journeys.machine import (
    JourneyMachine,
    JourneyOutput,
    JourneyProfile,
    Result,
    active_instances,
    next_wakeup,
)
from engage_stream.journeys.models import MAX_CONCURRENT_INSTANCES, AudienceEntry, EventEntry


def _keep(state: dict[str, Any]) -> bool:
    return bool(state["instances"]) or state["entries"] > 0 or state["reentry_at"] is not None


class JourneyRunner:
    def __init__(self, catalog: JourneyCatalog) -> None:
        self.catalog = catalog
        # which journeys an input can start when the profile has no instance of them
        self._triggers: dict[str, list[str]] = {}  # event name -> v2 journeys
        self._entries: dict[str, list[str]] = {}  # audience key -> v1 journeys
        for e in catalog:
            entry = e.definition.entry
            if isinstance(entry, EventEntry):
                self._triggers.setdefault(entry.event, []).append(e.key)
            elif isinstance(entry, AudienceEntry):
                self._entries.setdefault(entry.audience, []).append(e.key)

    def __bool__(self) -> bool:
        return bool(self.catalog)

    # -- entry points ------------------------------------------------------------------------
    def on_event(
        self, record: Any, event: ProfileEvent, changes: Sequence[Change], now: int
    ) -> list[JourneyOutput]:
        keys = set(record.journeys)
        if event.event is not None:
            keys.update(self._triggers.get(event.event, ()))
        keys.update(self._entered(changes))
        if not keys:
            return []
        return self._run(record, keys, changes, event, now, ())

    def on_changes(self, record: Any, changes: Sequence[Change], now: int) -> list[JourneyOutput]:
        """Changes not caused by an event (time, backfill, merge), then the clock."""
        keys = set(record.journeys) | self._entered(changes)
        if not keys:
            return []
        return self._run(record, keys, changes, None, now, ())

    def on_publish(
        self, record: Any, changes: Sequence[Change], now: int, journeys: set[str]
    ) -> list[JourneyOutput]:
        """The sweep reached the profile: `journeys` have a version it has not seen yet."""
        keys = set(record.journeys) | self._entered(changes) | journeys
        if not keys:
            return []
        return self._run(record, keys, changes, None, now, journeys)

    # -- the work ---------------------------------------------------------------------------
    def _entered(self, changes: Sequence[Change]) -> set[str]:
        out: set[str] = set()
        for ch in changes:
            if ch.kind == "audience" and ch.value is True:
                out.update(self._entries.get(ch.key, ()))
        return out

    def _run(
        self,
        record: Any,
        keys: set[str],
        changes: Sequence[Change],
        event: ProfileEvent | None,
        now: int,
        publish: Sequence[str] | set[str],
    ) -> list[JourneyOutput]:
        out: list[JourneyOutput] = []
        profile = JourneyProfile.from_record(record, record.subscriptions)
        ordered = sorted(changes, key=lambda c: c.at)
        states: dict[str, dict[str, Any]] = record.journeys
        used = sum(active_instances(s) for per in states.values() for s in per.values())
        for key in sorted(keys):
            per = dict(states.get(key, {}))
            entry = self.catalog.entries.get(key)
            if entry is None:  # deleted: nothing can move its instances any more
                states.pop(key, None)
                continue
            # the earlier versions first: a classic journey's profile leaving one may enter
            # the current version in the same call
            for version in sorted((int(v) for v in per), key=lambda v: v == entry.version):
                state = per[str(version)]
                machine = self.catalog.machine(key, version)
                before = active_instances(state)
                ended = (
                    machine is None
                    or entry.status == "archived"
                    or (version != entry.version and entry.definition.on_new_version == "archive")
                )
                if ended:
                    if machine is not None and before:
                        r = machine.on_archive(state, profile, now)
                        out.extend(r.outputs)
                    del per[str(version)]
                    used -= before
                    continue
                r = self._feed(
                    machine, state, profile, ordered, event, now, version, entry, per, used, False
                )
                out.extend(r.outputs)
                used += active_instances(r.state) - before
                if version != entry.version and not r.state["instances"]:
                    del per[str(version)]  # drained
                elif _keep(r.state):
                    per[str(version)] = r.state
                else:
                    del per[str(version)]
            cur = str(entry.version)
            if cur not in states.get(key, {}) and entry.status != "archived":
                machine = self.catalog.machine(key, entry.version)
                assert machine is not None
                r = self._feed(
                    machine,
                    None,
                    profile,
                    ordered,
                    event,
                    now,
                    entry.version,
                    entry,
                    per,
                    used,
                    key in publish,
                )
                out.extend(r.outputs)
                used += active_instances(r.state)
                if _keep(r.state):
                    per[cur] = r.state
            if per:
                states[key] = per
            else:
                states.pop(key, None)
        wakeups = [
            w for per in states.values() for s in per.values() if (w := next_wakeup(s)) is not None
        ]
        record.journey_wakeup = min(wakeups) if wakeups else None
        return out

    def _feed(
        self,
        machine: JourneyMachine,
        state: dict[str, Any] | None,
        profile: JourneyProfile,
        changes: Sequence[Change],
        event: ProfileEvent | None,
        now: int,
        version: int,
        entry: JourneyEntry,
        per: dict[str, Any],
        used: int,
        publish: bool,
    ) -> Result:
        """The inputs, in order, through one state of one version."""
        draining = any(int(v) != entry.version and s["instances"] for v, s in per.items())
        v1 = isinstance(entry.definition.entry, AudienceEntry)
        entering = version == entry.version and entry.status == "live" and not (v1 and draining)
        capacity = MAX_CONCURRENT_INSTANCES - used
        outputs: list[JourneyOutput] = []
        st = state

        def took(r: Result) -> None:
            nonlocal st, capacity
            capacity -= active_instances(r.state) - active_instances(st)
            outputs.extend(r.outputs)
            st = r.state

        for ch in changes:
            took(machine.on_change(st, profile, ch, capacity, entering))
        if event is not None:
            took(machine.on_event(st, profile, event, capacity, entering))
        if publish and entering:
            took(machine.on_publish(st, profile, now, capacity))
        due = next_wakeup(st) if st is not None else None
        if st is None or (due is not None and due <= now):
            took(machine.on_clock(st, profile, now, capacity, entering))
        assert st is not None
        return Result(st, outputs, next_wakeup(st))
