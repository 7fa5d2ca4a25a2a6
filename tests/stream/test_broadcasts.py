"""Broadcasts on the real broker, through worker child processes (issue #13).

- Two workers in one consumer group send a broadcast to an audience of known size: exactly
  one idempotency key per subscribed member reaches `engage.messages`, none for the
  unsubscribed, did-not-subscribe, no-state or address-less members nor for non-members —
  also with one worker SIGKILLed mid-send, its partition taken over by the other, then
  restarted. Records repeated with the same key are allowed (outputs are at least once; the
  connector dedups by key); the test counts them.
- The throttle: a 10,000-recipient send at 1,000 messages/s over two partitions and two
  workers, its rate measured from the requests' arrival on `engage.messages`.
- A broadcast scheduled at a local time in a zone fires at that instant; one scheduled in
  the future and unscheduled sends nothing; a slow send cancelled mid-way stops.

The lifecycle goes through the CLI's functions (`broadcasts.commands`), status through
`cmd_status` / `status` (the definitions topic and `engage.broadcast-progress`), the
preview through a worker's API.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from engage_stream.broadcasts import commands as bc
from engage_stream.broadcasts.recipients import idempotency_key
from engage_stream.broadcasts.sending import SENT_EVENT, Progress
from engage_stream.broadcasts.status import BroadcastStatus
from engage_stream.commands import cmd_apply
from engage_stream.config import Settings
from engage_stream.journeys.subscriptions import vector_key
from engage_stream.messaging.requests import MessageSendRequest
from engage_stream.stream.producing import partition_for
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess, wait_until
from tests.stream.helpers import processed, produce, read_topic, wait_for

pytestmark = pytest.mark.broker

AUDIENCE = """
kind: audience
key: members
conditions:
  - {trait: cohort, operator: "=", value: in}
"""


def broadcast_file(key: str, **fields: Any) -> str:
    """A `*.broadcast` file: an email to the members (a draft unless `status` is given)."""
    body: dict[str, Any] = {
        "kind": "broadcast",
        "key": key,
        "channel": "email",
        "template": "spring_sale",
        "subject": "Hi {{traits.name}}",
        "variables": {"code": "{{campaign_key}}"},
        "recipients": [{"audience": "members"}],
        **fields,
    }
    return orjson.dumps(body).decode()  # JSON is YAML


def write(path: Path, broadcasts: dict[str, str]) -> Path:
    path.mkdir(exist_ok=True)
    (path / "members.yaml").write_text(AUDIENCE)
    for key, text in broadcasts.items():
        (path / f"{key}.broadcast").write_text(text)
    return path


def apply(s: Settings, path: Path) -> None:
    assert cmd_apply(argparse.Namespace(path=str(path), prune=False, dry_run=False), s) == 0


def schedule(s: Settings, key: str, at: str | None = None, tz: str | None = None) -> int:
    return bc.cmd_schedule(argparse.Namespace(key=key, now=at is None, at=at, time_zone=tz), s)


def lifecycle(s: Settings, action: str, key: str) -> int:
    fn = {"unschedule": bc.cmd_unschedule, "cancel": bc.cmd_cancel}[action]
    return fn(argparse.Namespace(key=key), s)


def status(s: Settings, key: str) -> BroadcastStatus:
    st = bc.status(s, key)
    assert st is not None
    return st


# -- the population ----------------------------------------------------------------------


def person(uid: str, cohort: str, state: str | None, email: bool = True) -> dict[str, Any]:
    """An identify: `cohort` in or out of the audience, the email's subscription `state`
    (None: no state at all), or no email (`email=False`)."""
    traits: dict[str, Any] = {"cohort": cohort, "name": uid.title()}
    context: dict[str, Any] = {}
    if email:
        traits["email"] = f"{uid}@example.com"
        if state is not None:
            context["messaging_subscriptions"] = [
                {"key": traits["email"], "type": "EMAIL", "status": state}
            ]
    return {
        "type": "identify",
        "userId": uid,
        "traits": traits,
        "context": context,
        "messageId": f"id-{uid}",
    }


def population(subscribed: int, others: int) -> tuple[list[dict[str, Any]], set[str]]:
    """`subscribed` subscribed members, and `others` each of unsubscribed, did-not-subscribe,
    no-state and address-less members and of subscribed non-members; with the addresses
    that must receive the broadcast."""
    people = [person(f"s{i:05d}", "in", "SUBSCRIBED") for i in range(subscribed)]
    for i in range(others):
        people += [
            person(f"u{i:04d}", "in", "UNSUBSCRIBED"),
            person(f"d{i:04d}", "in", "DID_NOT_SUBSCRIBE"),
            person(f"n{i:04d}", "in", None),
            person(f"a{i:04d}", "in", "SUBSCRIBED", email=False),
            person(f"o{i:04d}", "out", "SUBSCRIBED"),
        ]
    return people, {f"s{i:05d}@example.com" for i in range(subscribed)}


def skipped(others: int) -> dict[str, int]:
    return {
        "unsubscribed": others,
        "did_not_subscribe": others,
        "none": others,
        "no_address": others,
    }


# -- reading topics ----------------------------------------------------------------------


_probes: dict[str, KafkaConsumer] = {}


def end_offsets(s: Settings, topic: str) -> int:
    """How many records `topic` holds now (all partitions). One consumer for the test, not
    one per call: every new client opens connections, and polling with new ones walks the
    ephemeral ports, which the workers' web ports are among (a worker then fails to bind)."""
    consumer = _probes.get(s.broker)
    if consumer is None:
        consumer = _probes[s.broker] = KafkaConsumer(
            bootstrap_servers=s.broker, enable_auto_commit=False
        )
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    return sum(consumer.end_offsets(tps).values()) if tps else 0


@pytest.fixture(autouse=True)
def _close_probes() -> Iterator[None]:
    yield
    for consumer in _probes.values():
        consumer.close()
    _probes.clear()


def poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """`wait_for` once a second: for checks that read whole topics (`status`)."""
    try:
        return wait_until(check, timeout, what, interval=1.0)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def requests(s: Settings) -> list[tuple[ConsumerRecord, MessageSendRequest]]:
    return [
        (r, MessageSendRequest.model_validate_json(r.value))
        for r in read_topic(s, s.topics.messages)
    ]


def sent_events(s: Settings) -> list[dict[str, Any]]:
    """The `Broadcast Sent` track events the sends put on `profile-events`."""
    out = []
    for r in read_topic(s, s.topics.profile_events):
        if r.value and r.value[:1] == b"{" and SENT_EVENT.encode() in r.value:
            e = orjson.loads(r.value)
            if e.get("event") == SENT_EVENT:
                out.append(e)
    return out


# -- workers -----------------------------------------------------------------------------


def second(s: Settings, tmp_path: Path) -> Settings:
    """Another worker of the same consumer group: own web port and local state."""
    return s.model_copy(update={"web_port": s.web_port + 50, "data_dir": tmp_path / "state2"})


@contextmanager
def cluster(s: Settings, tmp_path: Path, workers: int) -> Iterator[list[WorkerProcess]]:
    """`workers` workers sharing the partitions (each owning some, once balanced)."""
    ensure_topics(s)
    settings = [s, second(s, tmp_path)][:workers]
    procs = [WorkerProcess(x, tmp_path / f"w{i}.log") for i, x in enumerate(settings)]
    try:
        for w in procs:
            w.start(timeout=90)
        if workers > 1:
            wait_for(lambda: split(procs), 60, "every worker to own a partition")
        yield procs
    finally:
        for w in procs:
            w.stop()


def split(procs: list[WorkerProcess]) -> bool:
    owned = []
    for w in procs:
        try:
            owned.append(set(w.get_json("/health")["owned"]))
        except OSError:
            return False
    return all(owned) and sum(len(o) for o in owned) == len(set().union(*owned))


def total_processed(procs: list[WorkerProcess]) -> float:
    return sum(processed(w) for w in procs if w.proc is not None and w.proc.poll() is None)


def preview(w: WorkerProcess, key: str, sample: int = 3) -> dict[str, Any]:
    code, body = w.request(f"/v1/broadcasts/{key}/preview?sample={sample}", w.settings.api_token)
    return body if code == 200 else {}


def load(
    s: Settings, procs: list[WorkerProcess], people: list[dict[str, Any]], key: str, want: int
) -> None:
    """Produce `people` and wait until the preview (summed over every worker) sees the
    `want` recipients: the audience is computed everywhere before the send is scheduled."""
    produce(s, people)
    wait_for(lambda: total_processed(procs) >= len(people), 120, f"{len(people)} identifies")
    wait_for(lambda: preview(procs[0], key).get("recipients") == want, 60, "the preview's count")


# -- tests -------------------------------------------------------------------------------

SUBSCRIBED, OTHERS = 2_000, 40
RESTART_RATE = 80.0  # 2,000 requests in 25 s: a SIGKILL, a takeover and a restart mid-send


def test_exactly_one_key_per_subscribed_member_across_a_sigkill_mid_send(
    worker_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = worker_settings
    people, addresses = population(SUBSCRIBED, OTHERS)
    apply(s, write(tmp_path / "defs", {"spring": broadcast_file("spring", rate=RESTART_RATE)}))
    with cluster(s, tmp_path, 2) as (a, b):
        load(s, [a, b], people, "spring", SUBSCRIBED)
        pv = preview(b, "spring", sample=5)
        assert (pv["profiles"], pv["recipients"]) == (SUBSCRIBED + 4 * OTHERS, SUBSCRIBED)
        assert pv["skipped"] == skipped(OTHERS)
        assert len(pv["sample"]) == 5 and {x["recipient"] for x in pv["sample"]} <= addresses
        capsys.readouterr()
        args = argparse.Namespace(key="spring", sample=2, api=a.url)
        assert bc.cmd_preview(args, s) == 0, capsys.readouterr().err  # `broadcast preview`
        shown = orjson.loads(capsys.readouterr().out)
        assert (shown["recipients"], len(shown["sample"])) == (SUBSCRIBED, 2)
        assert status(s, "spring").status == "Draft"
        assert end_offsets(s, s.topics.messages) == 0, "a draft sends nothing"

        assert schedule(s, "spring") == 0  # `broadcast schedule spring --now`
        wait_for(lambda: end_offsets(s, s.topics.messages) >= SUBSCRIBED // 5, 60, "a fifth sent")
        mid = status(s, "spring")
        assert mid.status == "Sending" and mid.sent < SUBSCRIBED, mid
        a.kill()  # SIGKILL mid-send: no final commit
        at_kill = end_offsets(s, s.topics.messages)
        assert at_kill < SUBSCRIBED, "killed before the send was over"
        # its session expires: the other worker takes its partition over, from the changelog
        wait_for(lambda: len(b.get_json("/health")["owned"]) == s.partitions, 60, "a takeover")
        taken = end_offsets(s, s.topics.messages)
        assert taken < SUBSCRIBED, "taken over before the send was over"
        a.start(timeout=90)  # back with its (now stale) local state: the group rebalances
        restarted = end_offsets(s, s.topics.messages)
        done = poll(
            lambda: (st := status(s, "spring")).status == "Sent" and st, 120, "the send to finish"
        )
        time.sleep(2 * s.tick_interval_s)  # anything still in flight

        records = requests(s)
        keys = Counter(req.idempotency_key for _, req in records)
        version = done.version
        want = {idempotency_key("spring", version, vector_key("email", x)) for x in addresses}
        duplicates = len(records) - len(keys)
        with capsys.disabled():
            print(
                f"\nrestart: {len(records)} request records, {len(keys)} distinct keys, "
                f"{duplicates} duplicate record(s); {at_kill} records at the SIGKILL, "
                f"{taken} at the takeover, {restarted} once restarted"
            )
        assert set(keys) == want, "exactly one key per subscribed member, none else"
        assert {req.recipient for _, req in records} == addresses
        for _, req in records:
            assert (req.source, req.campaign_key, req.broadcast) == (
                "broadcast",
                "spring",
                "spring",
            )
            assert req.message_id == req.idempotency_key and req.version == version
            assert req.subject == f"Hi {req.recipient.split('@')[0].title()}"
            assert req.variables == {"code": "spring"}
        assert all(
            partition_for(req.profile_id.encode(), s.partitions) == r.partition
            for r, req in records
        ), "keyed by profile"

        assert (done.recipients, done.sent, done.reported) == (SUBSCRIBED, SUBSCRIBED, 2)
        assert done.profiles == SUBSCRIBED + 4 * OTHERS and done.skipped == skipped(OTHERS)
        assert done.finished is not None and done.started is not None
        capsys.readouterr()
        assert bc.cmd_status(argparse.Namespace(key="spring", follow=False), s) == 0
        printed = orjson.loads(capsys.readouterr().out)
        assert printed == done.model_dump()
        assert bc.cmd_status(argparse.Namespace(key="spring", follow=True), s) == 0
        line = capsys.readouterr().out.strip()
        assert line.startswith(f"spring v{version}: Sent — {SUBSCRIBED}/{SUBSCRIBED} sent (100%)")

        # One `Broadcast Sent` per recipient on the stream (repeats carry the same message
        # id), and exactly one in a recipient's profile.
        events = sent_events(s)
        assert {e["message_id"] for e in events} == want
        assert {e["properties"]["campaign_key"] for e in events} == {"spring"}
        wait_for(
            lambda: sum(w.metric("engage_broadcast_sent") for w in (a, b)) == SUBSCRIBED,
            30,
            "engage_broadcast_sent over both workers",
        )
        repeated = [k for k, n in keys.items() if n > 1]
        someone = next(req for _, req in records if req.idempotency_key in (repeated or want))
        uid = someone.recipient.split("@")[0]
        code, body = a.profile(f"user_id:{uid}", "events", "limit=100")
        assert code == 200
        assert [e["event"] for e in body["data"]].count(SENT_EVENT) == 1, uid

        # sent is sent: the lifecycle refuses to send it again or to cancel it
        assert schedule(s, "spring") == 1 and lifecycle(s, "cancel", "spring") == 1
        assert status(s, "spring").status == "Sent"


THROTTLE_RECIPIENTS, THROTTLE_RATE = 10_000, 1_000.0


def arrival_rate(records: list[tuple[ConsumerRecord, MessageSendRequest]]) -> tuple[float, float]:
    """(messages/s between the first and the last burst, least-squares slope of the count
    over time): from the requests' Kafka timestamps, per profile partition, summed. The
    first burst of each partition (the tick after its snapshot, which catches up on the
    snapshot's own time) is left out of the first figure."""
    by_part: dict[int, list[int]] = {}
    for r, _ in records:
        by_part.setdefault(r.partition, []).append(r.timestamp)
    spans, slopes = [], []
    for stamps in by_part.values():
        stamps.sort()
        first = sum(1 for t in stamps if t <= stamps[0] + 50)
        spans.append((len(stamps) - first) / ((stamps[-1] - stamps[0]) / 1000))
        xs = [t / 1000 for t in stamps]
        slopes.append(statistics.linear_regression(xs, list(range(len(xs)))).slope)
    return sum(spans), sum(slopes)


def test_the_throttle_holds_the_rate_over_a_10k_send(
    worker_settings: Settings, tmp_path: Path
) -> None:
    s = worker_settings.model_copy(update={"broadcast_rate": THROTTLE_RATE})
    people = [person(f"t{i:05d}", "in", "SUBSCRIBED") for i in range(THROTTLE_RECIPIENTS)]
    apply(s, write(tmp_path / "defs", {"bulk": broadcast_file("bulk")}))  # the settings' rate
    with cluster(s, tmp_path, 2) as procs:
        load(s, procs, people, "bulk", THROTTLE_RECIPIENTS)
        assert schedule(s, "bulk") == 0
        done = poll(
            lambda: (st := status(s, "bulk")).status == "Sent" and st, 120, "the send to finish"
        )
        assert done.rate == THROTTLE_RATE and done.sent == THROTTLE_RECIPIENTS
        records = requests(s)
    keys = {req.idempotency_key for _, req in records}
    assert len(keys) == THROTTLE_RECIPIENTS
    between_bursts, slope = arrival_rate(records)
    progress = [Progress.loads(r.value) for r in read_topic(s, s.topics.broadcast_progress)]
    finals = {p.partition: p for p in progress if p.phase == "sent"}
    by_clock = THROTTLE_RECIPIENTS / (
        (max(p.finished or 0 for p in finals.values()) - min(p.started for p in finals.values()))
        / 1000
    )
    print(
        f"\nthrottle at {THROTTLE_RATE:.0f}/s, {len(records)} records: {between_bursts:.0f}/s "
        f"between the first and last bursts, {slope:.0f}/s by regression, {by_clock:.0f}/s "
        f"by the partitions' clocks (snapshot to last send)"
    )
    assert abs(between_bursts - THROTTLE_RATE) <= 0.1 * THROTTLE_RATE
    assert abs(slope - THROTTLE_RATE) <= 0.1 * THROTTLE_RATE


def local_in(zone: str, seconds: float) -> tuple[str, int]:
    """A wall-clock time in `zone` `seconds` from now (whole seconds), and its instant."""
    at = datetime.fromtimestamp(int(time.time() + seconds) + 1, ZoneInfo(zone))
    return at.replace(tzinfo=None).isoformat(), int(at.timestamp() * 1000)


def test_a_schedule_fires_at_its_local_instant_and_an_unscheduled_one_never(
    worker_settings: Settings, tmp_path: Path
) -> None:
    s = worker_settings
    people, addresses = population(20, 2)
    apply(
        s,
        write(
            tmp_path / "defs",
            {"timed": broadcast_file("timed"), "later": broadcast_file("later")},
        ),
    )
    with cluster(s, tmp_path, 1) as procs:
        load(s, procs, people, "timed", 20)
        wait_for(lambda: preview(procs[0], "later").get("recipients") == 20, 30, "later's count")
        # a half-hour zone: an offset taken in whole hours would fire 30 minutes off
        local, instant = local_in("Asia/Kolkata", 8)
        assert schedule(s, "timed", local, "Asia/Kolkata") == 0
        later_local, later_instant = local_in("America/New_York", 6)
        assert schedule(s, "later", later_local, "America/New_York") == 0
        st = status(s, "timed")
        assert (st.status, st.time_zone) == ("Scheduled", "Asia/Kolkata")
        assert datetime.fromisoformat(st.send_at).timestamp() * 1000 == instant  # type: ignore[arg-type]
        assert status(s, "later").status == "Scheduled"
        assert lifecycle(s, "unschedule", "later") == 0
        assert status(s, "later").status == "Draft"
        assert lifecycle(s, "unschedule", "later") == 1, "only a scheduled one goes back"

        assert end_offsets(s, s.topics.messages) == 0, "nothing before the instant"
        poll(lambda: status(s, "timed").status == "Sent", 60, "timed to be sent")
        time.sleep(max(0.0, (later_instant - time.time() * 1000) / 1000) + 3 * s.tick_interval_s)
        records = requests(s)
    assert {req.broadcast for _, req in records} == {"timed"}, "later was unscheduled"
    assert {req.recipient for _, req in records} == addresses
    snapshot = {req.at for _, req in records}  # each partition's snapshot instant
    assert all(instant <= at <= instant + 2_000 for at in snapshot), (snapshot, instant)
    assert min(r.timestamp for r, _ in records) >= instant
    assert status(s, "later").status == "Draft"


def test_cancel_stops_a_send_in_progress(worker_settings: Settings, tmp_path: Path) -> None:
    s = worker_settings
    people, _ = population(200, 1)
    apply(s, write(tmp_path / "defs", {"slow": broadcast_file("slow", rate=20)}))
    with cluster(s, tmp_path, 1) as procs:
        load(s, procs, people, "slow", 200)
        assert schedule(s, "slow") == 0
        wait_for(lambda: end_offsets(s, s.topics.messages) >= 30, 60, "the send under way")
        assert lifecycle(s, "cancel", "slow") == 0

        def every_partition_cancelled() -> bool:
            mine = [p for p in bc.read_progress(s) if p.broadcast == "slow"]
            return len(mine) == s.partitions and all(p.phase == "cancelled" for p in mine)

        poll(every_partition_cancelled, 30, "every partition to cancel")
        cancelled = status(s, "slow")  # read after: the progress that says so
        stopped_at = end_offsets(s, s.topics.messages)
        time.sleep(3.0)  # 60 more requests at 20/s, were it still sending
        assert end_offsets(s, s.topics.messages) == stopped_at, "nothing after the cancel"
        records = requests(s)
        assert cancelled.status == "Cancelled" and 30 <= cancelled.sent < 200
        assert cancelled.recipients == 200 and cancelled.finished is not None
        assert len({req.idempotency_key for _, req in records}) == cancelled.sent
        # cancelled stays cancelled: neither scheduled again nor cancelled twice
        assert schedule(s, "slow") == 1 and lifecycle(s, "cancel", "slow") == 1
        assert lifecycle(s, "unschedule", "slow") == 1
