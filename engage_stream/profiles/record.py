"""Per-profile state as stored in RocksDB: one record per canonical profile.

Dataclasses rather than pydantic: this is loaded and saved for every event on the hot
path, and orjson serialises dataclasses natively. The record is the storage boundary; it
is only ever built from bytes this module wrote.

Why the dataclasses have no `__slots__`: orjson serialises a dataclass from its
`__dict__` in C, but one with slots attribute by attribute — about five times slower
(≈1.2 µs per `TraitValue`, and a profile carries one per audience and computed trait).
And `loads` adopts the dicts orjson has just parsed as the instances' `__dict__` instead
of copying them through `__init__`. The JSON is the same either way. The flip side: an
attribute set on an instance that is not a field would be serialised too — set fields
only.

Ownership: the profile processor maintains `traits`, `external_ids` and `metadata`; the
engine maintains `computed_traits`, `audiences`, `engine` (its opaque per-definition
state, JSON-serialisable) and `next_wakeup` (when its next time-driven change is due);
the journey runner `journeys` and `journey_wakeup`. `defs_epoch` records which definition
versions the engine state was computed for — a fingerprint the partition resolves
(`ProfileStore.epoch_versions`) —, so a changed definition is recomputed from history before
the profile is next touched. `def_versions` is that map itself, as profiles stored it before
the fingerprint table; it is read when present and emptied when the profile is next synced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class TraitValue:
    value: Any
    ts: int  # event time (ms) of the message that set it; last by event time wins
    message_id: str = ""


@dataclass
class ExternalId:
    type: str
    id: str
    collection: str = "users"
    created_at: int = 0
    first_message_id: str = ""
    source_id: str = ""
    encoding: str = "none"


@dataclass
class Metadata:
    created_at: int = 0
    updated_at: int = 0
    first_message_id: str = ""
    last_message_id: str = ""
    first_source_id: str = ""
    last_source_id: str = ""
    event_count: int = 0


@dataclass
class Merge:
    """A profile merged into this one (the merge audit the Profile API lists)."""

    source: str  # the merged-away profile id
    at: int  # event time (ms) of the event that linked them
    message_id: str  # that event


@dataclass
class Link:
    """An account's user (reference §6 "Group & accounts"): its profile and the identifiers
    it was linked by, for the Profile API's `/links`."""

    profile_id: str
    external_ids: list[list[str]] = field(default_factory=list)  # [type, id]
    created_at: int = 0


ACCOUNT_PREFIX = "group_id:"  # accounts are profiles keyed by their group id


def is_account(profile_id: str) -> bool:
    return profile_id.startswith(ACCOUNT_PREFIX)


@dataclass
class ProfileRecord:
    profile_id: str
    traits: dict[str, TraitValue] = field(default_factory=dict)
    computed_traits: dict[str, TraitValue] = field(default_factory=dict)
    audiences: dict[str, TraitValue] = field(default_factory=dict)
    external_ids: list[ExternalId] = field(default_factory=list)
    metadata: Metadata = field(default_factory=Metadata)
    engine: dict[str, Any] = field(default_factory=dict)
    next_wakeup: int | None = None
    def_versions: dict[str, int] = field(default_factory=dict)  # (stored before `e:` keys)
    defs_epoch: str = ""  # fingerprint of the definition versions the state reflects
    merges: list[Merge] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)  # accounts: their users
    # accounts: each user's memberships of the hidden audiences (`profiles.accounts`), and
    # under "$at" when they last changed
    user_flags: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the journey runner's: journey key -> {version: machine state} (`journeys.runner`),
    # and the earliest instant one of them waits for
    journeys: dict[str, dict[str, Any]] = field(default_factory=dict)
    journey_wakeup: int | None = None
    # subscription states per contact vector (`journeys.subscriptions`)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def wakeup(self) -> int | None:
        """The profile's entry in the wake-up index: the engine's or a journey's instant,
        whichever comes first."""
        a, b = self.next_wakeup, self.journey_wakeup
        if a is None:
            return b
        return a if b is None or a <= b else b

    def dumps(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def loads(cls, data: bytes) -> ProfileRecord:
        d = orjson.loads(data)
        record = _new(cls)
        record.__dict__ = {  # field order, as __init__ would set them
            "profile_id": d["profile_id"],
            "traits": _traits(d["traits"]),
            "computed_traits": _traits(d["computed_traits"]),
            "audiences": _traits(d["audiences"]),
            "external_ids": [_adopt(ExternalId, x) for x in d["external_ids"]],
            "metadata": _adopt(Metadata, d["metadata"]),
            "engine": d["engine"],
            "next_wakeup": d["next_wakeup"],
            "def_versions": d["def_versions"],
            "defs_epoch": d["defs_epoch"],
            "merges": [_adopt(Merge, m) for m in d["merges"]],
            "links": [_adopt(Link, x) for x in d["links"]],
            "user_flags": d["user_flags"],
            "journeys": d.get("journeys", {}),
            "journey_wakeup": d.get("journey_wakeup"),
            "subscriptions": d.get("subscriptions", {}),
        }
        return record

    def trait(self, key: str) -> Any:
        """The value a trait condition sees: computed and audience keys shadow custom ones."""
        for source in (self.audiences, self.computed_traits, self.traits):
            tv = source.get(key)
            if tv is not None:
                return tv.value
        return None

    def has_external_id(self, id_type: str, value: str) -> bool:
        return any(x.type == id_type and x.id == value for x in self.external_ids)


_new = object.__new__


def _adopt(cls: Any, d: dict[str, Any]) -> Any:
    """An instance whose `__dict__` is `d`, as `dumps` wrote it (all fields, in order)."""
    obj = _new(cls)
    obj.__dict__ = d
    return obj


def _traits(d: dict[str, Any]) -> dict[str, TraitValue]:
    return {k: _adopt(TraitValue, v) for k, v in d.items()}
