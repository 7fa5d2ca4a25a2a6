"""Workers asking each other (issue #15.3–4, #16.3, #16.8), in process on real aiohttp
servers: a profile request forwarded to a dead or unverifiable owner is a 503 with
Retry-After, never a 500; the client's token never leaves the worker; a stranger in the
consumer group cannot pass off an answer; a genuine peer's numbers count only for its own
partitions; without an internal secret nothing is asked; the router's own errors are
Segment-shaped."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from engage_stream.api.peer_auth import sign_request
from tests.api.test_views import (
    INTERNAL,
    TOKEN,
    LocalState,
    auth,
    cluster,
    get,
    identify,
    in_cluster,
    profile_on,
    traits_path,
)


class Stranger:
    """A process that joined the profiles group (same app id) and got a partition: it
    records every request it receives and answers whatever it likes, unsigned."""

    def __init__(self, answer: dict[str, object]) -> None:
        self.answer = answer
        self.requests: list[dict[str, str]] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        return web.json_response(self.answer)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


def assert_retry_later(
    status: int, headers: dict[str, str] | aiohttp.typedefs.LooseHeaders, body: bytes
) -> None:
    assert status == 503
    assert int(headers["Retry-After"]) > 0  # type: ignore[index]
    assert orjson.loads(body)["error"]["code"] == "service_unavailable"


@in_cluster
async def test_a_dead_owner_is_a_503_with_retry_after_not_a_500(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    """The group still lists a killed worker until its session expires: requests for its
    partition are retried later, not failed with a traceback."""
    elsewhere = profile_on(1)
    states[0].directory[1] = "http://127.0.0.1:9"  # nothing listens there
    async with client.get(urls[0] + traits_path(elsewhere), headers=auth()) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        assert_retry_later(resp.status, resp.headers, await resp.read())


@in_cluster
async def test_a_profile_missing_on_its_owner_is_a_404_through_either_worker(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    """404 only when the owner says the profile does not exist."""
    nobody = profile_on(1, "nobody")
    for url in urls:
        status, _, body = await get(client, url + traits_path(nobody), auth())
        assert (status, orjson.loads(body)["error"]["code"]) == (404, "not_found")


@in_cluster
async def test_a_stranger_in_the_group_never_sees_the_token_and_is_not_believed(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    stranger = Stranger(
        {"traits": {"forged": True}, "statuses": {}, "sizes": {"1": {"buyers": 1_000_013}}}
    )
    url = await stranger.start()
    try:
        states[0].directory[1] = url  # the group assigned it partition 1
        states[0].sizes = {"buyers": 2}
        async with client.get(urls[0] + traits_path(profile_on(1)), headers=auth()) as resp:
            assert_retry_later(resp.status, resp.headers, await resp.read())
        status, _, body = await get(client, urls[0] + "/v1/audiences/buyers", auth())
        assert (status, orjson.loads(body)["size"]) == (200, 2)
        assert len(stranger.requests) == 2
        for headers in stranger.requests:
            assert "Authorization" not in headers
            assert not any(TOKEN in v or INTERNAL in v for v in headers.values())
    finally:
        await stranger.close()


@in_cluster
async def test_a_peers_numbers_count_only_for_the_partitions_it_owns(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    """Worker 1 is genuine (it has the secret) but claims partition 0 (worker 0's) and a
    partition nobody has: only its own partition 1 counts."""
    states[0].sizes, states[1].sizes = {"buyers": 2}, {"buyers": 3}
    states[1].claimed = {0: {"buyers": 1_000_000}, 7: {"buyers": 13}}
    status, _, body = await get(client, urls[0] + "/v1/audiences/buyers", auth())
    assert (status, orjson.loads(body)["size"]) == (200, 5)


@cluster(secrets=(INTERNAL, "another-clusters-secret"))
async def test_a_worker_with_another_secret_is_a_stranger(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    here, there = profile_on(0), profile_on(1)
    identify(states[0].store, here)
    identify(states[1].store, there)
    states[0].sizes, states[1].sizes = {"buyers": 2}, {"buyers": 3}
    async with client.get(urls[0] + traits_path(there), headers=auth()) as resp:
        assert_retry_later(resp.status, resp.headers, await resp.read())
    status, _, body = await get(client, urls[0] + "/v1/audiences/buyers", auth())
    assert (status, orjson.loads(body)["size"]) == (200, 2)
    assert (await get(client, urls[0] + traits_path(here), auth()))[0] == 200


@cluster(secrets=("", ""))
async def test_without_an_internal_secret_peers_are_not_asked(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    here = profile_on(0)
    identify(states[0].store, here)
    states[0].sizes, states[1].sizes = {"buyers": 2}, {"buyers": 3}
    async with client.get(urls[0] + traits_path(profile_on(1)), headers=auth()) as resp:
        body = await resp.read()
        assert_retry_later(resp.status, resp.headers, body)
        assert "ENGAGE_INTERNAL_SECRET" in orjson.loads(body)["error"]["message"]
    assert (
        orjson.loads((await get(client, urls[0] + "/v1/audiences/buyers", auth()))[2])["size"] == 2
    )
    assert (await get(client, urls[0] + traits_path(here), auth()))[0] == 200


@in_cluster
async def test_internal_endpoints_take_only_fresh_peer_signatures(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    path = "/v1/internal/audience-state"
    assert (await get(client, urls[1] + path, auth()))[0] == 401  # the client's token: no
    signed = sign_request(INTERNAL, "GET", path)
    assert (await get(client, urls[1] + path, signed))[0] == 200
    assert (await get(client, urls[1] + path, signed))[0] == 401  # replayed
    stale = sign_request(INTERNAL, "GET", path, now=1_000_000.0)
    assert (await get(client, urls[1] + path, stale))[0] == 401
    other_path = sign_request(INTERNAL, "GET", "/v1/internal/journey-counts")
    assert (await get(client, urls[1] + path, other_path))[0] == 401
    forged = sign_request("guess", "GET", path)
    status, ctype, body = await get(client, urls[1] + path, forged)
    assert (status, ctype) == (401, "application/json")
    assert orjson.loads(body)["error"]["code"] == "authentication_error"


@in_cluster
async def test_router_errors_are_segment_shaped(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    cases = [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/v1/spaces/x/collections", 404, "not_found"),
        ("POST", "/v1/audiences", 405, "invalid_request_error"),
        ("DELETE", traits_path("u1"), 405, "invalid_request_error"),
        ("PUT", "/health", 405, "invalid_request_error"),
    ]
    for method, path, want, code in cases:
        async with client.request(method, urls[0] + path, headers=auth()) as resp:
            body = await resp.read()
            assert (resp.status, resp.headers["Content-Type"]) == (want, "application/json"), path
            error = orjson.loads(body)["error"]
            assert error["code"] == code and error["message"], path
            if want == 405:
                assert "GET" in resp.headers["Allow"], path


@cluster(metrics_token="scrape-me")
async def test_metrics_can_be_behind_a_bearer_token(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    for headers in ({}, auth(), {"Authorization": "Bearer wrong"}):
        status, ctype, body = await get(client, urls[0] + "/metrics", headers)
        assert (status, ctype) == (401, "application/json")
    status, _, body = await get(client, urls[0] + "/metrics", {"Authorization": "Bearer scrape-me"})
    assert status == 200 and b"engage_api_requests" in body
    assert (await get(client, urls[0] + "/health"))[0] == 200  # probes need no token


@in_cluster
async def test_a_starting_worker_answers_503_not_404_for_any_profile(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    """While its identity map loads, a worker cannot tell an unknown identifier from one
    it has not read yet: 503 with Retry-After, not "Profile was not found"."""
    states[0].started = False
    for path in (traits_path(profile_on(0)), traits_path("nobody").replace("user_id:", "email:")):
        async with client.get(urls[0] + path, headers=auth()) as resp:
            assert_retry_later(resp.status, resp.headers, await resp.read())


@in_cluster
async def test_a_forwarded_identifier_arrives_as_the_client_encoded_it(
    states: list[LocalState], urls: list[str], client: aiohttp.ClientSession
) -> None:
    """The peer signature covers the URL as sent: an identifier with spaces, `+` and `/`
    and an encoded query survive the hop (no re-quoting between signing and sending)."""
    uid = profile_on(1, "a b+c/")
    identify(states[1].store, uid)
    path = traits_path(quote(uid, safe="")) + "?include=email%2Cplan"
    want = await get(client, urls[1] + path, auth())
    assert want[0] == 200
    assert await get(client, urls[0] + path, auth()) == want
