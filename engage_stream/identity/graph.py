"""The identity graph: every external id maps to exactly one canonical profile.

Pure and Kafka-free over a key-value store (the identity stage's transaction, or memory in
replay). `resolve` is Segment's flat matching (reference §6) for one event's identifiers:

- none of them known: a new profile, with a new stable id (`use_…`, derived from the
  event, not from any identifier, so replays give the same ids);
- all known ones on one profile: the event attaches there, adding its new identifiers;
- on several profiles: they merge into the one the event's highest-priority identifier
  points to (the survivor); every identifier of the others points to it from then on.

Before attaching or merging, the rules (`identity.rules`) are checked on the profile that
would result: a limit broken means the event's lowest-priority identifier is dropped and
matching starts again (which may create a profile), so two userIds never merge and an
anonymousId reused after a logout does not pull two people together.

Keys (`state.keys`): `x:<type>\\0<value>` → profile id; `g:<profile>` → its identifiers,
merge count and creation time; `m:<merged-away profile>` → the survivor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from engage_stream.identity.rules import IdentityRules
from engage_stream.state.keys import ID_MERGED, ID_PROFILE, ID_VALUE, SEP
from engage_stream.state.kv import KV

IdKey = tuple[str, str]  # (type, value)


@dataclass
class Identity:
    """The graph's record of one profile."""

    profile_id: str
    ids: list[tuple[str, str, int]] = field(default_factory=list)  # (type, value, added ms)
    merges: int = 0
    created_at: int = 0

    def dumps(self) -> bytes:
        return orjson.dumps({"ids": self.ids, "merges": self.merges, "created_at": self.created_at})

    @classmethod
    def loads(cls, profile_id: str, raw: bytes) -> Identity:
        d = orjson.loads(raw)
        return cls(profile_id, [tuple(x) for x in d["ids"]], d["merges"], d["created_at"])  # type: ignore[misc]

    def keys(self) -> set[IdKey]:
        return {(t, v) for t, v, _ in self.ids}


@dataclass(frozen=True)
class Resolution:
    profile_id: str
    created: bool = False
    merged: tuple[str, ...] = ()  # profiles merged into `profile_id` by this event
    added: tuple[IdKey, ...] = ()  # identifiers newly attached to it
    dropped: tuple[IdKey, ...] = ()  # the event's identifiers not used (blocked, limits)
    moved: tuple[IdKey, ...] = ()  # identifiers of the merged profiles, now pointing here


def new_profile_id(seed: str, first: IdKey) -> str:
    digest = hashlib.blake2b(f"{seed}\x00{first[0]}\x00{first[1]}".encode(), digest_size=12)
    return "use_" + digest.hexdigest()


class IdGraph:
    def __init__(self, kv: KV, rules: IdentityRules | None = None) -> None:
        self.kv = kv
        self.rules = rules or IdentityRules()

    # -- reads ------------------------------------------------------------------------
    def lookup(self, id_type: str, value: str) -> str | None:
        raw = self.kv.get(_value_key((id_type, value)))
        return raw.decode() if raw is not None else None

    def identity(self, profile_id: str) -> Identity | None:
        raw = self.kv.get(ID_PROFILE + profile_id.encode())
        return Identity.loads(profile_id, raw) if raw is not None else None

    def survivor(self, profile_id: str) -> str:
        """Where a profile id points now (itself, or what it was merged into)."""
        seen = 0
        while (raw := self.kv.get(ID_MERGED + profile_id.encode())) is not None and seen < 1000:
            profile_id, seen = raw.decode(), seen + 1
        return profile_id

    # -- resolution -------------------------------------------------------------------
    def resolve(self, ids: Sequence[IdKey], at_ms: int, seed: str) -> Resolution | None:
        """Attach (or merge, or create) for one event; None if it has no usable identifier."""
        candidates, dropped = usable(ids, self.rules)
        while candidates:
            owners: dict[str, Identity] = {}
            order: list[str] = []
            for key in candidates:
                pid = self.lookup(*key)
                if pid is not None and pid not in owners:
                    ident = self.identity(pid)
                    if ident is not None:
                        owners[pid] = ident
                        order.append(pid)
            survivor = (
                owners[order[0]]
                if order
                else Identity(new_profile_id(seed, candidates[0]), created_at=at_ms)
            )
            others = [owners[p] for p in order[1:]]
            if self._allowed(survivor, others, candidates, at_ms):
                return self._apply(survivor, others, candidates, dropped, at_ms, not order)
            dropped.append(candidates.pop())  # the lowest-priority identifier, then again
        return None

    def _allowed(
        self, survivor: Identity, others: list[Identity], ids: list[IdKey], at_ms: int
    ) -> bool:
        if others and survivor.merges + sum(o.merges + 1 for o in others) > self.rules.max_merges:
            return False
        held: dict[str, dict[str, int]] = {}  # type -> value -> added ms
        for ident in (survivor, *others):
            for t, v, added in ident.ids:
                held.setdefault(t, {})[v] = min(added, held.get(t, {}).get(v, added))
        for t, v in ids:
            held.setdefault(t, {}).setdefault(v, at_ms)
        for t, values in held.items():
            limit = self.rules.limit(t)
            if limit.within_ms is None:
                n = len(values)
            else:
                n = sum(1 for added in values.values() if added > at_ms - limit.within_ms)
            if n > limit.values:
                return False
        return True

    def _apply(
        self,
        survivor: Identity,
        others: list[Identity],
        ids: list[IdKey],
        dropped: list[IdKey],
        at_ms: int,
        created: bool,
    ) -> Resolution:
        pid = survivor.profile_id
        have = survivor.keys()
        added: list[IdKey] = []
        moved: list[IdKey] = []

        def attach(t: str, v: str, when: int) -> None:
            if (t, v) in have or len(survivor.ids) >= self.rules.max_mappings:
                return  # past the limit: not added (the event still resolves by the others)
            have.add((t, v))
            self.kv.put(_value_key((t, v)), pid.encode())
            survivor.ids.append((t, v, when))

        for other in others:
            for t, v, when in other.ids:
                attach(t, v, when)
                moved.append((t, v))
            survivor.merges += other.merges + 1
            self.kv.delete(ID_PROFILE + other.profile_id.encode())
            self.kv.put(ID_MERGED + other.profile_id.encode(), pid.encode())
        for t, v in ids:
            if (t, v) not in have:
                attach(t, v, at_ms)
                if (t, v) in have:
                    added.append((t, v))
        self.kv.put(ID_PROFILE + pid.encode(), survivor.dumps())
        return Resolution(
            pid,
            created,
            tuple(o.profile_id for o in others),
            tuple(added),
            tuple(dropped),
            tuple(moved),
        )


def usable(ids: Sequence[IdKey], rules: IdentityRules) -> tuple[list[IdKey], list[IdKey]]:
    """An event's identifiers in priority order, without blocked values or repeats; and
    the blocked ones."""
    keep: list[IdKey] = []
    blocked: list[IdKey] = []
    for key in ids:
        if key in keep or key in blocked:
            continue
        (blocked if rules.is_blocked(key[1]) else keep).append(key)
    keep.sort(key=lambda k: rules.rank(k[0]))
    return keep, blocked


def _value_key(key: IdKey) -> bytes:
    return ID_VALUE + key[0].encode() + SEP + key[1].encode()
