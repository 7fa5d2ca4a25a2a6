"""`engage-stream demo`: a local broker, a worker, a realistic sample stream, and what happened.

Every run uses its own topic names, app id and data directory, so it can be repeated on the
same broker. It stops what it started and exits 0 when everything checked out.

Its live phase also runs one journey (`demo/demo_welcome.journey`, second-scale waits, so
`ENGAGE_JOURNEY_MIN_WAIT_MS` is lowered for the demo's apply and its worker) while the
audience window passes: two users enter, wait, branch and reach an email step — one
subscribed, one without a subscription state — and every record is printed as it arrives
from engage.journeys, engage.messages and the destination topic.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engage_stream.change_feed import ChangeFeed, TopicFeed, describe
from engage_stream.collector.process import CollectorProcess
from engage_stream.collector.settings import CollectorSettings
from engage_stream.commands import apply_items, load_checked
from engage_stream.config import DAY_MS, Settings
from engage_stream.definitions.checks import Item
from engage_stream.definitions.problems import Source
from engage_stream.journeys.catalog import JourneyCatalog
from engage_stream.journeys.loading import collect_journeys, journey_problems
from engage_stream.journeys.models import (
    MIN_WAIT_ENV,
    HoldUntilStep,
    JourneyDefinition,
    SendToDestinationStep,
    WaitStep,
    WaitUntilStep,
    step_key,
)
from engage_stream.kafka_local import broker
from engage_stream.produce import produce_lines
from engage_stream.sample_data import bad_records, generate, iso, send_with_sdk
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess, wait_until

# The checkout's topologies/ (the demo's default); installed elsewhere, pass --definitions.
TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
# The demo's journey: second-scale waits, so beside topologies/ rather than in it, where
# `validate` / `apply topologies/` keep Segment's 5-minute minimum wait.
DEMO_JOURNEY = Path(__file__).resolve().parent.parent / "demo" / "demo_welcome.journey"
DEMO_MIN_WAIT_MS = 1000


def _say(msg: str) -> None:
    print(msg, flush=True)


def read_dead_letters(settings: Settings, expected: int, timeout: float = 20.0) -> list[Any]:
    """The dead-letter topic's records from the start, until `expected` arrived or timeout.

    No consumer group, and auto-commit off: with none to commit to, kafka-python would
    otherwise warn "group_id is None" on every call."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topics.dead_letter,
        bootstrap_servers=settings.broker,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(consumer)
    finally:
        consumer.close()
    return records


def _dead_letter_reasons(settings: Settings, expected: int) -> Counter[str]:
    from engage_stream.ingest.dead_letter import DeadLetter

    return Counter(
        DeadLetter.from_headers(r.headers).reason for r in read_dead_letters(settings, expected)
    )


def throughput(samples: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(events, seconds) between the first sample that saw processing under way and the
    last one: events handled before the first observation are not credited to the rate."""
    started = [(t, n) for t, n in samples if n > 0]
    if len(started) < 2 or started[-1][1] <= started[0][1]:
        return None
    (t0, n0), (t1, n1) = started[0], started[-1]
    return n1 - n0, t1 - t0


class SdkSender:
    """Segment's Python SDK (segment-analytics-python) pointed at the collector, as an
    instrumented application would use it: batches of up to 100 calls, gzip, retries."""

    def __init__(self, url: str, write_key: str) -> None:
        try:
            from segment.analytics import Client
        except ImportError:
            raise SystemExit(
                "demo: it sends through Segment's Python SDK: "
                "pip install 'engage-stream[demo]' (segment-analytics-python)"
            ) from None

        self.errors: list[str] = []
        self.client = Client(
            write_key,
            host=url,
            gzip=True,
            upload_size=100,
            upload_interval=0.05,
            on_error=lambda exc, batch: self.errors.append(f"{exc} ({len(batch)} events)"),
        )

    def send(self, messages: list[dict[str, Any]]) -> None:
        """Every message handed to the SDK and delivered (flush waits for the 200s)."""
        for message in messages:
            send_with_sdk(self.client, message)
        self.client.flush()
        if self.errors:
            raise RuntimeError("the SDK could not deliver: " + "; ".join(self.errors[:3]))

    def close(self) -> None:
        self.client.join()


def definitions_dir(path: Path | None) -> Path | None:
    """The definitions to apply (a directory, or one file), or None with the error printed."""
    chosen = path or TOPOLOGIES
    if chosen.exists():
        return chosen
    hint = "" if path else " (the default, topologies/ of a source checkout)"
    print(
        f"demo: definitions {chosen} not found{hint}; "
        "pass --definitions PATH with the audience / computed-trait YAML files",
        file=sys.stderr,
    )
    return None


class ChangePrinter:
    """Prints audience entries/exits as they arrive: the first few of the bulk load, then a
    summary, and every one during the live phase."""

    def __init__(self, bulk_lines: int = 12) -> None:
        self.bulk_lines = bulk_lines
        self.printed = 0
        self.live = False

    def __call__(self, change: dict) -> None:  # type: ignore[type-arg]
        if not self.live and self.printed >= self.bulk_lines:
            return
        self.printed += 1
        _say("  " + _change_line(change))
        if not self.live and self.printed == self.bulk_lines:
            _say("  ... (further changes of the bulk load counted, not printed)")


def _change_line(change: dict) -> str:  # type: ignore[type-arg]
    what = describe(change)
    mark = {"entered": "+", "exited": "-"}.get(what, "~")
    value = "" if change["kind"] == "audience" else f" = {orjson.dumps(change['value']).decode()}"
    return (
        f"{mark} {change['kind']:<14} {change['key']:<28} {what:<8} {change['profile_id']}{value}"
        f"  (at {change['at']})"
    )


def _short_window_audience(definitions: list) -> tuple[str, str, int] | None:  # type: ignore[type-arg]
    """(audience key, event, window ms) of the audience with the shortest `within` window of
    at most 5 minutes: the live phase shows it entering and exiting by itself."""
    from engage_stream.definitions.models import AudienceDefinition, EventCondition

    best: tuple[str, str, int] | None = None
    for d in definitions:
        if not isinstance(d, AudienceDefinition) or not d.include_anonymous:
            continue
        for c in d.conditions:
            if isinstance(c, EventCondition) and c.performed and c.within is not None:
                ms = c.within.ms
                if ms <= 5 * 60_000 and (best is None or ms < best[2]) and len(d.conditions) == 1:
                    best = (d.key, c.event, ms)
    return best


def run_demo(
    settings: Settings,
    events: int,
    users: int,
    kafka_dir: Path,
    port: int,
    definitions_path: Path | None = None,
) -> int:
    topologies = definitions_dir(definitions_path)
    if topologies is None:
        return 2
    definitions = load_checked(str(topologies))  # before starting anything
    if definitions is None:
        return 1
    journeys = load_demo_journeys(DEMO_JOURNEY, definitions)
    if journeys is None:
        return 1
    run = time.strftime("%Y%m%d-%H%M%S")
    bcfg = broker.BrokerConfig(port=port, controller_port=port + 1, data_dir=kafka_dir)
    settings = settings.model_copy(
        update={
            "broker": bcfg.bootstrap if settings.broker == Settings().broker else settings.broker,
            "app_id": f"engage-demo-{run}",
            "data_dir": Path("var/demo"),
            "topics": settings.topics.with_suffix(f"-demo-{run}"),
        }
    )
    _say("== engage-stream demo ==")
    started_broker = False
    host, _, bport = settings.broker.partition(":")
    if broker.is_reachable(host, int(bport)):
        _say(f"broker: using the Kafka broker already on {settings.broker}")
    else:
        _say(
            f"broker: starting Apache Kafka {bcfg.version} on {bcfg.bootstrap} (data in {kafka_dir})"
        )
        broker.start(bcfg)
        started_broker = True
    # the worker validates the published journey too: it needs the lowered minimum wait
    worker = WorkerProcess(
        settings,
        Path("var/demo") / f"worker-{run}.log",
        env={MIN_WAIT_ENV: str(DEMO_MIN_WAIT_MS)},
    )
    write_key = f"wk_demo_{run.replace('-', '')}"
    keys_file = Path("var/demo") / f"write-keys-{run}.yaml"
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text(f"# write key: source id\n{write_key}: demo-shop\n")
    collector = CollectorProcess(
        settings,
        CollectorSettings(port=0, write_keys_file=keys_file),
        Path("var/demo") / f"collector-{run}.log",
    )
    sdk: SdkSender | None = None
    watch: TopicFeed | None = None
    try:
        created = ensure_topics(settings)
        _say(f"topics: {len(created)} created for this run (suffix -demo-{run})")
        worker.start(timeout=90)
        _say(
            f"worker: running (pid {worker.proc.pid if worker.proc else '?'}), API and metrics on {worker.url}"
        )
        collector.start(timeout=30)
        _say(
            f"collector: Segment HTTP Tracking API on {collector.url} "
            f"(write keys in {keys_file}; source demo-shop)"
        )
        sdk = SdkSender(collector.url, write_key)

        items = [Item.parsed(d, Source(str(topologies), d.key)) for d in definitions]
        with demo_min_wait():
            plan = apply_items(settings, items, journeys=journeys)
        _say(
            f"definitions: applied {len(plan.publish)} from {topologies} "
            f"({sum(1 for d in definitions if d.kind == 'audience')} audiences, "
            f"{sum(1 for d in definitions if d.kind == 'computed_trait')} computed traits)"
            + "".join(
                f" and journey {j.key} from {DEMO_JOURNEY} ({MIN_WAIT_ENV}={DEMO_MIN_WAIT_MS} "
                f"for this apply and the worker: it waits {_waits(j)}, not days)"
                for j, _ in journeys
            )
        )
        printer = ChangePrinter()
        feed = ChangeFeed(settings, printer)
        feed.start()

        now = int(time.time() * 1000)
        messages = list(generate(events, users, now, 14 * DAY_MS))
        sample = [orjson.dumps(e) for e in messages]
        bad = bad_records()
        _say(
            f"sending {len(sample)} sample Segment events for {users} users "
            "(pages, products, orders, identifies, groups) through the collector with "
            "Segment's Python SDK (segment-analytics-python: batches of 100, gzip)"
        )
        t0 = time.monotonic()
        sdk.send(messages)
        requests = collector.metric("engage_collector_requests_total", 'status="200"')
        _say(
            f"  delivered in {time.monotonic() - t0:.1f}s: {requests:.0f} requests, each answered "
            "200 once Kafka had acknowledged its events"
        )
        _say(
            f"producing {len(bad)} invalid records straight to the input topic, one per "
            "dead-letter reason (the input topics stay open to any Kafka producer)"
        )
        produce_lines(settings, bad, label="  producing")

        processed, done = 0.0, False
        samples: list[tuple[float, float]] = []
        deadline = time.monotonic() + 180
        last_print = 0.0
        while time.monotonic() < deadline:
            processed = worker.metric("engage_events_processed_total") + worker.metric(
                "engage_duplicates_dropped_total"
            )
            now_s = time.monotonic()
            samples.append((now_s, processed))
            if now_s - last_print > 2:
                _say(f"  processing: {int(processed)}/{len(sample)} events applied to profiles")
                last_print = now_s
            if processed >= len(sample):
                done = True
                break
            time.sleep(0.1)
        if not done:
            _say(f"FAILED: only {int(processed)}/{len(sample)} events processed in time")
            _say(worker.log_tail())
            return 1
        measured = throughput(samples)
        rate = (
            f"worker throughput {measured[0] / measured[1]:,.0f} events/s "
            f"({measured[0]:.0f} events processed between two readings of "
            f"engage_events_processed_total {measured[1]:.1f}s apart)"
            if measured
            else "too quick to measure a rate between two metric readings"
        )
        _say(
            f"processed {len(sample)} events in {samples[-1][0] - t0:.1f}s after sending "
            f"started; {rate}"
        )

        _settle(feed)
        _say(f"\n{len(feed.snapshot())} audience / computed-trait changes so far; per definition:")
        for key in sorted({k for k, _ in feed.counts}):
            parts = [f"{what} {n}" for (k, what), n in sorted(feed.counts.items()) if k == key]
            _say(f"  {key:<30} {', '.join(parts)}")
        _print_audiences(worker)

        journey: JourneyWatch | None = None
        if journeys:
            journey = _journey_start(settings, journeys[0][0], sdk.send, worker)
            if journey is None:
                _say(worker.log_tail())
                return 1
            watch = TopicFeed(settings, journey.topics, journey)
            watch.start()
        elif not DEMO_JOURNEY.exists():
            _say(f"(no demo journey {DEMO_JOURNEY}: journey phase skipped)")
        triggers = journey.triggers(int(time.time() * 1000)) if journey else []
        if not _live_phase(sdk.send, definitions, feed, printer, also=triggers):
            _say(worker.log_tail())
            return 1
        feed.stop()
        if journey is not None and not _journey_finish(journey):
            _say(worker.log_tail())
            return 1

        reasons = _dead_letter_reasons(settings, len(bad))
        _say(
            f"dead-letter topic {settings.topics.dead_letter}: {sum(reasons.values())} records "
            f"({', '.join(f'{k}={v}' for k, v in sorted(reasons.items()))})"
        )

        who = _busiest_user(sample)
        _say(f"\nsample profile {who} through the Profile API:")
        for section, query in (
            ("traits", ""),
            ("external_ids", ""),
            ("metadata", ""),
            ("events", "limit=3"),
        ):
            status, body = worker.profile(who, section, query)
            _say(f"  GET .../profiles/{who}/{section}{'?' + query if query else ''} -> {status}")
            _say("    " + orjson.dumps(_brief(section, body)).decode())
        status, body = worker.request(
            f"/v1/spaces/{settings.space_id}/collections/users/profiles/{who}/traits",
            token="wrong-token",
        )
        _say(f"  with a wrong access token -> {status} {orjson.dumps(body).decode()}")
        _show_collector(collector)
        if len(reasons) != len(bad) or sum(reasons.values()) != len(bad):
            _say("FAILED: dead-letter records missing")
            return 1
        _say(
            "\ndemo finished: every event processed, every invalid record dead-lettered with a "
            "reason" + (", every journey record there" if journeys else "")
        )
        return 0
    finally:
        _say("stopping collector, worker" + (" and broker" if started_broker else ""))
        if watch is not None:
            watch.stop()
        if sdk is not None:
            sdk.close()
        collector.stop()
        worker.stop()
        if started_broker:
            broker.stop(bcfg)


def _settle(feed: ChangeFeed, quiet_s: float = 3.0, timeout: float = 60.0) -> None:
    """Wait until no new changes arrived for `quiet_s` (the backlog's changes are out)."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(feed.snapshot())
        if n != seen:
            seen, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)


def _print_audiences(worker: WorkerProcess) -> None:
    status, body = worker.request("/v1/audiences", token=worker.settings.api_token)
    _say(f"\nGET /v1/audiences -> {status}")
    for a in body.get("data", []) if status == 200 else []:
        _say(f"  {a['key']:<30} {a['status']:<10} size {a.get('size', 0)}")


def _show_collector(collector: CollectorProcess) -> None:
    """What the collector counted, and its answer to a wrong write key."""
    import urllib.error
    import urllib.request

    accepted = collector.metric("engage_collector_events_accepted_total")
    _say(f"\ncollector: {accepted:.0f} events accepted from source demo-shop")
    req = urllib.request.Request(
        collector.url + "/v1/track",
        data=b'{"userId": "u1", "event": "Clicked", "writeKey": "not-a-key"}',
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    _say(f"  POST /v1/track with a wrong write key -> {status} {body.decode()}")


def _live_phase(
    send: Callable[[list[dict[str, Any]]], None],
    definitions: list,  # type: ignore[type-arg]
    feed: ChangeFeed,
    printer: ChangePrinter,
    also: Sequence[dict[str, Any]] = (),
) -> bool:
    """A few users act now; the short-window audience lets them in and, with no further
    input, out again when the window passes. `also`: events sent with theirs (the
    journey's triggers, whose waits pass while the window does)."""
    short = _short_window_audience(definitions)
    if short is None:
        _say("(no audience with a window of at most 5 minutes in topologies/: live phase skipped)")
        if also:
            send(list(also))
        return True
    key, event, window_ms = short
    users = [f"live-{i}" for i in range(3)]
    _say(
        f"\nlive: {len(users)} users perform {event!r} now; audience {key!r} (window "
        f"{window_ms // 1000}s) should let them in, then out after the window with no new events"
    )
    printer.live = True
    now = int(time.time() * 1000)
    live = [
        {
            "type": "track",
            "event": event,
            "userId": u,
            "messageId": f"live-{u}-{now}",
            "timestamp": iso(now),
            "properties": {"product_id": "prod_001", "price": 49.0, "category": "shoes"},
        }
        for u in users
    ]
    send([*live, *also])
    t0 = time.monotonic()

    def changed(u: str, what: str) -> bool:
        return feed.wait_for(
            lambda c: c["key"] == key and _is_user(c, u) and describe(c) == what,
            timeout=max(1.0, window_ms / 1000 + 60 - (time.monotonic() - t0)),
        )

    if not all(changed(u, "entered") for u in users):
        _say(f"FAILED: the live users did not enter {key}")
        return False
    _say(f"  entered within {time.monotonic() - t0:.1f}s; waiting for the window to pass ...")
    if not all(changed(u, "exited") for u in users):
        _say(f"FAILED: the live users did not exit {key} after the window")
        return False
    _say(
        f"  exited {time.monotonic() - t0:.1f}s after their event (window {window_ms // 1000}s), "
        "with no new input"
    )
    printer.live = False
    return True


def _is_user(change: dict[str, Any], user_id: str) -> bool:
    """Whether a change is about this userId: by the change's external ids (profile ids
    are opaque once identity resolution assigns them)."""
    ids = {(x.get("type"), x.get("id")) for x in change.get("external_ids") or []}
    return ("user_id", user_id) in ids or change.get("profile_id") == f"user_id:{user_id}"


def _busiest_user(sample: list[bytes]) -> str:
    counts: Counter[str] = Counter()
    for raw in sample:
        e = orjson.loads(raw)
        if "userId" in e:
            counts[e["userId"]] += 1
    return f"user_id:{counts.most_common(1)[0][0]}"


def _brief(section: str, body: dict) -> object:  # type: ignore[type-arg]
    if section == "events":
        return [
            {
                "event": e.get("event") or e.get("type"),
                "timestamp": e["timestamp"],
                "properties": e.get("properties"),
            }
            for e in body.get("data", [])
        ]
    return body.get("traits") or body.get("data") or body.get("metadata") or body


# -- the live journey ----------------------------------------------------------------------------
@contextmanager
def demo_min_wait(ms: int = DEMO_MIN_WAIT_MS) -> Iterator[None]:
    """`ENGAGE_JOURNEY_MIN_WAIT_MS` lowered while the demo loads and applies its journey: the
    journey models read it when they validate (the worker gets it in its environment).
    Restored afterwards, so nothing else in this process accepts second-scale waits."""
    before = os.environ.get(MIN_WAIT_ENV)
    os.environ[MIN_WAIT_ENV] = str(ms)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MIN_WAIT_ENV, None)
        else:
            os.environ[MIN_WAIT_ENV] = before


def load_demo_journeys(
    path: Path,
    definitions: Sequence[Any],
) -> list[tuple[JourneyDefinition, Source]] | None:
    """The demo journey file's journeys, with where each was written (for apply's problems);
    [] without the file (a package installed without the checkout: the phase is skipped);
    None with every problem printed."""
    if not path.exists():
        return []
    with demo_min_wait():
        found, problems = collect_journeys(path)
    audiences = {d.key for d in definitions if d.kind == "audience"}
    problems = [*problems, *journey_problems(found, audiences)]
    problems += [
        src.problem(("entry",), "the demo sends its journey's trigger: use an `event` entry")
        for j, src in found
        if not j.event_triggered
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    return None if problems else found


@dataclass(frozen=True)
class JourneyUser:
    """One of the demo journey's users: its traits (the split reads `plan`) and whether
    its email address is subscribed (identify `context.messaging_subscriptions`) — the
    other one has no subscription state, so its email is not sent."""

    user_id: str
    first_name: str
    plan: str
    subscribed: bool

    @property
    def email(self) -> str:
        return f"{self.user_id}@example.com"

    def identify(self, now: int) -> dict[str, Any]:
        subscriptions = [{"key": self.email, "type": "EMAIL", "status": "SUBSCRIBED"}]
        return {
            "type": "identify",
            "userId": self.user_id,
            "messageId": f"{self.user_id}-identify-{now}",
            "timestamp": iso(now),
            "traits": {"email": self.email, "first_name": self.first_name, "plan": self.plan},
            "context": {"messaging_subscriptions": subscriptions} if self.subscribed else {},
        }

    def trigger(self, event: str, now: int) -> dict[str, Any]:
        return {
            "type": "track",
            "event": event,
            "userId": self.user_id,
            "messageId": f"{self.user_id}-{event.lower().replace(' ', '-')}-{now}",
            "timestamp": iso(now),
            "properties": {"plan": self.plan},
        }

    def describe(self) -> str:
        state = (
            "subscribed (context.messaging_subscriptions)"
            if self.subscribed
            else "with no subscription state"
        )
        return f"plan {self.plan}, email {self.email} {state}"


JOURNEY_USERS = (
    JourneyUser("journey-1", "Ada", "pro", subscribed=True),
    JourneyUser("journey-2", "Grace", "free", subscribed=False),
)


@dataclass(frozen=True)
class Arrived:
    """A record as it came from the broker: `timestamp` is the broker's (the producer's
    create time), when the worker produced it."""

    label: str
    value: dict[str, Any]
    timestamp: int


def _waits(journey: JourneyDefinition) -> str:
    return " + ".join(
        f"{s.duration.ms / 1000:g} s" for s in journey.steps if isinstance(s, WaitStep)
    )


def _clock(ms: int) -> str:
    return iso(ms)[11:]  # the time of day, UTC: 10:00:16.000Z


class JourneyWatch:
    """The demo journey's records for its users, printed as they arrive (the feed thread
    calls it) and checked once they are all there: every user entered and finished, each
    wait left at exactly its due instant (`entered + duration`, cause `timer:<due>`), the
    subscribed user's email requested on engage.messages, the other one's skipped as having
    no subscription state, every destination call on its destination's topic."""

    def __init__(
        self,
        journey: JourneyDefinition,
        settings: Settings,
        users: Mapping[str, JourneyUser],
        say: Callable[[str], None] = _say,
    ) -> None:
        self.journey = journey
        self.users = dict(users)  # profile id -> user
        self.by_user_id = {u.user_id: pid for pid, u in self.users.items()}
        self.say = say
        t = settings.topics
        self.labels = {t.journeys: "journeys", t.messages: "messages"}
        for dest in JourneyCatalog.from_definitions([journey]).destinations():
            self.labels[t.output(dest)] = f"out.{dest}"
        self.waits = {s.key: s.duration.ms for s in journey.steps if isinstance(s, WaitStep)}
        # steps an instance stays in (the others are entered and left at one instant)
        self.holding = {
            s.key for s in journey.steps if isinstance(s, WaitStep | WaitUntilStep | HoldUntilStep)
        }
        self.step_keys = {
            step_key(journey.key, s.key, journey.event_triggered)
            for s in journey.steps
            if isinstance(s, SendToDestinationStep)
        }
        self.records: list[Arrived] = []
        self._entered: dict[tuple[str, str], int] = {}  # (instance, step) -> entered at
        self._made: set[str] = set()  # messageIds of the sends and requests printed
        self._pending: dict[str, list[str]] = {}  # lines waiting for the step that made them
        self._lock = threading.Lock()

    @property
    def topics(self) -> list[str]:
        return list(self.labels)

    def triggers(self, now: int) -> list[dict[str, Any]]:
        """The events that make the users enter (the journey's trigger event), at `now`."""
        event = getattr(self.journey.entry, "event", None)
        if event is None:
            return []
        return [u.trigger(event, now) for u in self.users.values()]

    # -- as records arrive -------------------------------------------------------------------
    def __call__(self, topic: str, value: dict[str, Any], timestamp: int) -> None:
        label = self.labels.get(topic)
        user = self._user(label, value) if label else None
        if label is None or user is None:
            return
        with self._lock:
            self.records.append(Arrived(label, value, timestamp))
            line = self.line(label, value, timestamp, user)
            lines = self._in_order(label, value, line)
        for text in lines:
            self.say("  " + text)

    def _in_order(self, label: str, value: dict[str, Any], line: str | None) -> list[str]:
        """The lines to print now: a message or destination record arrives on its own topic,
        possibly before the engage.journeys record of the step that made it — it is printed
        right after that one, so the output reads in causal order."""
        if label == "journeys":
            made = [value["message_id"]] if value["type"] == "message_request" else []
            made += [c["messageId"] for c in value.get("calls", ())]
            self._made.update(made)
            return [*([line] if line else []), *(t for k in made for t in self._pending.pop(k, []))]
        if line is None:
            return []
        key = value.get("message_id") if label == "messages" else value.get("messageId")
        if key in self._made:
            return [line]
        self._pending.setdefault(str(key), []).append(line)
        return []

    def flush(self) -> None:
        """Print what still waits for the step record that made it (none when all arrived)."""
        with self._lock:
            left = [t for lines in self._pending.values() for t in lines]
            self._pending.clear()
        for text in left:
            self.say("  " + text + "  (its step record did not arrive)")

    def _user(self, label: str, value: dict[str, Any]) -> JourneyUser | None:
        if label.startswith("out."):
            personas = (value.get("context") or {}).get("personas") or {}
            if personas.get("computation_id") not in self.step_keys:
                return None  # an audience's or trait's call to the same destination
            pid = self.by_user_id.get(value.get("userId", ""))
            return self.users.get(pid) if pid else None
        if value.get("journey") != self.journey.key:
            return None
        return self.users.get(value.get("profile_id", ""))

    def line(
        self, label: str, value: dict[str, Any], timestamp: int, user: JourneyUser
    ) -> str | None:
        """One record as the demo prints it; None for the step_entered / step_exited records
        of steps left at the instant they are entered (on the topic, not printed). Remembers
        when each step was entered, for the wait's due instant on its way out."""
        head = f"[{label:<9}] {user.user_id:<10}"
        if label == "messages":
            return (
                f"{head} {value['channel']} {value.get('template')!r} to {value['recipient']}  "
                f"variables {orjson.dumps(value.get('variables', {})).decode()}  "
                f"idempotency_key {value['idempotency_key']}"
            )
        if label.startswith("out."):
            props = orjson.dumps(value.get("properties", {})).decode()
            return f"{head} {value['type']} {value.get('event')!r}  properties {props}"
        kind, step, at = value["type"], value.get("step", ""), value["at"]
        what = f"{head} {kind:<18}"
        if kind == "instance_entered":
            trigger = getattr(self.journey.entry, "event", None)
            by = f"on {trigger!r}" if value["cause"].startswith("event:") else value["cause"]
            return f"{what} {'':<24} {_clock(at)}  {by}"
        if kind == "step_entered":
            self._entered[value["instance_id"], step] = at
            if step not in self.holding:
                return None
            if step in self.waits:
                due = at + self.waits[step]
                return (
                    f"{what} {step:<24} {_clock(at)}  due {_clock(due)} "
                    f"(+{self.waits[step] / 1000:g} s)"
                )
            return f"{what} {step:<24} {_clock(at)}"
        if kind == "step_exited":
            branch = value.get("branch", "")
            if step in self.waits:
                entered = self._entered.get((value["instance_id"], step))
                due = None if entered is None else entered + self.waits[step]
                lag = (timestamp - at) / 1000
                if at != due:
                    where = f"NOT at its due instant {_clock(due) if due else '?'}"
                else:
                    where = f"its due instant (entered + {self.waits[step] / 1000:g} s)"
                return (
                    f"{what} {step:<24} {_clock(at)}  {where}; step fired {lag:.1f} s after "
                    "its due instant"
                )
            if not branch:
                return None
            return f"{what} {step + ' -> ' + branch:<24} {_clock(at)}"
        if kind == "destination_send":
            dests = ", ".join(value["destinations"])
            return f"{what} {step + ' -> ' + dests:<24} {_clock(at)}"
        if kind == "message_request":
            return f"{what} {step:<24} {_clock(at)}  {value['channel']} to {value['recipient']}"
        if kind == "message_skipped":
            return (
                f"{what} {step:<24} {_clock(at)}  {value['channel']} to {value['recipient']} "
                f"not sent: subscription state {value['reason']!r}"
            )
        reason = f"  ({value['reason']})" if value.get("reason") else ""
        return f"{what} {'':<24} {_clock(at)}{reason}"

    # -- the checks ----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What is missing or wrong so far (nothing: the journey did all it should)."""
        with self._lock:
            records = list(self.records)
        out: list[str] = []
        for pid, user in self.users.items():
            mine = [r for r in records if r.label == "journeys" and r.value["profile_id"] == pid]
            out.extend(f"{user.user_id}: {p}" for p in self._user_problems(user, mine, records))
        return out

    def _user_problems(
        self, user: JourneyUser, mine: list[Arrived], records: list[Arrived]
    ) -> list[str]:
        """`mine`: the user's engage.journeys records in arrival order; `records`: all."""
        values = [r.value for r in mine]
        types = {v["type"] for v in values}
        if "instance_entered" not in types:
            return ["no instance_entered"]
        out: list[str] = []
        entered = {
            (v["instance_id"], v["step"]): v["at"] for v in values if v["type"] == "step_entered"
        }
        exited = {
            (r.value["instance_id"], r.value["step"]): r
            for r in mine
            if r.value["type"] == "step_exited"
        }
        for (iid, step), at in entered.items():
            if step not in self.waits:
                continue
            due = at + self.waits[step]
            left = exited.get((iid, step))
            if left is None:
                out.append(f"still in {step} (due {_clock(due)})")
            elif left.value["at"] != due or left.value["cause"] != f"timer:{due}":
                out.append(
                    f"{step} left at {_clock(left.value['at'])} ({left.value['cause']}), "
                    f"not at its due instant {_clock(due)}"
                )
            elif left.timestamp < due:
                out.append(
                    f"{step} fired before its due instant (produced {_clock(left.timestamp)})"
                )
        if not {"instance_completed", "instance_exited"} & types:
            out.append("instance not finished")
        requests = [v for v in values if v["type"] == "message_request"]
        skipped = [v for v in values if v["type"] == "message_skipped"]
        if user.subscribed and (not requests or skipped):
            out.append("subscribed, but its email was not requested")
        if not user.subscribed and (requests or not any(v["reason"] == "none" for v in skipped)):
            out.append("no subscription state, but its email was not skipped as 'none'")
        sent = {
            (r.value.get("message_id"), r.value.get("idempotency_key"))
            for r in records
            if r.label == "messages"
        }
        for v in requests:
            if (v["message_id"], v["idempotency_key"]) not in sent:
                out.append(f"message request {v['message_id']} not on engage.messages")
        calls = {(r.label, r.value.get("messageId")) for r in records if r.label.startswith("out.")}
        for v in values:
            if v["type"] != "destination_send":
                continue
            for dest in v["destinations"]:
                for call in v["calls"]:
                    if (f"out.{dest}", call["messageId"]) not in calls:
                        out.append(f"{call['type']} {call['messageId']} not on out.{dest}")
        return out

    def summary(self) -> list[str]:
        """What the checks found, once they pass."""
        with self._lock:
            records = list(self.records)
        lags = [
            (r.timestamp - r.value["at"]) / 1000
            for r in records
            if r.label == "journeys"
            and r.value["type"] == "step_exited"
            and r.value["step"] in self.waits
        ]
        per = Counter(r.label for r in records)
        waits = ", ".join(f"{k} ({ms / 1000:g} s)" for k, ms in self.waits.items())
        fired = ", ".join(f"{lag:.1f} s" for lag in lags)
        requested = [u.user_id for u in self.users.values() if u.subscribed]
        skipped = [u.user_id for u in self.users.values() if not u.subscribed]
        return [
            f"  journey {self.journey.key}: {len(self.users)} instances entered and finished; "
            f"{waits} left at exactly its due instant each time, fired {fired} after it "
            "(the records' broker timestamps)",
            f"  email requested for {', '.join(requested)} (subscribed), not sent to "
            f"{', '.join(skipped)} (no subscription state): "
            + ", ".join(f"{n} record(s) on {label}" for label, n in sorted(per.items())),
        ]


def _profile_id(worker: WorkerProcess, user_id: str) -> str | None:
    """The canonical profile of a userId once its events are on the profile
    (`events[].related.users`): journey records carry profile ids only."""
    status, body = worker.profile(f"user_id:{user_id}", "events", "limit=1")
    data = body.get("data") if status == 200 and isinstance(body, dict) else None
    return data[0]["related"]["users"] if data else None


def _journey_start(
    settings: Settings,
    journey: JourneyDefinition,
    send: Callable[[list[dict[str, Any]]], None],
    worker: WorkerProcess,
    users: Sequence[JourneyUser] = JOURNEY_USERS,
) -> JourneyWatch | None:
    """The journey users' identifies (traits, subscription states) sent and applied: their
    profile ids known, and what the journey's steps read in place before they enter."""
    trigger = getattr(journey.entry, "event", None)
    _say(
        f"\njourney: {journey.key!r} ({DEMO_JOURNEY.name}, event-triggered on {trigger!r}): "
        f"{journey.description}"
    )
    send([u.identify(int(time.time() * 1000)) for u in users])
    profiles: dict[str, JourneyUser] = {}
    for u in users:
        try:
            pid = wait_until(
                lambda u=u: _profile_id(worker, u.user_id), 30, f"{u.user_id}'s profile"
            )
        except TimeoutError as exc:
            _say(f"FAILED: {exc}")
            return None
        profiles[pid] = u
        _say(f"  {u.user_id}: {u.describe()}; profile {pid}")
    watch = JourneyWatch(journey, settings, profiles)
    _say(
        f"  they perform {trigger!r} with the live phase's events; the records as they arrive "
        f"from {', '.join(watch.labels.values())} (steps left at the instant they are entered "
        "are on the topic too, not printed):"
    )
    return watch


def _journey_finish(watch: JourneyWatch) -> bool:
    """Wait (after the live phase, so usually not at all) until the journey's records are
    all there; print what was checked, or what is missing."""
    timeout = sum(watch.waits.values()) / 1000 + 30
    deadline = time.monotonic() + timeout
    while watch.problems() and time.monotonic() < deadline:
        time.sleep(0.2)
    problems = watch.problems()
    watch.flush()
    if problems:
        _say("FAILED: the journey's records are incomplete: " + "; ".join(problems))
        return False
    for line in watch.summary():
        _say(line)
    return True
