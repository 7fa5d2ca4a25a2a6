"""The journeys API over HTTP, in process: two workers' views on real aiohttp servers, each
answering from one partition the real profiles stage ran a journeys scenario on
(`journey_scenario`), so the counts summed across workers, a journey's steps, exits and
messages, a profile's journey state (answered by its owner, from either worker), auth and
the error shapes are tested without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import faust
import orjson
from aiohttp.test_utils import TestServer

from engage_stream.api import routes
from engage_stream.api.source import PartitionRead
from engage_stream.journeys import counts as journey_counts
from engage_stream.timestamps import iso_ms
from tests.api import journey_scenario as scenario
from tests.api.journey_scenario import DAY, T0, Partition, Scenario
from tests.api.test_views import INTERNAL, SPACE, LocalState, auth, get

TRIAL_COUNTS = {"entered": 7, "active": 2, "completed": 4, "exited": 1}


class JourneyState(LocalState):
    """`WorkerState` of one worker owning one scenario partition."""

    def __init__(self, part: Partition, sc: Scenario, directory: dict[int, str]) -> None:
        super().__init__(part.number, directory)
        self.part = part
        self.catalog = sc.catalog

    async def read(self, partition: int) -> PartitionRead:
        return PartitionRead(self.part.store, self.part.clock)

    def local_journey_counts_by_partition(self) -> dict[int, journey_counts.Counts]:
        return {self.partition: journey_counts.read(self.part.db)}


Test = Callable[[Scenario, list[JourneyState], list[str], aiohttp.ClientSession], Awaitable[None]]


def in_cluster(test: Test) -> Callable[[], None]:
    """`test` against two workers serving the API, one scenario partition each."""

    async def main() -> None:
        sc = scenario.run()
        directory: dict[int, str] = {}
        states = [JourneyState(p, sc, directory) for p in sc.partitions]
        apps, servers = [], []
        for i, state in enumerate(states):
            app = faust.App(f"test-journeys-{i}", web_enabled=True)
            routes.serve(app, state, space_id=SPACE, api_token="secret", internal_secret=INTERNAL)
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

    def run() -> None:
        asyncio.run(main())

    run.__doc__ = test.__doc__
    return run


async def get_json(client: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    status, ctype, body = await get(client, url, auth())
    assert ctype == "application/json", url
    return status, orjson.loads(body)


def summary(key: str, name: str, status: str, version: int, flavour: str, **counts: int) -> dict:
    published = scenario.PUBLISHED_V2 if key == "trial" else scenario.PUBLISHED_V1
    return {
        "key": key,
        "name": name,
        "description": "",
        "status": status,
        "version": version,
        "flavour": flavour,
        "published_at": iso_ms(published),
        "counts": {n: counts.get(n, 0) for n in ("entered", "active", "completed", "exited")},
    }


@in_cluster
async def test_the_list_sums_every_workers_counts(
    sc: Scenario, states: list[JourneyState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    """Either worker answers with the counts of both partitions (neither holds them all)."""
    assert journey_counts.read(sc.partitions[0].db)["trial"]["entered"] == 3
    want = [
        {
            "key": "broken",
            "status": "failed",
            "error": sc.catalog.journeys.failed["broken"],
        },
        summary("sunset", "sunset", "paused", 1, "event_triggered"),
        summary("trial", "Trial to paid", "live", 2, "event_triggered", **TRIAL_COUNTS),
        summary("welcome", "welcome", "live", 1, "classic", entered=1, active=1),
    ]
    for url in urls:
        status, body = await get_json(client, url + "/v1/journeys")
        assert status == 200
        assert body == {"data": want}
    assert "invalid journey body" in want[0]["error"]


@in_cluster
async def test_one_journey_has_its_steps_exits_messages_and_versions(
    sc: Scenario, states: list[JourneyState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    def step(key: str, name: str, kind: str, in_step: int, reached: int, current: bool) -> dict:
        return {
            "key": key,
            "name": name,
            "type": kind,
            "in_step": in_step,
            "reached": reached,
            "current": current,
        }

    status, body = await get_json(client, urls[1] + "/v1/journeys/trial")
    assert status == 200
    assert body == {
        **summary("trial", "Trial to paid", "live", 2, "event_triggered", **TRIAL_COUNTS),
        "on_new_version": "drain",
        "steps": [
            # t0 (draining version 1) and t2 hold; the two partitions' counts summed
            step("wait_for_upgrade", "Wait for the upgrade", "hold_until", 2, 7, True),
            step("thanks", "thanks", "send_message", 0, 1, True),
            step("nudge", "nudge", "send_message", 0, 3, True),
            step("legacy_sms", "legacy_sms", "send_message", 0, 0, False),  # version 1 only
        ],
        "exits": {"exit_event": 1},
        "messages": {
            "requested": 1,
            "skipped": {"no_address": 1, "none": 1, "unsubscribed": 1},
        },
        "previous_versions": [
            {
                "version": 1,
                "name": "Trial to paid",
                "steps": ["wait_for_upgrade", "thanks", "legacy_sms"],
            }
        ],
    }
    _, welcome = await get_json(client, urls[0] + "/v1/journeys/welcome")
    assert welcome["flavour"] == "classic" and welcome["previous_versions"] == []
    assert [(s["key"], s["type"], s["in_step"], s["reached"]) for s in welcome["steps"]] == [
        ("cool_off", "wait", 1, 1),
        ("welcome_email", "send_message", 0, 0),
    ]
    assert welcome["messages"] == {"requested": 0, "skipped": {}} and welcome["exits"] == {}
    _, sunset = await get_json(client, urls[0] + "/v1/journeys/sunset")
    assert (sunset["status"], sunset["counts"]["entered"]) == ("paused", 0)
    status, broken = await get_json(client, urls[0] + "/v1/journeys/broken")
    assert (status, broken["status"]) == (200, "failed")


@in_cluster
async def test_journeys_api_errors_are_segment_shaped(
    sc: Scenario, states: list[JourneyState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    status, body = await get_json(client, urls[0] + "/v1/journeys/nope")
    assert (status, body) == (
        404,
        {"error": {"code": "not_found", "message": "Journey 'nope' was not found."}},
    )
    for path in ("/v1/journeys", "/v1/journeys/trial", "/v1/internal/journey-counts"):
        for headers in ({}, auth("wrong")):
            status, ctype, raw = await get(client, urls[1] + path, headers)
            assert (status, ctype) == (401, "application/json"), path
            assert orjson.loads(raw)["error"]["code"] == "authentication_error"

    def unreadable() -> dict[int, journey_counts.Counts]:
        raise RuntimeError("disk on fire")

    states[0].local_journey_counts_by_partition = unreadable  # type: ignore[method-assign]
    status, body = await get_json(client, urls[0] + "/v1/journeys")
    assert (status, body) == (
        500,
        {"error": {"code": "internal_error", "message": "Internal server error."}},
    )


@in_cluster
async def test_an_unreachable_worker_leaves_a_gap_not_an_error(
    sc: Scenario, states: list[JourneyState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    states[0].extra_workers = {"http://127.0.0.1:9"}  # a peer mid-restart
    status, body = await get_json(client, urls[0] + "/v1/journeys/trial")
    assert (status, body["counts"]) == (200, TRIAL_COUNTS)
    del states[0].directory[1]  # partition 1's owner gone: only partition 0's counts
    _, body = await get_json(client, urls[0] + "/v1/journeys/trial")
    assert body["counts"] == {"entered": 3, "active": 2, "completed": 1, "exited": 0}


def profile_path(user: str) -> str:
    return f"/v1/spaces/{SPACE}/collections/users/profiles/user_id:{user}/journeys"


def instance_ids(sc: Scenario, user: str) -> list[str]:
    """A user's instance ids in entry order, as the stage's instance_entered outputs named
    them."""
    return [
        o.instance_id
        for p in sc.partitions
        for result in p.results
        for o in result.journeys
        if o.type == "instance_entered" and o.profile_id == f"user_id:{user}"
    ]


@in_cluster
async def test_a_profiles_journey_state_from_either_worker(
    sc: Scenario, states: list[JourneyState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    """In-progress instances per journey and version (a draining version included), where
    each waits and until when, its identifier and context; the subscription states."""
    user = sc.users["subscribed"]
    ids = instance_ids(sc, user)  # t0 (version 1), t1, t2 in entry order
    hold = {"key": "wait_for_upgrade", "name": "Wait for the upgrade", "type": "hold_until"}
    want = {
        "data": [
            {
                "journey": "trial",
                "name": "Trial to paid",
                "version": 1,
                "current": False,
                "entries": 1,
                "ended_at": None,
                "reentry_at": None,
                "instances": [
                    {
                        "instance_id": ids[0],
                        "entered": iso_ms(T0 + 1000),
                        "expires": None,
                        "unique_identifier": "t0",
                        "context": {"Trial Started": {"trial_id": "t0"}},
                        "steps": [
                            {
                                **hold,
                                "since": iso_ms(T0 + 1000),
                                "due": iso_ms(T0 + 1000 + DAY),
                                "loops": 0,
                            }
                        ],
                    }
                ],
            },
            {
                "journey": "trial",
                "name": "Trial to paid",
                "version": 2,
                "current": True,
                "entries": 2,
                "ended_at": iso_ms(T0 + 21_000),  # t1 completed
                "reentry_at": None,
                "instances": [
                    {
                        "instance_id": ids[2],
                        "entered": iso_ms(T0 + 22_000),
                        "expires": None,
                        "unique_identifier": "t2",
                        "context": {"Trial Started": {"trial_id": "t2"}},
                        "steps": [
                            {
                                **hold,
                                "since": iso_ms(T0 + 22_000),
                                "due": iso_ms(T0 + 22_000 + DAY),
                                "loops": 0,
                            }
                        ],
                    }
                ],
            },
        ],
        "subscriptions": [
            {"channel": "email", "address": f"{user}@x.io", "status": "subscribed", "groups": {}}
        ],
    }
    for url in urls:  # partition 0's: worker 1 forwards it to its owner
        status, body = await get_json(client, url + profile_path(user))
        assert (status, body) == (200, want)

    other = sc.users["unsubscribed"]
    _, body = await get_json(client, urls[0] + profile_path(other))
    assert [(j["journey"], j["version"], j["current"], j["entries"]) for j in body["data"]] == [
        ("trial", 2, True, 1),
        ("welcome", 1, True, 1),
    ]
    trial, welcome = body["data"]
    assert trial["instances"] == [] and trial["ended_at"] == iso_ms(T0 + DAY + 20_000)
    (waiting,) = welcome["instances"]
    assert waiting["unique_identifier"] is None and waiting["context"] == {}
    assert waiting["steps"] == [
        {
            "key": "cool_off",
            "name": "cool_off",
            "type": "wait",
            "since": iso_ms(T0 + 2 * DAY + 1000),
            "due": iso_ms(T0 + 2 * DAY + 1000 + 3_600_000),
            "loops": 0,
        }
    ]
    assert body["subscriptions"][0]["status"] == "unsubscribed"
    _, body = await get_json(client, urls[0] + profile_path(sc.users["nomail"]))
    assert body["subscriptions"] == [] and body["data"][0]["entries"] == 1
    status, body = await get_json(client, urls[0] + profile_path("nobody"))
    assert (status, body["error"]["code"]) == (404, "not_found")
