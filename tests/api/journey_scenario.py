"""One journeys scenario over two partitions, run by the real profiles stage in process.

Shared by the journeys API tests and the journey metrics tests: both read what the stage
itself stored (profile journey states, the partitions' journey counts) and the outputs it
returned, never hand-written counts.

Journeys: `trial` (event-triggered, version 2, version 1 still known and draining one
instance), `welcome` (classic, entered on joining `buyers`), `sunset` (paused, never
entered) and `broken` (a body this worker cannot use). What happens, by partition:

- 0: `subscribed` (email subscribed) starts trial t0 under version 1, then, once version 2
  is published, t1 (upgrades: `thanks` requested, completed) and t2 (still holding);
- 1: `unsubscribed` (email unsubscribed), `silent` (an email, no subscription state) and
  `nomail` (no address) start t3, t5 and t6, which time out: `nudge` skipped
  (unsubscribed, none, no_address), completed; `quitter` starts t4 and cancels it
  (exited, exit_event); then `unsubscribed` buys: enters `welcome`, waits in `cool_off`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.events import ProfileEvent
from engage_stream.journeys.catalog import JourneyCatalog
from engage_stream.profiles.stage import TICK_KEY, ProfileStage, StageResult
from engage_stream.profiles.store import ProfileStore
from engage_stream.records import InputRecord
from engage_stream.state.memory import MemoryStore
from engage_stream.state.transaction import Transaction
from engage_stream.stream.producing import partition_for
from tests.api.test_audiences import AUDIENCE

PARTITIONS = 2
T0 = 1_800_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
PUBLISHED_V1, PUBLISHED_V2 = T0 - DAY, T0 + 10_000
TOPIC = Settings().topics.profile_events


def trial_body(version: int) -> dict[str, Any]:
    """Version 1 nudges by SMS (`legacy_sms`); version 2 by email (`nudge`)."""
    nudge = "legacy_sms" if version == 1 else "nudge"
    return {
        "kind": "journey",
        "key": "trial",
        "name": "Trial to paid",
        "entry": {"event": "Trial Started", "rule": "every_time", "unique_identifier": "trial_id"},
        "exit": {"events": [{"event": "Trial Cancelled", "match_identifier": True}]},
        "steps": [
            {
                "type": "hold_until",
                "key": "wait_for_upgrade",
                "name": "Wait for the upgrade",
                "max_hold": "1 day",
                "branches": [{"name": "upgraded", "event": "Plan Upgraded", "next": "thanks"}],
                "timeout_next": nudge,
            },
            {"type": "send_message", "key": "thanks", "channel": "email", "template": "thanks"},
            {
                "type": "send_message",
                "key": nudge,
                "channel": "sms" if version == 1 else "email",
                "template": "nudge",
            },
        ],
    }


WELCOME = {
    "kind": "journey",
    "key": "welcome",
    "entry": {"audience": "buyers"},
    "steps": [
        {"type": "wait", "key": "cool_off", "duration": "1 hour", "next": "welcome_email"},
        {"type": "send_message", "key": "welcome_email", "channel": "email", "template": "w"},
    ],
}
SUNSET = {
    "kind": "journey",
    "key": "sunset",
    "status": "paused",
    "entry": {"event": "Sunset", "rule": "once"},
    "steps": [{"type": "exit", "key": "done"}],
}
BROKEN = {"kind": "journey", "key": "broken", "entry": {"event": "X"}, "steps": []}


def catalog(trial_version: int) -> Catalog:
    """The definitions in force with `trial` at `trial_version` (2 keeps 1 as history)."""
    cat = Catalog.from_records([("buyers", 1, T0 - 2 * DAY, AUDIENCE)])
    history = [{"version": 1, "body": trial_body(1)}] if trial_version == 2 else []
    published = PUBLISHED_V2 if trial_version == 2 else PUBLISHED_V1
    cat.journeys = JourneyCatalog.from_records(
        [
            ("trial", trial_version, published, trial_body(trial_version), history),
            ("welcome", 1, PUBLISHED_V1, WELCOME, []),
            ("sunset", 1, PUBLISHED_V1, SUNSET, []),
            ("broken", 1, PUBLISHED_V1, BROKEN, []),
        ]
    )
    return cat


def user_on(partition: int, name: str) -> str:
    """A user id named after `name` whose profile (`user_id:<id>`) lands in `partition`."""
    return next(
        f"{name}{i}"
        for i in range(1000)
        if partition_for(f"user_id:{name}{i}".encode(), PARTITIONS) == partition
    )


@dataclass
class Partition:
    """One partition's database and the stage applied to it batch by batch, as the worker
    does (a transaction per batch, committed)."""

    number: int
    stage: ProfileStage
    db: MemoryStore = field(default_factory=MemoryStore)
    clock: int = 0
    offset: int = 0
    sweep: Any = None
    results: list[StageResult] = field(default_factory=list)

    def run(self, *records: tuple[bytes, bytes | None, int]) -> StageResult:
        batch = []
        for key, value, ts in records:
            batch.append(InputRecord(TOPIC, self.number, self.offset, ts, key, value))
            self.offset += 1
        tx = Transaction(
            self.db, clock=self.clock, source_offset=self.db.source_offset, sweep=self.sweep
        )
        result = self.stage.apply(tx, batch)
        tx.prepare()
        tx.commit(None)
        self.clock, self.sweep = tx.clock, tx.sweep
        self.results.append(result)
        return result

    def event(self, user: str, at: int, name: str | None = None, **kw: Any) -> StageResult:
        e = ProfileEvent(
            message_id=f"{user}-{name or 'identify'}-{at}",
            type=kw.pop("type", "track"),
            event=name,
            timestamp=at,
            received_at=at,
            profile_id=f"user_id:{user}",
            user_id=user,
            **kw,
        )
        return self.run((TICK_KEY, None, at), (e.profile_id.encode(), e.to_json(), at))

    def tick(self, at: int) -> StageResult:
        return self.run((TICK_KEY, None, at))

    @property
    def store(self) -> ProfileStore:
        return ProfileStore(Transaction(self.db))


def subscribe(p: Partition, user: str, at: int, status: str) -> None:
    email = f"{user}@x.io"
    p.event(
        user,
        at,
        type="identify",
        traits={"email": email},
        context={"messaging_subscriptions": [{"key": email, "type": "EMAIL", "status": status}]},
    )


@dataclass
class Scenario:
    partitions: list[Partition]
    catalog: Catalog
    users: dict[str, str]  # role -> user id


def run() -> Scenario:
    settings = Settings()
    v1, v2 = catalog(1), catalog(2)
    parts = [Partition(p, ProfileStage(settings, v1)) for p in range(PARTITIONS)]
    p0, p1 = parts
    users = {
        "subscribed": user_on(0, "sub"),
        "unsubscribed": user_on(1, "uns"),
        "quitter": user_on(1, "quit"),
        "silent": user_on(1, "silent"),
        "nomail": user_on(1, "nomail"),
    }
    sub, uns, quitter = users["subscribed"], users["unsubscribed"], users["quitter"]
    subscribe(p0, sub, T0, "SUBSCRIBED")
    subscribe(p1, uns, T0, "UNSUBSCRIBED")
    p1.event(users["silent"], T0, type="identify", traits={"email": "silent@x.io"})
    p0.event(sub, T0 + 1000, "Trial Started", properties={"trial_id": "t0"})
    for p in parts:  # version 2 is published: t0 drains in version 1
        p.stage.use(v2)
        p.tick(PUBLISHED_V2)
    p0.event(sub, T0 + 20_000, "Trial Started", properties={"trial_id": "t1", "plan": "pro"})
    p0.event(sub, T0 + 21_000, "Plan Upgraded", properties={"trial_id": "t1"})
    p0.event(sub, T0 + 22_000, "Trial Started", properties={"trial_id": "t2"})
    p1.event(uns, T0 + 20_000, "Trial Started", properties={"trial_id": "t3"})
    p1.event(quitter, T0 + 21_000, "Trial Started", properties={"trial_id": "t4"})
    p1.event(quitter, T0 + 22_000, "Trial Cancelled", properties={"trial_id": "t4"})
    p1.event(users["silent"], T0 + 23_000, "Trial Started", properties={"trial_id": "t5"})
    p1.event(users["nomail"], T0 + 24_000, "Trial Started", properties={"trial_id": "t6"})
    p1.tick(T0 + 2 * DAY)  # t3, t5, t6 time out: nudge skipped
    p1.event(uns, T0 + 2 * DAY + 1000, "Order Completed")  # joins buyers: enters welcome
    return Scenario(parts, v2, users)
