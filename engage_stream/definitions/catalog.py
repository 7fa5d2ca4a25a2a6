"""The set of definitions a worker (or a replay) evaluates, with their versions.

Built from files (replay, validate: every definition at version 1, applied at time 0) or
from the definitions topic (the worker: versions and apply times from `apply`). It decides
which definitions are active: enabled, with a valid body, and with every audience they
reference active too — a disabled audience takes its dependents out with it rather than
letting them silently read a stale membership.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter, ValidationError

from engage_stream.definitions.checks import references
from engage_stream.definitions.models import (
    AudienceDefinition,
    ComputedTraitDefinition,
    Definition,
)

if TYPE_CHECKING:
    from engage_stream.broadcasts.catalog import BroadcastCatalog
    from engage_stream.journeys.catalog import JourneyCatalog

log = logging.getLogger(__name__)


def _journeys() -> JourneyCatalog:
    # imported here: journeys and broadcasts build on the definition models, which
    # import this module
    from engage_stream.journeys.catalog import JourneyCatalog

    return JourneyCatalog()


def _broadcasts() -> BroadcastCatalog:
    from engage_stream.broadcasts.catalog import BroadcastCatalog

    return BroadcastCatalog()


AnyDefinition = AudienceDefinition | ComputedTraitDefinition
Status = Literal["Preparing", "Computing", "Live", "Disabled", "Failed"]

_ADAPTER: TypeAdapter[AnyDefinition] = TypeAdapter(Definition)


def definition_body(defn: AnyDefinition) -> dict[str, Any]:
    """The canonical JSON body published for a definition (defaults left out, so adding an
    optional field to the models does not bump every definition's version)."""
    return defn.model_dump(mode="json", exclude_defaults=True) | {"kind": defn.kind}


def parse_body(body: dict[str, Any]) -> AnyDefinition:
    return _ADAPTER.validate_python(body)


def _kind(body: dict[str, Any]) -> str:
    return str(body.get("kind", "definition"))


def audience_references(defn: AnyDefinition) -> set[str]:
    """Keys of audiences and traits this definition reads (conditions, recursively)."""
    return {r.target for r in references(defn.model_dump()) if r.kind in ("audience", "trait")}


@dataclass(frozen=True, slots=True)
class Entry:
    definition: AnyDefinition
    version: int  # as published by `apply`
    created_at: int
    # the version whose evaluation this one shares: an edit of only the name, description
    # or destinations keeps it (no recompute, same messageIds); 0 = `version`
    evaluated: int = 0

    @property
    def evaluated_version(self) -> int:
        return self.evaluated or self.version


# Fields an edit may change without changing any membership or value (a journey's
# `status`: pausing or resuming keeps its version and its running instances; a
# broadcast's `status`, `schedule` and `rate`: when and how fast, not what or to whom —
# its idempotency keys stay).
COSMETIC_FIELDS = frozenset({"name", "description", "destinations", "status", "schedule", "rate"})


def evaluation_body(body: dict[str, Any]) -> dict[str, Any]:
    """What decides a definition's results: its body without the cosmetic fields."""
    return {k: v for k, v in body.items() if k not in COSMETIC_FIELDS}


@dataclass
class Catalog:
    entries: dict[str, Entry] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> why its body is unusable
    failed_versions: dict[str, int] = field(default_factory=dict)  # key -> unusable version
    journeys: JourneyCatalog = field(default_factory=_journeys)
    broadcasts: BroadcastCatalog = field(default_factory=_broadcasts)

    @classmethod
    def from_definitions(cls, definitions: Iterable[AnyDefinition], created_at: int = 0) -> Catalog:
        return cls({d.key: Entry(d, 1, created_at) for d in definitions})

    @classmethod
    def from_records(cls, records: Iterable[tuple[Any, ...]]) -> Catalog:
        """(key, version, created_at, body[, evaluated version]) as read from the
        definitions topic; created_at is when version 1 was applied (`include_history:
        false` counts events from then).
        Keys are one namespace across kinds: should an audience and a computed trait share
        one anyway, the one created first is used, whatever order they are read in."""
        chosen: dict[str, tuple[int, int, dict[str, Any], int]] = {}
        for key, version, created_at, body, *rest in records:
            rec = (version, created_at, body, rest[0] if rest else 0)
            other = chosen.get(key)
            if other is not None:
                first, second = sorted((other, rec), key=lambda r: (r[1], _kind(r[2])))
                log.warning(
                    "the %s and the %s share the key %r: using the %s, created first",
                    _kind(first[2]),
                    _kind(second[2]),
                    key,
                    _kind(first[2]),
                )
                rec = first
            chosen[key] = rec
        cat = cls()
        for key, (version, created_at, body, evaluated) in chosen.items():
            try:
                cat.entries[key] = Entry(parse_body(body), version, created_at, evaluated)
            except ValidationError as exc:
                cat.failed[key] = f"invalid definition body: {exc.errors()[0]['msg']}"
                cat.failed_versions[key] = version
        return cat

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries[k] for k in sorted(self.entries))

    def active(self) -> list[AnyDefinition]:
        """Enabled definitions whose referenced audiences are all active, in key order."""
        inactive = self.inactive()
        return [e.definition for e in self if e.definition.key not in inactive]

    def inactive(self) -> set[str]:
        """Keys known but not evaluated: disabled, with an unusable body, or reading (at
        any depth) an audience or trait that is one of those."""
        inactive = {k for k, e in self.entries.items() if not e.definition.enabled}
        inactive |= set(self.failed)
        reads = {k: audience_references(e.definition) for k, e in self.entries.items()}
        changed = True
        while changed:
            changed = False
            for k in self.entries:
                if k in inactive:
                    continue
                if reads[k] & inactive:
                    inactive.add(k)
                    changed = True
        return inactive

    def versions(self, keys: Iterable[str] | None = None) -> dict[str, int]:
        """The versions profiles are kept in step with: each of `keys` (every entry when
        None) at its version, and every inactive definition (`inactive()`) at its version
        negated, whether asked for or not.

        Why inactive definitions are listed: to the profile stage a key missing from this
        map is a deletion (its values leave the profile as custom traits), and disabling
        is not a deletion — stored memberships and values stay, so re-enabling resumes
        from them and sends only what really differs (no second `Audience Entered` to a
        member who never left). Why negated: leaving and re-joining the evaluated set is a
        version change even when the body is not (an audience reading a re-enabled one),
        so the profile is re-evaluated over its history at both ends: state and wake-ups
        are dropped while inactive and rebuilt on return. Never an engine's version: only
        active definitions are evaluated and emit."""
        inactive = self.inactive()
        wanted = set(keys) if keys is not None else set(self.entries)
        out = {
            k: -e.evaluated_version if k in inactive else e.evaluated_version
            for k, e in self.entries.items()
            if k in wanted or k in inactive
        }
        for k, v in self.failed_versions.items():
            out[k] = -v
        return out

    def created_at(self) -> dict[str, int]:
        return {k: e.created_at for k, e in self.entries.items()}

    def destinations(self) -> list[str]:
        return sorted({d.name for e in self.entries.values() for d in e.definition.destinations})

    def get(self, key: str) -> AnyDefinition | None:
        e = self.entries.get(key)
        return e.definition if e is not None else None
