"""`engage-stream demo`: a local broker, a worker, a realistic sample stream, and what happened.

Every run uses its own topic names, app id and data directory, so it can be repeated on the
same broker. It stops what it started and exits 0 when everything checked out.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from engage_stream.change_feed import ChangeFeed, describe
from engage_stream.collector.process import CollectorProcess
from engage_stream.collector.settings import CollectorSettings
from engage_stream.commands import apply_definitions, load_checked
from engage_stream.config import DAY_MS, Settings
from engage_stream.kafka_local import broker
from engage_stream.produce import produce_lines
from engage_stream.sample_data import bad_records, generate, iso, send_with_sdk
from engage_stream.stream.topics import ensure_topics
from engage_stream.worker_process import WorkerProcess

# The checkout's topologies/ (the demo's default); installed elsewhere, pass --definitions.
TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


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
    worker = WorkerProcess(settings, Path("var/demo") / f"worker-{run}.log")
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

        plan = apply_definitions(settings, definitions)
        _say(
            f"definitions: applied {len(plan.publish)} from {topologies} "
            f"({sum(1 for d in definitions if d.kind == 'audience')} audiences, "
            f"{sum(1 for d in definitions if d.kind == 'computed_trait')} computed traits)"
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

        if not _live_phase(sdk.send, definitions, feed, printer):
            _say(worker.log_tail())
            return 1
        feed.stop()

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
            "\ndemo finished: every event processed, every invalid record dead-lettered with a reason"
        )
        return 0
    finally:
        _say("stopping collector, worker" + (" and broker" if started_broker else ""))
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
) -> bool:
    """A few users act now; the short-window audience lets them in and, with no further
    input, out again when the window passes."""
    short = _short_window_audience(definitions)
    if short is None:
        _say("(no audience with a window of at most 5 minutes in topologies/: live phase skipped)")
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
    send(live)
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
