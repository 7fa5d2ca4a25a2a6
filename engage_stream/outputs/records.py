"""Engine changes → output records: the exact Segment payloads Engage sends (reference §3).

For every `Change` the worker produces:

1. one record on the all-changes topic (`destination=None`), a stable engage-stream shape:
   `{message_id, kind, key, version, profile_id, value, previous, at, at_ms, cause,
   external_ids: [{type, id, collection}], space_id}`;
2. for each destination of the definition, in the order they are listed, Identify and/or
   Track calls in Segment Spec shape, one per identifier combination of the profile:

   - audience, Identify: `traits.<audience_key>: true|false`;
   - audience, Track: `event: "Audience Entered"|"Audience Exited"` (per-destination
     names), `properties: {audience_key, <audience_key>: true|false}`;
   - computed trait, Identify: `traits.<trait_key>: value`;
   - computed trait, Track: `event: "Trait Computed"` (renameable),
     `properties: {trait_key, <trait_key>: value}`;
   - `context.personas = {computation_class: "audience"|"trait", computation_id,
     computation_key, namespace, space_id}` (namespace = space id);
   - `integrations = {"All": false, <destination>: true}`: each record only goes to its
     destination.

Identifiers (reference §3.3): `userId` from the profile's `user_id` external ids, email in
`traits.email` (Identify) / `context.traits.email` (Track), `anonymousId` from
`anonymous_id`. Several values of one type ⇒ one call per value: the profile gets
max(#user ids, #emails[, #anonymous ids]) calls; call i carries the i-th value of each
type, or the type's first value when it has fewer (external ids keep the order they were
added in, so call i stays the same combination as ids are added). Anonymous ids are fanned
out only when the definition has `include_anonymous`; otherwise a profile without a user
id still carries its first anonymous id, so every call has `userId` or `anonymousId` when
the profile has either. A profile with none of user id, email or anonymous id gets no
destination calls (the all-changes record still records the change).

Determinism (replays and crash recovery produce byte-identical records):
- `timestamp` is the change's effective time (`change.at`, the event time or the window
  boundary), ISO-8601 UTC with milliseconds;
- `receivedAt` / `sentAt` are omitted: they are transport times, set by whatever delivers
  the call (a Segment-compatible pipeline sets them on receipt); putting processing time
  here would make a replay differ;
- `messageId` is `change.message_id` when the change yields one destination call, else
  `<change.message_id>-<n>` with n counting the change's destination calls in order
  (destinations as listed, Identify before Track, identifier combinations in order); the
  all-changes record carries the plain `change.message_id`.

Plain dicts and orjson: this runs for every change on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition
from engage_stream.engine.changes import Change, message_id
from engage_stream.profiles.record import ExternalId, ProfileRecord
from engage_stream.timestamps import iso_ms

if TYPE_CHECKING:
    from engage_stream.config import Topics

AnyDefinition = AudienceDefinition | ComputedTraitDefinition


@dataclass(frozen=True, slots=True)
class OutputRecord:
    destination: str | None  # None = the all-changes topic
    key: bytes  # profile id (keeps a profile's changes in order)
    value: bytes  # JSON
    message_id: str

    def topic(self, topics: Topics) -> str:
        return topics.changes if self.destination is None else topics.output(self.destination)


@dataclass(frozen=True, slots=True)
class Identity:
    """The identifiers one destination call carries."""

    user_id: str | None = None
    anonymous_id: str | None = None
    email: str | None = None


def identities(profile: ProfileRecord, include_anonymous: bool) -> list[Identity]:
    """One identifier combination per destination call, deterministic (see module doc)."""
    uids: list[str] = []
    anons: list[str] = []
    emails: list[str] = []
    for x in profile.external_ids:
        if x.collection != "users":
            continue
        bucket = (
            uids
            if x.type == "user_id"
            else anons
            if x.type == "anonymous_id"
            else emails
            if x.type == "email"
            else None
        )
        if bucket is not None and x.id not in bucket:
            bucket.append(x.id)
    if include_anonymous:
        anon_axis = anons
    elif not uids and anons:
        anon_axis = anons[:1]
    else:
        anon_axis = []
    n = max(len(uids), len(emails), len(anon_axis))
    return [Identity(_pick(uids, i), _pick(anon_axis, i), _pick(emails, i)) for i in range(n)]


def _pick(values: list[str], i: int) -> str | None:
    if not values:
        return None
    return values[i] if i < len(values) else values[0]


class ProfileView:
    """What every change of one profile needs for its records, computed once per batch of
    its changes rather than once per change."""

    __slots__ = ("profile", "key", "_ids", "_idents")

    def __init__(self, profile: ProfileRecord) -> None:
        self.profile = profile
        self.key = profile.profile_id.encode()
        self._ids: orjson.Fragment | None = None
        self._idents: dict[bool, list[Identity]] = {}

    def external_ids(self) -> orjson.Fragment:
        if self._ids is None:
            self._ids = orjson.Fragment(
                orjson.dumps(
                    [
                        {"type": x.type, "id": x.id, "collection": x.collection}
                        for x in self.profile.external_ids
                    ]
                )
            )
        return self._ids

    def identities(self, include_anonymous: bool) -> list[Identity]:
        got = self._idents.get(include_anonymous)
        if got is None:
            got = self._idents[include_anonymous] = identities(self.profile, include_anonymous)
        return got


def build_records(
    change: Change,
    profile: ProfileRecord,
    definition: AnyDefinition,
    space_id: str,
    view: ProfileView | None = None,
) -> list[OutputRecord]:
    """The all-changes record, then every destination call for one change. `view`: the
    profile's shared parts, when the caller builds several changes of it."""
    if view is None:
        view = ProfileView(profile)
    audience = isinstance(definition, AudienceDefinition)
    if (change.kind == "audience") != audience or change.key != definition.key:
        raise ValueError(
            f"change {change.kind}:{change.key} does not belong to definition "
            f"{definition.kind}:{definition.key}"
        )
    timestamp = iso_ms(change.at)
    records = [
        OutputRecord(
            None, view.key, _change_value(change, view, timestamp, space_id), change.message_id
        )
    ]
    if definition.destinations and definition.collection == "accounts":
        records.extend(
            _group_calls(definition, profile, change.value, change.message_id, timestamp, space_id)
        )
    elif definition.destinations:
        idents = view.identities(definition.include_anonymous)
        records.extend(
            _destination_calls(
                definition, profile, change.value, idents, change.message_id, timestamp, space_id
            )
        )
    return records


def _personas(definition: AnyDefinition, audience: bool, space_id: str) -> dict[str, Any]:
    """`context.personas` of every call a computation sends (reference §3.2)."""
    return {
        "computation_class": "audience" if audience else "trait",
        "computation_id": definition.computation_id(definition.computation_prefix),
        "computation_key": definition.key,
        "namespace": space_id,
        "space_id": space_id,
    }


def _group_calls(
    definition: AnyDefinition,
    profile: ProfileRecord,
    value: Any,
    message_id: str,
    timestamp: str,
    space_id: str,
) -> list[OutputRecord]:
    """An account-level change (reference §3.2): one Group call per destination, the
    account's group id with `traits.<key>` (audiences: true / false)."""
    group_id = next((x.id for x in profile.external_ids if x.type == "group_id"), None)
    if group_id is None:
        return []
    audience = isinstance(definition, AudienceDefinition)
    personas = _personas(definition, audience, space_id)
    v = value is True if audience else value
    calls: list[tuple[str, dict[str, Any]]] = []
    for dest in definition.destinations:
        calls.append((dest.name, {"type": "group", "groupId": group_id}))
        if dest.users:  # and each user of the account, by the ids it was linked with
            for link in profile.links:
                ids = dict(reversed([(t, i) for t, i in link.external_ids]))
                user: dict[str, Any] = {"type": "identify"}
                if "user_id" in ids:
                    user["userId"] = ids["user_id"]
                elif "anonymous_id" in ids:
                    user["anonymousId"] = ids["anonymous_id"]
                else:
                    continue
                calls.append((dest.name, user))
    out: list[OutputRecord] = []
    for n, (dest_name, call) in enumerate(calls):
        mid = message_id if len(calls) == 1 else f"{message_id}-{n}"
        payload = {
            **call,
            "messageId": mid,
            "timestamp": timestamp,
            "traits": {definition.key: v},
            "context": {"personas": personas, "groupId": group_id},
            "integrations": {"All": False, dest_name: True},
        }
        out.append(OutputRecord(dest_name, profile.profile_id.encode(), orjson.dumps(payload), mid))
    return out


def resync_records(
    profile: ProfileRecord,
    definition: AnyDefinition,
    version: int,
    added: Sequence[ExternalId],
    cause: str,
    at_ms: int,
    space_id: str,
    was_member: bool = False,
) -> list[OutputRecord]:
    """Re-send a definition's current value to identifiers just added to the profile
    (reference §3.3, re-sync trigger #2): the destination calls that carry one of them,
    as for a change; no all-changes record, since nothing changed. Members and computed
    values only: a non-member was never sent anything for that identifier to correct —
    unless `was_member`: the identifiers come from a merged-away profile that was a
    member, and their destinations must hear that the merged profile is not."""
    audience = isinstance(definition, AudienceDefinition)
    held = (profile.audiences if audience else profile.computed_traits).get(definition.key)
    if not definition.destinations:
        return []
    if audience:
        value: Any = held is not None and held.value is True
        if not value and not was_member:
            return []
    else:
        if held is None or held.value is None:
            return []
        value = held.value
    new = {(x.type, x.id) for x in added}
    idents = [
        i
        for i in identities(profile, definition.include_anonymous)
        if ("user_id", i.user_id) in new
        or ("anonymous_id", i.anonymous_id) in new
        or ("email", i.email) in new
    ]
    if not idents:
        return []
    mid = message_id(
        definition.kind, definition.key, version, profile.profile_id, RESYNC + cause, value
    )
    return _destination_calls(definition, profile, value, idents, mid, iso_ms(at_ms), space_id)


RESYNC = "resync:"  # cause prefix of re-sent values


def resync_all(
    profile: ProfileRecord,
    definitions: Iterable[AnyDefinition],
    versions: Mapping[str, int],
    added: Sequence[ExternalId],
    changed: set[str],
    cause: str,
    at_ms: int,
    space_id: str,
    members: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[OutputRecord]:
    """`resync_records` for every definition, except those whose change in the same event
    already goes to every identifier (`changed` keys); `members`: audiences the added
    identifiers' merged-away profile was in (they hear an exit if the merged one is not)."""
    out: list[OutputRecord] = []
    for d in definitions:
        if d.destinations and d.key not in changed:
            v = versions.get(d.key, 1)
            out.extend(
                resync_records(profile, d, v, added, cause, at_ms, space_id, d.key in members)
            )
    return out


def _destination_calls(
    definition: AnyDefinition,
    profile: ProfileRecord,
    value: Any,
    idents: list[Identity],
    base_message_id: str,
    timestamp: str,
    space_id: str,
) -> list[OutputRecord]:
    """Identify and/or Track calls per destination and identifier combination."""
    if not idents:
        return []
    audience = isinstance(definition, AudienceDefinition)
    calls: list[tuple[str, str, str | None]] = []  # (destination, "identify"|"track", event)
    for dest in definition.destinations:
        if dest.identify:
            calls.append((dest.name, "identify", None))
        if dest.track:
            if isinstance(definition, AudienceDefinition):
                event = dest.entered_event if value is True else dest.exited_event
            else:
                event = dest.track_event  # type: ignore[union-attr]
            calls.append((dest.name, "track", event))

    personas = _personas(definition, audience, space_id)
    if audience:
        value = value is True
    id_field = "audience_key" if audience else "trait_key"
    key = profile.profile_id.encode()
    total = len(calls) * len(idents)
    records: list[OutputRecord] = []
    n = 0
    for dest_name, call, event in calls:
        integrations = {"All": False, dest_name: True}
        for ident in idents:
            mid = base_message_id if total == 1 else f"{base_message_id}-{n}"
            n += 1
            payload: dict[str, Any] = {"type": call}
            if event is not None:
                payload["event"] = event
            if ident.user_id is not None:
                payload["userId"] = ident.user_id
            if ident.anonymous_id is not None:
                payload["anonymousId"] = ident.anonymous_id
            payload["messageId"] = mid
            payload["timestamp"] = timestamp
            if call == "identify":
                traits: dict[str, Any] = {definition.key: value}
                if ident.email is not None and definition.key != "email":
                    traits["email"] = ident.email
                payload["traits"] = traits
                payload["context"] = {"personas": personas}
            else:
                payload["properties"] = {id_field: definition.key, definition.key: value}
                context: dict[str, Any] = {"personas": personas}
                if ident.email is not None:
                    context["traits"] = {"email": ident.email}
                payload["context"] = context
            payload["integrations"] = integrations
            records.append(OutputRecord(dest_name, key, orjson.dumps(payload), mid))
    return records


def _change_value(change: Change, view: ProfileView, at_iso: str, space_id: str) -> bytes:
    return orjson.dumps(
        {
            "message_id": change.message_id,
            "kind": change.kind,
            "key": change.key,
            "version": change.version,
            "profile_id": change.profile_id,
            "value": change.value,
            "previous": change.previous,
            "at": at_iso,
            "at_ms": change.at,
            "cause": change.cause,
            "external_ids": view.external_ids(),
            "space_id": space_id,
        }
    )


DESTINATION = "destination:"  # cause prefix of values sent to a destination added later


def destination_backfill_records(
    profile: ProfileRecord,
    definition: AnyDefinition,
    version: int,
    destinations: set[str],
    space_id: str,
) -> list[OutputRecord]:
    """A definition's current value sent to destinations just added to it, as Segment
    backfills a newly connected destination: members (audiences) and computed values
    only, each call as a change would send it, timed when the value was set. The
    messageId is a function of (definition version, profile, destination, value)."""
    audience = isinstance(definition, AudienceDefinition)
    held = (profile.audiences if audience else profile.computed_traits).get(definition.key)
    if held is None or held.value is None or (audience and held.value is not True):
        return []
    added = [d for d in definition.destinations if d.name in destinations]
    if not added:
        return []
    only = definition.model_copy(update={"destinations": added})
    idents = identities(profile, definition.include_anonymous)
    cause = DESTINATION + ",".join(sorted(d.name for d in added))
    mid = message_id(
        definition.kind, definition.key, version, profile.profile_id, cause, held.value
    )
    return _destination_calls(only, profile, held.value, idents, mid, iso_ms(held.ts), space_id)
