"""Who receives a broadcast, evaluated over one partition's profiles at one instant.

A profile is a recipient when it matches `recipients` (audience memberships and traits as
stored at that instant). Each of its contact vectors for the channel — the `to` trait (or
`email` / `phone`), then its email / phone identifiers, each address once — gets one
request if its subscription state allows it (reference §5: subscribed only, or for email
every state with `subscription: all`); otherwise it is skipped with that state as the
reason (`none`, `unsubscribed`, `did_not_subscribe`), or `no_address` when the profile has
no address at all. An address shared by two profiles of one partition is sent once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from engage_stream.broadcasts.catalog import BroadcastEntry
from engage_stream.broadcasts.models import BroadcastDefinition, sms_segments
from engage_stream.journeys.machine import JourneyProfile, compile_conditions
from engage_stream.journeys.subscriptions import allowed, state_of, vector_key
from engage_stream.messaging.requests import MessageSendRequest
from engage_stream.messaging.templates import render
from engage_stream.profiles.record import ProfileRecord, is_account
from engage_stream.profiles.store import ProfileStore
from engage_stream.timestamps import iso_ms


def idempotency_key(broadcast: str, version: int, vector: str) -> str:
    """Deterministic per broadcast, version and contact: a restart, a rebalance or a
    replay of the send produces the same key for the same person."""
    digest = hashlib.blake2b(f"{broadcast}\x00{version}\x00{vector}".encode(), digest_size=16)
    return "bm_" + digest.hexdigest()


@dataclass
class Snapshot:
    requests: list[MessageSendRequest] = field(default_factory=list)
    profiles: int = 0  # profiles matching the recipient conditions
    skipped: dict[str, int] = field(default_factory=dict)  # contact vectors not sent, by reason

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass
class Preview:
    """A preview's answer: counts and a sample of recipients, summed over partitions."""

    profiles: int = 0
    recipients: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    sample: list[dict[str, str]] = field(default_factory=list)  # {profile_id, recipient}

    @classmethod
    def of(cls, snap: Snapshot, sample: int) -> Preview:
        return cls(
            snap.profiles,
            len(snap.requests),
            dict(snap.skipped),
            [
                {"profile_id": r.profile_id, "recipient": r.recipient}
                for r in snap.requests[:sample]
            ],
        )

    def add(self, other: Preview, sample: int | None = None) -> None:
        self.profiles += other.profiles
        self.recipients += other.recipients
        for k, n in other.skipped.items():
            self.skipped[k] = self.skipped.get(k, 0) + n
        self.sample.extend(other.sample)
        if sample is not None:
            del self.sample[sample:]


class Recipients:
    def __init__(self, entry: BroadcastEntry, space_id: str) -> None:
        self.entry = entry
        self.defn: BroadcastDefinition = entry.definition
        self.space_id = space_id
        self.matches = compile_conditions(self.defn.recipients)

    def evaluate(self, store: ProfileStore, at: int, limit: int | None = None) -> Snapshot:
        """Every recipient of the partition at `at` (the first `limit` matching profiles
        when given: a preview's sample)."""
        snap = Snapshot()
        seen: set[str] = set()
        for record in _users(store):
            profile = JourneyProfile.from_record(record, record.subscriptions)
            if not self.matches(profile, {}, at):
                continue
            snap.profiles += 1
            addresses = self._addresses(record, profile)
            if not addresses:
                snap.skip("no_address")
            for address in addresses:
                vector = vector_key(self.defn.channel, address)
                if vector in seen:
                    continue
                seen.add(vector)
                state = state_of(record.subscriptions, self.defn.channel, address, self.defn.group)
                if not allowed(state, self.defn.channel, self.defn.subscription):
                    snap.skip(state)
                    continue
                snap.requests.append(self._request(record, profile, address, vector, at))
            if limit is not None and snap.profiles >= limit:
                break
        return snap

    def _addresses(self, record: ProfileRecord, profile: JourneyProfile) -> list[str]:
        kind = "email" if self.defn.channel == "email" else "phone"
        out: list[str] = []
        trait = profile.traits.get(self.defn.to or kind)
        if isinstance(trait, str) and trait.strip():
            out.append(trait.strip())
        out += [x.id for x in record.external_ids if x.type == kind and x.id.strip()]
        unique: dict[str, str] = {}
        for a in out:
            unique.setdefault(vector_key(self.defn.channel, a), a)
        return list(unique.values())

    def _request(
        self, record: ProfileRecord, profile: JourneyProfile, address: str, vector: str, at: int
    ) -> MessageSendRequest:
        d, e = self.defn, self.entry
        extra = {"broadcast": d.key, "campaign_key": d.key}
        traits, pid = profile.traits, record.profile_id
        body = render(d.body, traits, pid, None, extra) if d.body is not None else None
        key = idempotency_key(d.key, e.version, vector)
        return MessageSendRequest(
            message_id=key,
            idempotency_key=key,
            source="broadcast",
            channel=d.channel,
            recipient=address,
            template=d.template,
            subject=render(d.subject, traits, pid, None, extra) if d.subject else None,
            body=body,
            segments=sms_segments(body) if body is not None else None,
            group=d.group,
            variables={k: render(v, traits, pid, None, extra) for k, v in d.variables.items()},
            profile_id=pid,
            at=at,
            at_iso=iso_ms(at),
            space_id=self.space_id,
            version=e.version,
            broadcast=d.key,
            campaign_key=d.key,
        )


def _users(store: ProfileStore) -> Iterator[ProfileRecord]:
    for pid in store.profile_ids():
        if is_account(pid):
            continue
        record = store.get(pid)
        if record is not None:
            yield record
