"""Journeys on the real broker, through the worker child process.

A classic journey with a second-scale wait (`ENGAGE_JOURNEY_MIN_WAIT_MS` lowers the 5-minute
minimum, for the apply and for the worker, which both validate the body) end to end: what
lands on `engage.journeys`, the destination topic and `engage.messages`, and when. Then the
worker SIGKILLed while profiles wait — local state kept, or deleted and rebuilt from the
changelog — and restarted: each wait fires once, at its due instant, each message has one
idempotency key. And the worker's journey records equal `Replay`'s over the same
`profile-events` records, byte for byte.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.consumer.fetcher import ConsumerRecord

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.journeys.catalog import JourneyCatalog
from engage_stream.journeys.models import MIN_WAIT_ENV, step_key
from engage_stream.messaging.requests import MessageSendRequest
from engage_stream.records import InputRecord, OutgoingRecord
from engage_stream.replay import Replay
from engage_stream.stream import definitions_topic
from engage_stream.stream.topics import ensure_topics
from engage_stream.timestamps import iso_ms
from engage_stream.worker_process import WorkerProcess
from tests.stream.helpers import (
    identify,
    processed,
    produce,
    read_topic,
    run_cli,
    source_offsets,
    track,
    wait_for,
)

pytestmark = pytest.mark.broker

MIN_WAIT = {MIN_WAIT_ENV: "1000"}
# The Faust app's own consumer group (`<app_id>-web`) keeps Faust's 60 s session timeout:
# a worker started after a SIGKILL waits that long for the dead member's eviction. The
# data path's groups use 10 s (ConsumerOptions.session_timeout_ms); so does this.
WORKER_ENV = {**MIN_WAIT, "BROKER_SESSION_TIMEOUT": "10"}
WAIT_MS = 6_000  # the journey's wait, {minutes: 0.1}
HOLD_MS = 6_000  # the trial journey's max hold, {minutes: 0.1}
# How late (wall clock) a wait's step_exited may be produced after its due instant: the
# worker ticks every 0.5 s, then one batch, so about 1 s; generous for a loaded CI machine.
LAG_SLACK_MS = 5_000

AUDIENCE = """
kind: audience
key: members
conditions:
  - trait: email
    operator: exists
"""

JOURNEY = """
kind: journey
key: welcome
entry: {audience: members}
steps:
  - type: send_to_destination
    key: tag_crm
    destinations: [crm]
    next: pause
  - type: wait
    key: pause
    duration: {minutes: 0.1}
    next: is_pro
  - type: split
    key: is_pro
    condition:
      - {trait: plan, operator: equals, value: pro}
    if_true: welcome_email
  - type: send_message
    key: welcome_email
    channel: email
    template: welcome_pro
    variables: {name: "{{traits.name}}"}
"""

# event-triggered, for the replay comparison: parallel instances per trial, a hold released
# by an event or by its timeout
TRIAL_JOURNEY = """
kind: journey
key: trial
entry: {event: Trial Started, rule: every_time, unique_identifier: trial_id}
steps:
  - type: hold_until
    key: wait_upgrade
    max_hold: {minutes: 0.1}
    branches:
      - {name: upgraded, event: Upgraded, next: thank}
    timeout_next: nudge
  - type: send_to_destination
    key: thank
    destinations: [crm]
    event: Trial Upgraded
  - type: send_message
    key: nudge
    channel: email
    template: trial_nudge
    variables: {trial: "{{context.Trial Started.trial_id}}"}
"""

# (type, step, branch) of every welcome record, in order, by the way through it
ENTERED = [
    ("instance_entered", "", ""),
    ("step_entered", "tag_crm", ""),
    ("destination_send", "tag_crm", ""),
    ("step_exited", "tag_crm", ""),
    ("step_entered", "pause", ""),
]
AFTER_WAIT = [("step_exited", "pause", ""), ("step_entered", "is_pro", "")]
PRO_REQUESTED = [
    *ENTERED,
    *AFTER_WAIT,
    ("step_exited", "is_pro", "true"),
    ("step_entered", "welcome_email", ""),
    ("message_request", "welcome_email", ""),
    ("step_exited", "welcome_email", ""),
    ("instance_completed", "", ""),
]
PRO_SKIPPED = [
    ("message_skipped", "welcome_email", "") if t == "message_request" else (t, st, b)
    for t, st, b in PRO_REQUESTED
]
FREE = [*ENTERED, *AFTER_WAIT, ("step_exited", "is_pro", "false"), ("instance_completed", "", "")]


@pytest.fixture
def min_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process validates the published bodies too (the replay's journey catalog)."""
    monkeypatch.setenv(MIN_WAIT_ENV, "1000")


def now_ms() -> int:
    return int(time.time() * 1000)


def write_definitions(path: Path, journeys: dict[str, str]) -> Path:
    """The audience and `journeys` (file stem -> YAML) as files, as an operator keeps them."""
    path.mkdir()
    (path / "members.yaml").write_text(AUDIENCE)
    for name, text in journeys.items():
        (path / f"{name}.journey").write_text(text)
    return path


def apply(s: Settings, path: Path, journeys: dict[str, str]) -> None:
    """`engage-stream apply <path>` as an operator runs it, with the lowered minimum wait in
    its environment (it validates the journeys before publishing them)."""
    write_definitions(path, journeys)
    done = run_cli(s, "apply", str(path), env=MIN_WAIT)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in journeys:
        assert f"journey:{name} -> version 1" in done.stdout, done.stdout


def worker_catalog(s: Settings) -> Catalog:
    """The catalog a worker builds from the definitions topic (`Worker.on_definitions`):
    the journeys with their published versions and publication times."""
    current = definitions_topic.live(definitions_topic.read_all(s))
    catalog = Catalog.from_records(
        (r.key, r.version, r.created_at or r.applied_at, r.body, r.evaluated_version)
        for r in current.values()
        if r.kind in ("audience", "computed_trait")
    )
    catalog.journeys = JourneyCatalog.from_records(
        (r.key, r.evaluated_version or r.version, r.applied_at, r.body, r.history)
        for r in current.values()
        if r.kind == "journey"
    )
    return catalog


def start(s: Settings, log: Path) -> WorkerProcess:
    """A worker with the lowered minimum wait (else it rejects the journey), once its
    journeys are live."""
    w = WorkerProcess(s, log, env=WORKER_ENV)
    w.start(timeout=90)
    try:
        wait_for(
            lambda: w.metric("engage_definitions", 'kind="journey"') >= 1,
            what="the journeys live in the worker",
        )
    except BaseException:
        w.stop()
        raise
    return w


def signup(user: str, at: int, plan: str, subscription: str | None = None) -> dict[str, Any]:
    """An identify that makes `user` a member (an email); `subscription`: the email's
    `context.messaging_subscriptions` status (None: the address has no status)."""
    email = f"{user}@example.com"
    msg = identify(user, iso_ms(at), f"{user}-signup", email=email, plan=plan, name=user.title())
    if subscription is not None:
        subs = [{"key": email, "type": "EMAIL", "status": subscription}]
        msg["context"] = {"messaging_subscriptions": subs}
    return msg


class Journal:
    """`engage.journeys` read back: each record with its JSON value, a profile's records by
    its user id (a journey record names the opaque profile id; the destination send, the
    first step of `welcome`, carries the userId)."""

    def __init__(self, s: Settings) -> None:
        self.records: list[ConsumerRecord] = read_topic(s, s.topics.journeys)
        self.values: list[dict[str, Any]] = [orjson.loads(r.value) for r in self.records]
        self.user_of = {
            v["profile_id"]: v["calls"][0]["userId"]
            for v in self.values
            if v["type"] == "destination_send"
        }

    def of(
        self, user: str, journey: str = "welcome"
    ) -> list[tuple[ConsumerRecord, dict[str, Any]]]:
        """The user's records of one journey, in the order produced (one partition)."""
        return [
            (r, v)
            for r, v in zip(self.records, self.values, strict=True)
            if self.user_of.get(v["profile_id"]) == user and v["journey"] == journey
        ]

    def distinct(self, user: str, journey: str = "welcome") -> list[dict[str, Any]]:
        """The user's records with at-least-once copies (same message_id) left out."""
        seen: set[str] = set()
        out = []
        for _, v in self.of(user, journey):
            if v["message_id"] not in seen:
                seen.add(v["message_id"])
                out.append(v)
        return out

    def count(self, kind: str, journey: str = "welcome") -> int:
        """Distinct records of a type (copies of one message_id count once)."""
        return len(
            {v["message_id"] for v in self.values if v["type"] == kind and v["journey"] == journey}
        )


def timeline(values: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(v["type"], v["step"], v.get("branch", "")) for v in values]


def completed(s: Settings, n: int, journey: str = "welcome") -> Journal:
    def check() -> Journal | None:
        j = Journal(s)
        return j if j.count("instance_completed", journey) >= n else None

    return wait_for(check, timeout=60, what=f"{n} instances of {journey} completed")


def messages(s: Settings) -> list[tuple[ConsumerRecord, dict[str, Any]]]:
    return [(r, orjson.loads(r.value)) for r in read_topic(s, s.topics.messages)]


def replayed(s: Settings) -> list[OutgoingRecord]:
    """What `Replay` makes of the worker's own `profile-events` records (ticks included),
    one partition at a time, with the worker's catalog."""
    catalog = worker_catalog(s)
    assert catalog.journeys and not catalog.journeys.failed
    by_partition: dict[int, list[ConsumerRecord]] = defaultdict(list)
    for rec in read_topic(s, s.topics.profile_events):
        by_partition[rec.partition].append(rec)
    out: list[OutgoingRecord] = []
    for part, recs in sorted(by_partition.items()):
        out.extend(
            Replay(catalog, s).apply_records(
                [InputRecord(r.topic, part, r.offset, r.timestamp, r.key, r.value) for r in recs]
            )
        )
    return out


def replayed_values(outputs: list[OutgoingRecord], topic: str) -> list[bytes]:
    return [o.value or b"" for o in outputs if o.topic == topic]


# -- 1. end to end ---------------------------------------------------------------------------
def test_journey_with_a_wait_of_seconds_end_to_end(
    worker_settings: Settings, tmp_path: Path, min_wait: None
) -> None:
    s = worker_settings
    ensure_topics(s)
    apply(s, tmp_path / "defs", {"welcome": JOURNEY})
    w = start(s, tmp_path / "worker.log")
    try:
        t0 = now_ms()
        at = {"ann": t0, "bob": t0 + 1, "cid": t0 + 2}
        produce(
            s,
            [
                signup("ann", at["ann"], "pro", "SUBSCRIBED"),
                signup("bob", at["bob"], "pro"),  # no subscription status: none
                signup("cid", at["cid"], "free", "SUBSCRIBED"),  # the split's false branch
            ],
        )
        completed(s, 3)
        time.sleep(3 * s.tick_interval_s)  # and a few more ticks, that must add nothing
        journal = Journal(s)
        outs = read_topic(s, s.topics.output("crm"))
        sent = messages(s)
    finally:
        w.stop()

    assert sorted(journal.user_of.values()) == ["ann", "bob", "cid"]
    assert len(journal.records) == len(PRO_REQUESTED) + len(PRO_SKIPPED) + len(FREE)
    expected = {"ann": PRO_REQUESTED, "bob": PRO_SKIPPED, "cid": FREE}
    requests = {}
    for user, way in expected.items():
        recs = journal.of(user)
        values = [v for _, v in recs]
        assert timeline(values) == way, user
        assert len({v["instance_id"] for v in values}) == 1, "one instance"
        assert {v["version"] for v in values} == {1}
        # event time: the entry at the identify's timestamp, the wait exactly its duration on
        entered = values[0]["at"]
        assert entered == at[user]
        due = entered + WAIT_MS
        n = len(ENTERED)
        assert [v["at"] for v in values] == [entered] * n + [due] * (len(values) - n)
        assert all(v["cause"].startswith("audience:members:") for v in values[:n])
        assert {v["cause"] for v in values[n:]} == {f"timer:{due}"}
        # wall time: the wait's step_exited was produced shortly after its due instant
        rec, exit_ = recs[n]
        assert (exit_["type"], exit_["step"]) == ("step_exited", "pause")
        lag = rec.timestamp - due
        entry_lag = recs[0][0].timestamp - entered
        print(f"{user}: entered {entry_lag} ms after the event, wait fired {lag} ms after due")
        assert 0 <= lag <= LAG_SLACK_MS, f"{user}: the wait fired {lag} ms after its due instant"
        message = next((v for v in values if v["type"].startswith("message_")), None)
        if message is not None:
            requests[user] = message
    assert sorted(requests) == ["ann", "bob"], "the false branch sends nothing"

    skipped = requests["bob"]
    assert (skipped["channel"], skipped["recipient"], skipped["reason"]) == (
        "email",
        "bob@example.com",
        "none",
    )

    # the destination: one Identify per member, keyed as v1 journeys are
    key = step_key("welcome", "tag_crm", False)
    calls = sorted((orjson.loads(r.value) for r in outs), key=lambda c: c["userId"])
    assert [c["userId"] for c in calls] == ["ann", "bob", "cid"]
    sends = {v["profile_id"]: v for v in journal.values if v["type"] == "destination_send"}
    for call in calls:
        user = call["userId"]
        assert call["type"] == "identify"
        assert call["traits"] == {key: "true", "email": f"{user}@example.com"}
        assert call["timestamp"] == iso_ms(at[user])
        assert call["integrations"] == {"All": False, "crm": True}
        personas = call["context"]["personas"]
        assert (personas["computation_key"], personas["space_id"]) == (key, s.space_id)
        pid = next(p for p, u in journal.user_of.items() if u == user)
        assert call["messageId"] == sends[pid]["calls"][0]["messageId"]

    # the message: one request, for the subscribed member only
    assert len(sent) == 1
    rec, msg = sent[0]
    req = requests["ann"]
    assert rec.key == req["profile_id"].encode()
    assert MessageSendRequest.model_validate(msg) == MessageSendRequest(
        message_id=req["message_id"],
        idempotency_key=req["idempotency_key"],
        source="journey",
        channel="email",
        template="welcome_pro",
        recipient="ann@example.com",
        variables={"name": "Ann"},
        journey="welcome",
        version=1,
        step="welcome_email",
        instance_id=req["instance_id"],
        profile_id=req["profile_id"],
        at=at["ann"] + WAIT_MS,
        at_iso=iso_ms(at["ann"] + WAIT_MS),
        space_id=s.space_id,
    )


# -- 2. a crash while profiles wait ----------------------------------------------------------
CRASHES = {
    # name: (offsets committed before the kill, local state deleted before the restart)
    "kill-keep-local": (False, False),
    "kill-after-commit-delete-local": (True, True),
    "kill-before-commit-delete-local": (False, True),
}
EARLY = {"e1": "SUBSCRIBED", "e2": None}  # through the wait before the kill
LATE = {"l1": "SUBSCRIBED", "l2": None, "l3": "SUBSCRIBED"}  # waiting when it is killed


@pytest.mark.parametrize("scenario", list(CRASHES))
def test_sigkill_during_a_wait_fires_it_once_at_its_due_instant(
    worker_settings: Settings,
    tmp_path: Path,
    min_wait: None,
    scenario: str,
) -> None:
    commit, delete_local = CRASHES[scenario]
    s = worker_settings.model_copy(update={"commit_interval_s": 0.5 if commit else 3600.0})
    ensure_topics(s)
    apply(s, tmp_path / "defs", {"welcome": JOURNEY})
    users = {**EARLY, **LATE}
    w1 = start(s, tmp_path / "w1.log")
    try:
        t0 = now_ms()
        produce(s, [signup(u, t0, "pro", sub) for u, sub in EARLY.items()])
        completed(s, len(EARLY))  # their message request / skip is out before the kill
        t1 = now_ms()
        produce(s, [signup(u, t1, "pro", sub) for u, sub in LATE.items()])

        def waiting() -> bool:
            j = Journal(s)
            return all(("step_entered", "pause", "") in timeline(j.distinct(u)) for u in LATE)

        wait_for(waiting, what="the late profiles waiting")
        if commit:
            _, ends = source_offsets(s)
            wait_for(
                lambda: all(source_offsets(s)[0].get(p, 0) >= e for p, e in ends.items()),
                what="offsets committed",
            )
    finally:
        w1.kill()
    killed = now_ms()
    print(f"{scenario}: killed {t1 + WAIT_MS - killed} ms before the late profiles' wait ends")
    assert killed < t1 + WAIT_MS, "the kill came after the wait: make the wait longer"
    if not commit:
        committed, ends = source_offsets(s)
        assert all(committed.get(p, 0) < e for p, e in ends.items()), "killed before a commit"
    if delete_local:
        shutil.rmtree(s.data_dir / s.app_id / "state")

    w2 = start(s, tmp_path / "w2.log")
    print(f"{scenario}: restarted worker ready {(now_ms() - killed) / 1000:.1f} s after the kill")
    try:
        # uncommitted input comes again: re-ingested copies are dropped by messageId, and
        # without local state the profile-events records are applied again
        redelivered = 0 if commit else len(users) * (2 if delete_local else 1)
        wait_for(
            lambda: processed(w2) + w2.metric("engage_duplicates_dropped_total") >= redelivered,
            what="re-delivered input handled",
        )
        completed(s, len(users))
        time.sleep(3 * s.tick_interval_s)  # and a few more ticks, that must add nothing
        journal = Journal(s)
        sent = messages(s)
        reapplied = processed(w2)
        dropped = w2.metric("engage_duplicates_dropped_total")
        recovered = w2.metric("engage_recovery_records_total", 'outcome="applied"')
    finally:
        w2.stop()
    print(f"{scenario}: w2 applied {reapplied:.0f} events again, dropped {dropped:.0f} copies")
    assert reapplied == (len(users) if delete_local and not commit else 0)
    assert dropped == (0 if commit else len(users))
    if commit and delete_local:
        assert recovered > 0, "the state was rebuilt from the changelog"

    # a copy from at-least-once delivery is the same record, byte for byte
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for r, v in zip(journal.records, journal.values, strict=True):
        by_id[v["message_id"]].add(r.value)
    assert all(len(values) == 1 for values in by_id.values())

    copies: dict[str, int] = {}
    for user, sub in users.items():
        values = journal.distinct(user)
        assert timeline(values) == (PRO_REQUESTED if sub else PRO_SKIPPED), user
        assert len({v["instance_id"] for v in values}) == 1, f"{user}: one instance"
        entered = values[0]["at"]
        assert entered == (t0 if user in EARLY else t1)
        exits = [
            (r, v)
            for r, v in journal.of(user)
            if (v["type"], v["step"]) == ("step_exited", "pause")
        ]
        assert {v["at"] for _, v in exits} == {entered + WAIT_MS}, f"{user}: at its due instant"
        assert {v["cause"] for _, v in exits} == {f"timer:{entered + WAIT_MS}"}
        copies[user] = len(exits)
        if user in LATE:
            # due after the kill: only the restarted worker fired it, once
            assert len(exits) == 1, f"{user}: the wait fired {len(exits)} times"
            lag = exits[0][0].timestamp - (entered + WAIT_MS)
            print(f"{scenario}: {user}'s wait fired {lag} ms after due")
            assert exits[0][0].timestamp >= killed, "by the restarted worker"

    # one message request per subscribed instance, one idempotency key each; copies only of
    # what the killed worker had produced and not committed (applied again from scratch)
    keys_of: dict[str, set[str]] = defaultdict(set)
    values_of: dict[str, set[bytes]] = defaultdict(set)
    for r, m in sent:
        keys_of[m["instance_id"]].add(m["idempotency_key"])
        values_of[m["idempotency_key"]].add(r.value)
    assert all(len(k) == 1 for k in keys_of.values()), "one key per instance"
    assert all(len(v) == 1 for v in values_of.values()), "copies are byte-identical"
    subscribed = {u for u, sub in users.items() if sub}
    requests = {
        v["idempotency_key"]: journal.user_of[v["profile_id"]]
        for v in journal.values
        if v["type"] == "message_request"
    }
    assert sorted(requests.values()) == sorted(subscribed)
    per_user = Counter(requests[m["idempotency_key"]] for _, m in sent)
    print(f"{scenario}: message records per user {dict(per_user)}, wait exits {copies}")
    again = 2 if delete_local and not commit else 1
    assert per_user == {u: (again if u in EARLY else 1) for u in subscribed}

    # and it all is what one pass over the input gives
    outputs = replayed(s)
    assert set(replayed_values(outputs, s.topics.journeys)) == {r.value for r in journal.records}
    assert set(replayed_values(outputs, s.topics.messages)) == {r.value for r, _ in sent}


# -- 3. worker vs replay ---------------------------------------------------------------------
def test_worker_and_replay_give_byte_identical_journey_records(
    worker_settings: Settings, tmp_path: Path, min_wait: None
) -> None:
    s = worker_settings
    ensure_topics(s)
    apply(s, tmp_path / "defs", {"welcome": JOURNEY, "trial": TRIAL_JOURNEY})
    w = start(s, tmp_path / "worker.log")
    try:
        t0 = now_ms()
        produce(
            s,
            [
                signup("ann", t0, "pro", "SUBSCRIBED"),
                signup("bob", t0, "pro"),
                signup("cid", t0, "free", "SUBSCRIBED"),
                signup("fay", t0, "free", "SUBSCRIBED"),  # upgrades during the wait
                signup("gus", t0, "pro", "SUBSCRIBED"),  # unsubscribes during the wait
                track("ann", "Trial Started", iso_ms(t0 + 1), "ts-1", trial_id="t1"),
                track("ann", "Trial Started", iso_ms(t0 + 2), "ts-3", trial_id="t3"),
                track("bob", "Trial Started", iso_ms(t0 + 1), "ts-2", trial_id="t2"),
                track("cid", "Trial Started", iso_ms(t0 + 1), "ts-4"),  # no trial_id
            ],
        )
        time.sleep(0.5)
        t1 = now_ms()
        gus = signup("gus", t1, "pro", "UNSUBSCRIBED")
        gus["messageId"] = "gus-unsubscribe"
        fay = identify("fay", iso_ms(t1), "fay-upgrade", plan="pro")
        produce(s, [fay, gus, track("ann", "Upgraded", iso_ms(t1), "up-1", trial_id="t1")])
        completed(s, 5)
        completed(s, 3, "trial")
        time.sleep(3 * s.tick_interval_s)  # and a few more ticks, that must add nothing
        journal = Journal(s)
        outs = read_topic(s, s.topics.output("crm"))
        sent = messages(s)
    finally:
        w.stop()

    # what the journeys did (the comparison below would also pass if both were wrong)
    assert timeline(journal.distinct("fay"))[len(ENTERED) + 2] == ("step_exited", "is_pro", "true")
    gus_skip = next(v for v in journal.distinct("gus") if v["type"] == "message_skipped")
    assert gus_skip["reason"] == "unsubscribed"
    trials = journal.user_of
    holds = sorted(
        (trials[v["profile_id"]], v["branch"], v["at"])
        for v in journal.values
        if (v["journey"], v["type"], v["step"]) == ("trial", "step_exited", "wait_upgrade")
    )
    assert holds == [
        ("ann", "timeout", t0 + 2 + HOLD_MS),  # t3: the hold's end, exactly
        ("ann", "upgraded", t1),  # t1: at the Upgraded event's time
        ("bob", "timeout", t0 + 1 + HOLD_MS),  # t2
    ]
    skipped = [v for v in journal.values if v["type"] == "entry_skipped"]
    assert [(trials[v["profile_id"]], v["reason"]) for v in skipped] == [
        ("cid", "missing_identifier")
    ]
    assert sorted((m["template"], trials[m["profile_id"]], m["variables"]) for _, m in sent) == [
        ("trial_nudge", "ann", {"trial": "t3"}),  # bob's t2: no subscription, skipped
        ("welcome_pro", "ann", {"name": "Ann"}),
        ("welcome_pro", "fay", {"name": "Fay"}),
    ]

    outputs = replayed(s)
    for topic, worker_values in (
        (s.topics.journeys, [r.value for r in journal.records]),
        (s.topics.messages, [r.value for r, _ in sent]),
        (s.topics.output("crm"), [r.value for r in outs]),
    ):
        replay_values = replayed_values(outputs, topic)
        print(f"{topic}: {len(worker_values)} worker records, {len(replay_values)} replayed")
        assert len(worker_values) == len(replay_values), topic
        assert sorted(worker_values) == sorted(replay_values), topic
    # and in the same order for each profile (the worker's are keyed by profile: one partition)
    replay_order: dict[str, list[bytes]] = defaultdict(list)
    for value in replayed_values(outputs, s.topics.journeys):
        replay_order[orjson.loads(value)["profile_id"]].append(value)
    worker_order: dict[str, list[bytes]] = defaultdict(list)
    for r, v in zip(journal.records, journal.values, strict=True):
        worker_order[v["profile_id"]].append(r.value)
    assert worker_order == replay_order
