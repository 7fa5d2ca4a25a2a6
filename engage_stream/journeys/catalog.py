"""The journeys a worker (or a replay) runs, with their versions.

Built from files (replay: every journey at version 1, published at time 0) or from the
definitions topic (the worker: `kind: journey` records as `apply` wrote them). A record
carries the journey's current body and the bodies of its earlier versions (`history`),
because a profile may still be in an instance of an earlier version while it drains
(`on_new_version: drain`): the runner needs that version's steps to move it on.

The version a profile's journey state is kept under is the *evaluated* version: an edit
of only the name, description or `status` (pause, resume, archive) keeps it, so running
instances go on as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from engage_stream.journeys.machine import CompiledJourney, JourneyMachine
from engage_stream.journeys.models import (
    AudienceEntry,
    EventEntry,
    JourneyDefinition,
    SendToDestinationStep,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JourneyEntry:
    definition: JourneyDefinition
    version: int  # the evaluated version
    published_at: int  # when that version was applied (v1: what counts as historical)
    # earlier versions still known (their instances may be draining), newest first
    previous: tuple[tuple[int, JourneyDefinition], ...] = ()

    @property
    def key(self) -> str:
        return self.definition.key

    @property
    def status(self) -> str:
        return self.definition.status

    def versions(self) -> dict[int, JourneyDefinition]:
        return {self.version: self.definition, **dict(self.previous)}


@dataclass
class JourneyCatalog:
    entries: dict[str, JourneyEntry] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> why its body is unusable
    _machines: dict[tuple[str, int], JourneyMachine] = field(default_factory=dict, repr=False)

    @classmethod
    def from_definitions(
        cls, journeys: Iterable[JourneyDefinition], published_at: int = 0
    ) -> JourneyCatalog:
        return cls({j.key: JourneyEntry(j, 1, published_at) for j in journeys})

    @classmethod
    def from_records(
        cls, records: Iterable[tuple[str, int, int, dict[str, Any], Any]]
    ) -> JourneyCatalog:
        """(key, evaluated version, applied_at, body, history) as on the definitions topic;
        `history`: [{version, body}] of the earlier evaluated versions."""
        cat = cls()
        for key, version, applied_at, body, history in records:
            try:
                defn = JourneyDefinition.model_validate(body)
            except ValidationError as exc:
                cat.failed[key] = f"invalid journey body: {exc.errors()[0]['msg']}"
                continue
            previous: list[tuple[int, JourneyDefinition]] = []
            for old in history or []:
                try:
                    previous.append(
                        (int(old["version"]), JourneyDefinition.model_validate(old["body"]))
                    )
                except (ValidationError, KeyError, TypeError, ValueError):
                    log.warning("journey %s: version %s unreadable, skipped", key, old)
            cat.entries[key] = JourneyEntry(defn, version, applied_at, tuple(previous))
        return cat

    def __iter__(self) -> Any:
        return iter(self.entries[k] for k in sorted(self.entries))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def machine(self, key: str, version: int) -> JourneyMachine | None:
        """The machine of one version (None: the version is no longer known)."""
        m = self._machines.get((key, version))
        if m is None:
            entry = self.entries.get(key)
            defn = entry.versions().get(version) if entry is not None else None
            if defn is None:
                return None
            published = entry.published_at if entry is not None else 0
            m = JourneyMachine(CompiledJourney(defn, version, published))
            self._machines[key, version] = m
        return m

    def epoch_parts(self) -> dict[str, int]:
        """What the profiles stage's epoch hashes: a new version or status is one more
        sweep over the profiles (historical entries, archived instances ended)."""
        return {f"journey:{e.key}:{e.status}": e.version for e in self}

    def destinations(self) -> list[str]:
        """Every destination a send step (or an exit send) of a current version names."""
        out: set[str] = set()
        for e in self:
            for s in e.definition.steps:
                if isinstance(s, SendToDestinationStep):
                    out.update(s.destinations)
            if e.definition.exit.send is not None:
                out.update(e.definition.exit.send.destinations)
        return sorted(out)

    def audiences(self) -> dict[str, set[str]]:
        """Journey key -> the audiences its entry reads (for the cross-checks)."""
        out: dict[str, set[str]] = {}
        for e in self:
            entry = e.definition.entry
            keys: set[str] = set()
            if isinstance(entry, AudienceEntry) or isinstance(entry, EventEntry) and entry.audience:
                keys.add(entry.audience)
            out[e.key] = keys
        return out
