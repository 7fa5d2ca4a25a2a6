"""The web API over HTTP, in process: two workers' views on real aiohttp servers, each
answering from in-memory profile state, so routing to the owner, the fan-out to peers,
auth and the error shapes are tested without a broker."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

import aiohttp
import faust
import orjson
from aiohttp.test_utils import TestServer

from engage_stream.api import profiles as profile_api
from engage_stream.api import routes
from engage_stream.api.source import Health, PartitionRead
from engage_stream.definitions.catalog import Catalog
from engage_stream.events import ProfileEvent
from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
from engage_stream.profiles.record import ProfileRecord, TraitValue
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.memory import MemoryKV
from engage_stream.stream.producing import partition_for
from tests.api.test_audiences import AUDIENCE, TRAIT, catalog

NOW = 1_800_000_000_000
SPACE, TOKEN = "spa_test", "secret"
INTERNAL = "cluster-secret"  # the workers' shared internal secret
PARTITIONS = 2
CATALOG = catalog(AUDIENCE, TRAIT)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}


def profile_on(partition: int, prefix: str = "u") -> str:
    """A user id whose canonical profile lands in `partition`."""
    return next(
        f"{prefix}{i}"
        for i in range(1000)
        if partition_for(f"user_id:{prefix}{i}".encode(), PARTITIONS) == partition
    )


class LocalState:
    """`WorkerState` of one worker owning one partition, held in memory."""

    def __init__(self, partition: int, directory: dict[int, str]) -> None:
        self.url = ""  # known once its server listens
        self.catalog: Catalog = CATALOG
        self.partition = partition
        self.directory = directory  # partition → owner URL, shared by the workers
        self.store = ProfileStore(MemoryKV())
        self.members: dict[str, list[ProfileRecord]] = {}
        self.sizes: dict[str, int] = {}
        self.status: dict[str, str] = {}
        self.started = True
        self.extra_workers: set[str] = set()
        self.fail_reads = False
        self.claimed: dict[int, dict[str, int]] = {}  # sizes it reports for others' partitions

    def health(self) -> Health:
        return Health(True, {"profiles"}, {self.partition}, {self.partition}, {}, True)

    def accepting(self) -> bool:
        return self.started

    def resolve(self, id_type: str, value: str) -> str | None:
        """Profiles here are named by their user id (`user_id:<u>`)."""
        return f"{id_type}:{value}" if id_type in ("user_id", "anonymous_id") else None

    async def partition_of(self, profile_id: str) -> int:
        return partition_for(profile_id.encode(), PARTITIONS)

    def owns(self, partition: int) -> bool:
        return partition == self.partition

    async def read(self, partition: int) -> PartitionRead:
        if self.fail_reads:
            raise RuntimeError("disk on fire")
        return PartitionRead(self.store, NOW)

    async def owner(self, partition: int) -> str | None:
        return self.directory.get(partition)

    async def assignment(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {url: set() for url in self.extra_workers}
        for p, url in self.directory.items():
            out.setdefault(url, set()).add(p)
        return out

    def statuses(self) -> dict[str, str]:
        return dict(self.status)

    def local_sizes_by_partition(self) -> dict[int, dict[str, int]]:
        return {self.partition: dict(self.sizes), **self.claimed}

    def local_journey_counts_by_partition(self) -> dict[int, dict[str, dict[str, int]]]:
        return {}

    async def local_members(self, key: str) -> list[ProfileRecord]:
        return list(self.members.get(key, []))


def identify(store: ProfileStore, uid: str) -> None:
    ProfileProcessor(None, ProcessorSettings()).apply(
        store,
        ProfileEvent(
            message_id=f"{uid}-m",
            type="identify",
            timestamp=NOW - 1000,
            received_at=NOW - 1000,
            profile_id=f"user_id:{uid}",
            user_id=uid,
            traits={"email": f"{uid}@x.io"},
        ),
        NOW,
    )


def member(uid: str) -> ProfileRecord:
    rec = ProfileRecord(profile_id=f"user_id:{uid}")
    rec.audiences["buyers"] = TraitValue(True, NOW)
    return rec


Test = Callable[[list["LocalState"], list[str], aiohttp.ClientSession], Awaitable[None]]


def cluster(
    secrets: tuple[str, str] = (INTERNAL, INTERNAL), metrics_token: str = ""
) -> Callable[[Test], Callable[[], None]]:
    """A test run against two workers, one partition each, serving the API with these
    internal secrets; it gets their states and URLs and a client."""

    def decorate(test: Test) -> Callable[[], None]:
        async def main() -> None:
            directory: dict[int, str] = {}
            states = [LocalState(p, directory) for p in range(PARTITIONS)]
            apps, servers = [], []
            for i, state in enumerate(states):
                app = faust.App(f"test-views-{i}", web_enabled=True)
                routes.serve(
                    app,
                    state,
                    space_id=SPACE,
                    api_token=TOKEN,
                    internal_secret=secrets[i],
                    metrics_token=metrics_token,
                )
                server = TestServer(app.web.web_app, host="127.0.0.1")
                await server.start_server()
                state.url = str(server.make_url("")).rstrip("/")
                directory[state.partition] = state.url
                apps.append(app)
                servers.append(server)
            try:
                async with aiohttp.ClientSession() as client:
                    await test(states, [s.url for s in states], client)
            finally:
                for app, server in zip(apps, servers, strict=True):
                    await app.http_client.close()
                    await server.close()

        def run() -> None:
            asyncio.run(main())

        run.__doc__ = test.__doc__
        return run

    return decorate


in_cluster = cluster()


async def get(
    client: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    async with client.get(url, headers=headers or {}) as resp:
        return resp.status, resp.headers["Content-Type"], await resp.read()


def traits_path(uid: str, space: str = SPACE) -> str:
    return f"/v1/spaces/{space}/collections/users/profiles/user_id:{uid}/traits"


@in_cluster
async def test_either_worker_answers_for_every_profile_exactly_as_the_owner_does(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    uids = [profile_on(p) for p in range(PARTITIONS)]
    for state, uid in zip(states, uids, strict=True):
        identify(state.store, uid)
    for uid, owner in zip(uids, states, strict=True):
        want = profile_api.handle(
            owner.store, f"user_id:{uid}", "traits", traits_path(uid), {}, NOW
        )
        for url in urls:
            status, ctype, body = await get(client, url + traits_path(uid), auth())
            assert (status, ctype) == (200, "application/json")
            assert body == orjson.dumps(want)


@in_cluster
async def test_a_forwarded_request_is_not_forwarded_again(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    elsewhere = profile_on(1)
    status, _, body = await get(
        client, urls[0] + traits_path(elsewhere), {**auth(), "X-Engage-Routed": "1"}
    )
    assert status == 503
    assert orjson.loads(body)["error"] == {
        "code": "service_unavailable",
        "message": "Partition 1 has no owner yet (rebalancing); retry shortly.",
    }
    del states[0].directory[1]  # nobody owns it (a rebalance)
    status, _, _ = await get(client, urls[0] + traits_path(elsewhere), auth())
    assert status == 503


@in_cluster
async def test_profile_api_errors_are_segment_shaped(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    here = profile_on(0)
    identify(states[0].store, here)
    cases = [
        (traits_path(here), {}, 401, "authentication_error"),
        (traits_path(here), auth("wrong"), 401, "authentication_error"),
        (traits_path(here, space="other"), auth(), 404, "not_found"),
        (traits_path(here).replace("/users/", "/accounts/"), auth(), 404, "not_found"),
        (traits_path(here).replace("user_id:", "nonsense:"), auth(), 404, "not_found"),
        (traits_path(here) + "?limit=0", auth(), 400, "validation_error"),
    ]
    for path, headers, want_status, code in cases:
        status, ctype, body = await get(client, urls[0] + path, headers)
        assert (status, ctype) == (want_status, "application/json"), path
        assert orjson.loads(body)["error"]["code"] == code, path
    states[0].started = False
    status, _, body = await get(client, urls[0] + traits_path(here), auth())
    assert (status, orjson.loads(body)["error"]["code"]) == (503, "service_unavailable")
    states[0].started, states[0].fail_reads = True, True
    status, _, body = await get(client, urls[0] + traits_path(here), auth())
    assert (status, orjson.loads(body)) == (
        500,
        {"error": {"code": "internal_error", "message": "Internal server error."}},
    )


@in_cluster
async def test_audiences_sum_sizes_and_report_the_least_advanced_worker(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    states[0].status = {"buyers": "Live", "orders": "Live"}
    states[1].status = {"buyers": "Computing", "orders": "Live"}
    states[0].sizes, states[1].sizes = {"buyers": 2}, {"buyers": 3}
    states[0].extra_workers = {"http://127.0.0.1:9"}  # a peer mid-restart: skipped
    for url in urls:
        status, ctype, body = await get(client, url + "/v1/audiences/buyers", auth())
        assert (status, ctype) == (200, "application/json")
        assert {k: orjson.loads(body)[k] for k in ("status", "size")} == {
            "status": "Computing",
            "size": 5,
        }
    _, _, body = await get(client, urls[0] + "/v1/audiences?kind=computed_trait", auth())
    assert [x["key"] for x in orjson.loads(body)["data"]] == ["orders"]
    assert (await get(client, urls[0] + "/v1/audiences/nope", auth()))[0] == 404
    for path in ("/v1/audiences", "/v1/internal/audience-state"):
        assert (await get(client, urls[1] + path))[0] == 401


@in_cluster
async def test_members_csv_gathers_every_worker_in_profile_order(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    uids = {p: [profile_on(p, prefix) for prefix in "ab"] for p in range(PARTITIONS)}
    for state in states:
        state.members["buyers"] = [member(u) for u in uids[state.partition]]
    path = "/v1/audiences/buyers/members.csv?format=unformatted"
    status, ctype, body = await get(client, urls[1] + path, auth())
    assert (status, ctype) == (200, "text/csv")
    rows = body.decode().splitlines()
    everyone = sorted(f"user_id:{u}" for us in uids.values() for u in us)
    assert [r.split(",")[0] for r in rows[1:]] == everyone
    for path, want in (
        ("/v1/audiences/nope/members.csv", 404),
        ("/v1/audiences/buyers/members.csv?format=xml", 400),
    ):
        status, ctype, _ = await get(client, urls[0] + path, auth())
        assert (status, ctype) == (want, "application/json")


@in_cluster
async def test_health_and_metrics_need_no_token(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    status, ctype, body = await get(client, urls[0] + "/health")
    assert (status, ctype) == (200, "application/json; charset=utf-8")
    assert orjson.loads(body) == {
        "status": "ready",
        "roles": ["profiles"],
        "owned": [0],
        "partitions": [0],
        "partition_status": {},
        "definitions_ready": True,
    }
    status, ctype, body = await get(client, urls[0] + "/metrics")
    assert (status, ctype) == (200, "text/plain; version=0.0.4")
    assert b"engage_api_requests" in body
