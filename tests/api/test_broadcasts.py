"""The broadcasts API over HTTP, in process: two workers' views on real aiohttp servers, each
answering from one partition on which the real profiles stage ran the sends (snapshot,
throttled drain), so the statuses and counts summed across workers, the preview's counts
and sample, the lifecycle's refusals (409), invalid bodies (400), unknown keys (404) and
auth (401) are tested without a broker. Edits that publish (create, schedule, unschedule,
cancel) go to the real broker's definitions topic (`broker` mark) and are read back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import faust
import orjson
import pytest
from aiohttp.test_utils import TestServer

from engage_stream.api import routes
from engage_stream.api.source import PartitionRead
from engage_stream.broadcasts.catalog import BroadcastCatalog
from engage_stream.broadcasts.models import Schedule
from engage_stream.broadcasts.recipients import Preview, Recipients
from engage_stream.broadcasts.sending import Progress, read_progress
from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.profiles.stage import ProfileStage
from engage_stream.state.transaction import Transaction
from engage_stream.stream import definitions_topic
from engage_stream.stream.definitions_topic import DefinitionRecord
from engage_stream.stream.topics import ensure_topics
from engage_stream.timestamps import iso_ms
from tests.api.journey_scenario import T0, Partition, subscribe, user_on
from tests.api.test_audiences import AUDIENCE
from tests.api.test_views import INTERNAL, SPACE, TOKEN, LocalState, auth, get

PARTITIONS = 2
SEND_LOCAL = "2027-01-15T12:00"  # Europe/Paris, UTC+1 that day: T0 + 3 h
SEND_AT = Schedule(at=SEND_LOCAL, time_zone="Europe/Paris").at_ms
assert SEND_AT == T0 + 3 * 3_600_000
PUBLISHED = SEND_AT - 86_400_000


def body(key: str, **fields: Any) -> dict[str, Any]:
    """An email broadcast to the buyers, as published (`model_dump` of the definition)."""
    return {
        "kind": "broadcast",
        "key": key,
        "channel": "email",
        "template": "spring_sale",
        "recipients": [{"audience": "buyers"}],
        **fields,
    }


SCHEDULED = {"status": "scheduled", "schedule": {"at": SEND_LOCAL, "time_zone": "Europe/Paris"}}
BODIES = {
    # 2 messages/s over 2 partitions: 1 each a second, still sending at SEND_AT + 1 s
    "spring": body("spring", name="Spring sale", rate=2, **SCHEDULED),
    "done": body("done", **SCHEDULED),  # the settings' 1,000/s: all sent in a second
    "draft": body("draft"),
    "future": body(
        "future", status="scheduled", schedule={"at": "2030-01-01T09:00", "time_zone": "UTC"}
    ),
    "stopped": body("stopped", status="cancelled"),
    "broken": {**body("broken"), "channel": "pigeon"},
}


def records(bodies: dict[str, dict[str, Any]]) -> dict[bytes, DefinitionRecord]:
    """The definitions topic as `apply` would have written the audience and `bodies`."""
    wanted: list[tuple[Any, str, dict[str, Any]]] = [("audience", "buyers", AUDIENCE)]
    wanted += [("broadcast", k, b) for k, b in bodies.items()]
    plan = definitions_topic.plan({}, wanted, False, PUBLISHED)
    return {r.topic_key: r for r in plan.publish}


def catalog_of(current: dict[bytes, DefinitionRecord]) -> Catalog:
    """The catalog a worker builds from those records (`Worker.on_definitions`)."""
    live = definitions_topic.live(current).values()
    cat = Catalog.from_records(
        (r.key, r.version, r.created_at or r.applied_at, r.body, r.evaluated_version)
        for r in live
        if r.kind == "audience"
    )
    cat.broadcasts = BroadcastCatalog.from_records(
        (r.key, r.evaluated_version or r.version, r.applied_at, r.body)
        for r in live
        if r.kind == "broadcast"
    )
    return cat


@dataclass
class Scenario:
    partitions: list[Partition]
    records: dict[bytes, DefinitionRecord]
    catalog: Catalog
    recipients: set[str]  # the addresses the broadcasts go to


def run(settings: Settings) -> Scenario:
    """Buyers on both partitions, in every subscription state, then the clock to one second
    after the send instant.

    - 0: three subscribed buyers, one unsubscribed buyer, one subscribed non-buyer;
    - 1: two subscribed buyers, one that did not subscribe, one with an email and no
      state, one buyer without an address."""
    current = records(BODIES)
    cat = catalog_of(current)
    parts = [Partition(p, ProfileStage(settings, cat)) for p in range(PARTITIONS)]
    p0, p1 = parts
    wanted: set[str] = set()

    def buyer(p: Partition, name: str, state: str | None, email: bool = True) -> None:
        user = user_on(p.number, name)
        if state is not None:
            subscribe(p, user, T0, state)
            if state == "SUBSCRIBED":
                wanted.add(f"{user}@x.io")
        elif email:
            p.event(user, T0, type="identify", traits={"email": f"{user}@x.io"})
        p.event(user, T0 + 1000, "Order Completed")

    for name in ("ann", "abe", "amy"):
        buyer(p0, name, "SUBSCRIBED")
    buyer(p0, "bob", "UNSUBSCRIBED")
    subscribe(p0, user_on(0, "zoe"), T0, "SUBSCRIBED")  # not a buyer
    for name in ("cat", "cody"):
        buyer(p1, name, "SUBSCRIBED")
    buyer(p1, "dan", "DID_NOT_SUBSCRIBE")
    buyer(p1, "eve", None)
    buyer(p1, "fay", None, email=False)
    for p in parts:
        p.tick(SEND_AT)  # the snapshot
        p.tick(SEND_AT + 1000)
    return Scenario(parts, current, cat, wanted)


SKIPPED = {"unsubscribed": 1, "did_not_subscribe": 1, "none": 1, "no_address": 1}


class BroadcastState(LocalState):
    """`WorkerState` of one worker owning one scenario partition; the definitions as the
    worker last read them (`refresh` re-reads them, as the worker's watch does)."""

    def __init__(
        self, part: Partition, sc: Scenario, directory: dict[int, str], settings: Settings
    ) -> None:
        super().__init__(part.number, directory)
        self.part = part
        self.catalog = sc.catalog
        self.records = sc.records
        self._settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings

    def definition_records(self) -> dict[bytes, DefinitionRecord]:
        return self.records

    def refresh(self) -> None:
        self.records = definitions_topic.read_all(self._settings)
        self.catalog = catalog_of(self.records)
        self.part.stage.use(self.catalog)

    async def read(self, partition: int) -> PartitionRead:
        return PartitionRead(self.part.store, self.part.clock)

    def local_broadcast_progress(self) -> list[Progress]:
        return read_progress(Transaction(self.part.db))

    async def local_broadcast_preview(self, key: str, sample: int) -> Preview:
        entry = self.catalog.broadcasts.entries.get(key)
        if entry is None:
            return Preview()
        snap = Recipients(entry, SPACE).evaluate(self.part.store, self.part.clock)
        return Preview.of(snap, sample)


Client = aiohttp.ClientSession
Test = Callable[[Scenario, list[BroadcastState], list[str], Client], Awaitable[None]]


async def serve(settings: Settings, test: Test) -> None:
    """`test` against two workers serving the API, one scenario partition each."""
    sc = run(settings)
    directory: dict[int, str] = {}
    states = [BroadcastState(p, sc, directory, settings) for p in sc.partitions]
    apps, servers = [], []
    for i, state in enumerate(states):
        app = faust.App(f"test-broadcasts-{i}", web_enabled=True)
        routes.serve(app, state, space_id=SPACE, api_token=TOKEN, internal_secret=INTERNAL)
        server = TestServer(app.web.web_app, host="127.0.0.1")
        await server.start_server()
        state.url = str(server.make_url("")).rstrip("/")
        directory[state.partition] = state.url
        apps.append(app)
        servers.append(server)
    try:
        async with aiohttp.ClientSession() as client:
            await test(sc, states, [s.url for s in states], client)
    finally:
        for app, server in zip(apps, servers, strict=True):
            await app.http_client.close()
            await server.close()


def in_cluster(test: Test) -> Callable[[], None]:
    def run_test() -> None:
        asyncio.run(serve(Settings(partitions=PARTITIONS), test))

    run_test.__doc__ = test.__doc__
    return run_test


async def get_json(client: Client, url: str, token: str | None = TOKEN) -> tuple[int, Any]:
    status, ctype, raw = await get(client, url, auth(token) if token else {})
    assert ctype == "application/json", url
    return status, orjson.loads(raw)


async def post_json(
    client: Client, url: str, data: Any = None, raw: bytes | None = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    payload = raw if raw is not None else (orjson.dumps(data) if data is not None else b"")
    headers = {**(auth(token) if token else {}), "Content-Type": "application/json"}
    async with client.post(url, data=payload, headers=headers) as resp:
        assert resp.headers["Content-Type"] == "application/json", url
        return resp.status, orjson.loads(await resp.read())


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def summary(key: str, status: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": key,
        "name": key,
        "channel": "email",
        "version": 1,
        "status": status,
        "send_at": iso_ms(SEND_AT),
        "time_zone": "Europe/Paris",
        "rate": 1000.0,
        "partitions": PARTITIONS,
        "reported": PARTITIONS,
        "profiles": 9,  # the buyers: 4 on partition 0, 5 on partition 1
        "recipients": 5,
        "sent": 5,
        "skipped": SKIPPED,
        "started": iso_ms(SEND_AT),
        "finished": iso_ms(SEND_AT + 1000),
    }
    out.update(kw)
    return out


NOT_STARTED = {
    "reported": 0,
    "profiles": 0,
    "recipients": 0,
    "sent": 0,
    "skipped": {},
    "started": None,
    "finished": None,
}
WANT = {
    "spring": summary("spring", "Sending", name="Spring sale", rate=2.0, sent=2, finished=None),
    "done": summary("done", "Sent"),
    "draft": summary("draft", "Draft", send_at=None, time_zone=None, **NOT_STARTED),
    "future": summary(
        "future",
        "Scheduled",
        send_at="2030-01-01T09:00:00.000Z",
        time_zone="UTC",
        **NOT_STARTED,
    ),
    "stopped": summary("stopped", "Cancelled", send_at=None, time_zone=None, **NOT_STARTED),
}


@in_cluster
async def test_the_list_and_one_broadcast_sum_every_workers_progress(
    sc: Scenario, states: list[BroadcastState], urls: list[str], client: Client
) -> None:
    """Neither worker holds every partition's progress; either answers with both summed."""
    for state in states:  # each partition started and sent its own share
        (spring,) = [p for p in state.local_broadcast_progress() if p.broadcast == "spring"]
        assert (spring.total, spring.sent) == ((3, 1) if state.partition == 0 else (2, 1))
    failed = {"key": "broken", "status": "Failed", "error": sc.catalog.broadcasts.failed["broken"]}
    for url in urls:
        status, listed = await get_json(client, url + "/v1/broadcasts")
        assert status == 200
        assert listed == {"data": sorted([*WANT.values(), failed], key=lambda d: d["key"])}
        for key, want in WANT.items():
            assert await get_json(client, f"{url}/v1/broadcasts/{key}") == (200, want), key
    assert "invalid broadcast body" in failed["error"]
    status, body = await get_json(client, urls[0] + "/v1/broadcasts/broken")
    assert (status, body) == (409, error("invalid_definition", failed["error"]))
    status, body = await get_json(client, urls[1] + "/v1/broadcasts/nope")
    assert (status, body) == (404, error("not_found", "Broadcast 'nope' was not found."))


@in_cluster
async def test_the_preview_counts_every_partition_and_samples(
    sc: Scenario, states: list[BroadcastState], urls: list[str], client: Client
) -> None:
    for url in urls:
        status, everyone = await get_json(client, url + "/v1/broadcasts/draft/preview?sample=100")
        assert status == 200
        assert {k: v for k, v in everyone.items() if k != "sample"} == {
            "key": "draft",
            "version": 1,
            "channel": "email",
            "profiles": 9,
            "recipients": 5,
            "skipped": SKIPPED,
        }
        assert sorted(x["recipient"] for x in everyone["sample"]) == sorted(sc.recipients)
        assert all(x["profile_id"].startswith("user_id:") for x in everyone["sample"])
        _, three = await get_json(client, url + "/v1/broadcasts/draft/preview?sample=3")
        assert three["recipients"] == 5 and len(three["sample"]) == 3
        assert {x["recipient"] for x in three["sample"]} <= sc.recipients
        _, default = await get_json(client, url + "/v1/broadcasts/draft/preview")
        assert len(default["sample"]) == 5  # 10 by default
        _, none = await get_json(client, url + "/v1/broadcasts/draft/preview?sample=0")
        assert none["sample"] == [] and none["recipients"] == 5
    status, body = await get_json(client, urls[0] + "/v1/broadcasts/draft/preview?sample=x")
    assert (status, body) == (400, error("invalid_request", "sample: a number"))
    status, body = await get_json(client, urls[0] + "/v1/broadcasts/nope/preview")
    assert (status, body["error"]["code"]) == (404, "not_found")


@in_cluster
async def test_invalid_bodies_existing_keys_and_refused_actions(
    sc: Scenario, states: list[BroadcastState], urls: list[str], client: Client
) -> None:
    """What is refused before anything is published: no broker needed."""
    url = urls[1]
    sms = {"key": "text", "channel": "sms", "body": "Sale!", "recipients": [{"audience": "buyers"}]}
    cases: list[tuple[str, Any, bytes | None, int, str, str]] = [
        ("", None, b"{not json", 400, "invalid_request", "The body is not JSON."),
        ("", [1, 2], None, 400, "invalid_request", "The body must be a JSON object."),
        ("", sms, None, 400, "invalid_definition", "Reply STOP to unsubscribe"),
        ("", {**body("x"), "template": None}, None, 400, "invalid_definition", "needs a template"),
        ("", {**body("x"), "key": "Bad Key"}, None, 400, "invalid_definition", "key:"),
        (
            "",
            {**body("x"), "recipients": [{"audience": "nobody"}]},
            None,
            400,
            "invalid_definition",
            "recipients: no audience 'nobody'",
        ),
        ("", body("draft"), None, 409, "conflict", "Broadcast 'draft' exists already."),
        (
            "/nope/schedule",
            {"now": True},
            None,
            404,
            "not_found",
            "Broadcast 'nope' was not found.",
        ),
        ("/draft/launch", {}, None, 404, "not_found", "No action 'launch'"),
        ("/draft/unschedule", None, None, 409, "conflict", "broadcast draft is Draft: only"),
        ("/done/cancel", None, None, 409, "conflict", "broadcast done is Sent already"),
        ("/stopped/cancel", None, None, 409, "conflict", "broadcast stopped is Cancelled already"),
        ("/done/schedule", {"now": True}, None, 409, "conflict", "is Sent: it cannot be"),
        ("/spring/schedule", {"now": True}, None, 409, "conflict", "is Sending: it cannot be"),
        ("/spring/unschedule", None, None, 409, "conflict", "is Sending: only a scheduled"),
        ("/draft/schedule", {}, None, 400, "invalid_request", 'give {"at", "time_zone"}'),
        (
            "/draft/schedule",
            {"at": "2027-03-01T09:00", "time_zone": "Mars/Olympus"},
            None,
            400,
            "invalid_request",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            "/draft/schedule",
            {"at": "2027-03-01T09:00+01:00", "time_zone": "Europe/Paris"},
            None,
            400,
            "invalid_request",
            "without an offset",
        ),
        ("/draft/schedule", None, b"[", 400, "invalid_request", "The body is not JSON."),
        ("/broken/cancel", None, None, 409, "invalid_definition", "invalid broadcast body"),
    ]
    for path, data, raw, want, code, message in cases:
        status, got = await post_json(client, f"{url}/v1/broadcasts{path}", data, raw)
        assert (status, got["error"]["code"]) == (want, code), (path, data, got)
        assert message in got["error"]["message"], (path, got)
        assert set(got) == {"error"} and set(got["error"]) == {"code", "message"}


@in_cluster
async def test_every_broadcast_endpoint_needs_the_token(
    sc: Scenario, states: list[BroadcastState], urls: list[str], client: Client
) -> None:
    gets = [
        "/v1/broadcasts",
        "/v1/broadcasts/spring",
        "/v1/broadcasts/spring/preview?sample=2",
        "/v1/internal/broadcast-progress",
        "/v1/internal/broadcast-preview/spring?sample=2",
    ]
    posts = [("/v1/broadcasts", body("new")), ("/v1/broadcasts/draft/schedule", {"now": True})]
    for token in (None, "wrong"):
        for path in gets:
            status, got = await get_json(client, urls[0] + path, token)
            assert (status, got["error"]["code"]) == (401, "authentication_error"), path
        for path, data in posts:
            status, got = await post_json(client, urls[0] + path, data, token=token)
            assert (status, got["error"]["code"]) == (401, "authentication_error"), path


@in_cluster
async def test_an_unexpected_failure_is_the_json_500(
    sc: Scenario, states: list[BroadcastState], urls: list[str], client: Client
) -> None:
    def unreadable() -> list[Progress]:
        raise RuntimeError("disk on fire")

    states[0].local_broadcast_progress = unreadable  # type: ignore[method-assign]
    for path in ("/v1/broadcasts", "/v1/broadcasts/spring"):
        status, got = await get_json(client, urls[0] + path)
        assert (status, got) == (500, error("internal_error", "Internal server error."))
    status, got = await post_json(client, urls[0] + "/v1/broadcasts/draft/cancel")
    assert (status, got) == (500, error("internal_error", "Internal server error."))


@pytest.mark.broker
def test_create_schedule_unschedule_and_cancel_publish_to_the_definitions_topic(
    worker_settings: Settings,
) -> None:
    """Each edit is one new record of the broadcast on the definitions topic (its version
    bumped, its evaluated version kept: status and schedule are not its content); the
    workers' catalogs follow (`refresh`), and the next action is judged on that."""
    s = worker_settings.model_copy(update={"partitions": PARTITIONS})
    ensure_topics(s)
    definitions_topic.publish(s, definitions_topic.Plan(publish=list(records(BODIES).values())))

    async def test(sc: Scenario, states: list[BroadcastState], urls: list[str], c: Client) -> None:
        for state in states:
            state.refresh()

        def on_topic(key: str) -> DefinitionRecord:
            return definitions_topic.read_all(s)[definitions_topic.record_key("broadcast", key)]

        async def act(key: str, action: str, data: Any = None, want: int = 200) -> Any:
            status, got = await post_json(c, f"{urls[0]}/v1/broadcasts/{key}/{action}", data)
            assert status == want, got
            for state in states:
                state.refresh()
            return got

        new = {**body("summer"), "subject": "Hi {{traits.name}}"}
        del new["kind"]  # optional in the API's body
        status, got = await post_json(c, urls[1] + "/v1/broadcasts", new)
        assert (status, got) == (200, {"key": "summer", "version": 1, "status": "draft"})
        rec = on_topic("summer")
        assert (rec.kind, rec.version, rec.body["subject"], rec.body["status"]) == (
            "broadcast",
            1,
            "Hi {{traits.name}}",
            "draft",
        )
        for state in states:
            state.refresh()
        status, got = await get_json(c, urls[0] + "/v1/broadcasts/summer")
        assert (status, got["status"], got["send_at"]) == (200, "Draft", None)
        status, got = await post_json(c, urls[0] + "/v1/broadcasts", new)
        assert (status, got["error"]["code"]) == (409, "conflict")

        at = {"at": "2027-03-01T09:00", "time_zone": "America/New_York"}
        got = await act("summer", "schedule", at)
        assert got == {"key": "summer", "action": "schedule", "status": "scheduled"}
        rec = on_topic("summer")
        assert (rec.version, rec.evaluated_version) == (2, 1)
        assert (rec.body["status"], rec.body["schedule"]) == ("scheduled", at)
        _, one = await get_json(c, urls[1] + "/v1/broadcasts/summer")
        assert (one["status"], one["version"]) == ("Scheduled", 1)
        assert one["send_at"] == "2027-03-01T14:00:00.000Z"  # 09:00 EST
        assert one["time_zone"] == "America/New_York"
        again = await act("summer", "schedule", at)  # the same schedule: nothing published
        assert again["status"] == "scheduled" and on_topic("summer").version == 2

        got = await act("summer", "unschedule")
        assert got["status"] == "draft" and on_topic("summer").body["status"] == "draft"
        _, one = await get_json(c, urls[0] + "/v1/broadcasts/summer")
        assert one["status"] == "Draft"
        await act("summer", "unschedule", want=409)

        got = await act("summer", "schedule", {"now": True})
        rec = on_topic("summer")
        assert (got["status"], rec.body["schedule"], rec.version) == ("scheduled", None, 4)
        got = await act("summer", "cancel")
        assert got["status"] == "cancelled" and on_topic("summer").body["status"] == "cancelled"
        _, one = await get_json(c, urls[1] + "/v1/broadcasts/summer")
        assert (one["status"], one["version"]) == ("Cancelled", 1)
        for action in ("cancel", "schedule", "unschedule"):
            await act("summer", action, {"now": True}, want=409)

        # a broadcast scheduled (and not started) may be cancelled too
        got = await act("future", "cancel")
        assert got["status"] == "cancelled"
        _, listed = await get_json(c, urls[0] + "/v1/broadcasts")
        statuses = {d["key"]: d["status"] for d in listed["data"]}
        assert statuses == {
            "broken": "Failed",
            "done": "Sent",
            "draft": "Draft",
            "future": "Cancelled",
            "spring": "Sending",
            "stopped": "Cancelled",
            "summer": "Cancelled",
        }

    asyncio.run(serve(s, test))
