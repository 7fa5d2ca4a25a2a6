"""The collector's HTTP behaviour that needs no broker: the collector runs in process with
a real idempotent producer pointed at a port where no Kafka listens, so every request that
gets past auth and limits is answered 503 — exactly what SDKs see while Kafka is down."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from engage_stream.collector.app import ENDPOINTS, Collector
from engage_stream.collector.settings import CollectorSettings
from engage_stream.config import Settings

AUTH = {"Authorization": "Basic " + base64.b64encode(b"wk1:").decode()}
JSON = {"Content-Type": "application/json"}
TRACK = {"userId": "u1", "event": "Clicked"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running(**config: Any) -> AsyncIterator[tuple[Collector, aiohttp.ClientSession]]:
    settings = Settings(broker=f"127.0.0.1:{_closed_port()}")
    collector = Collector(
        settings, CollectorSettings(port=0, write_keys="wk1=web,wk2=backend", **config)
    )
    await collector.start()
    try:
        async with aiohttp.ClientSession(collector.url) as http:
            yield collector, http
    finally:
        await collector.stop()


def run(test: Callable[..., Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        async with running(**config) as (collector, http):
            await test(collector, http)

    asyncio.run(main())


async def post(
    http: aiohttp.ClientSession,
    path: str,
    body: Any = TRACK,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, Any, Any]:
    raw = data if data is not None else orjson.dumps(body)
    async with http.post(path, data=raw, headers={**JSON, **AUTH, **(headers or {})}) as resp:
        text = await resp.read()
        return resp.status, orjson.loads(text) if text else None, resp.headers


def test_wrong_or_missing_write_key_is_401_with_segments_error_body() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        wrong = {"Authorization": "Basic " + base64.b64encode(b"nope:").decode()}
        status, body, headers = await post(http, "/v1/track", headers=wrong)
        assert status == 401
        assert body == {"success": False, "code": "unauthorized", "message": "Invalid write key."}
        assert headers["Content-Type"] == "application/json"
        # the header key is checked before the body is read: no 400 for a bad body then
        status, body, _ = await post(http, "/v1/track", headers=wrong, data=b"{not json")
        assert status == 401
        async with http.post("/v1/track", data=orjson.dumps(TRACK), headers=JSON) as resp:
            assert resp.status == 401
            assert "Missing write key" in (await resp.json())["message"]
        body_key = {**TRACK, "writeKey": "nope"}
        async with http.post("/v1/track", data=orjson.dumps(body_key), headers=JSON) as resp:
            assert resp.status == 401

    run(test)


def test_valid_requests_get_503_with_retry_after_while_kafka_is_unreachable() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        status, body, headers = await post(http, "/v1/track")
        assert status == 503 and body["success"] is False
        assert body["code"] == "service_unavailable" and "Kafka" in body["message"]
        assert headers["Retry-After"] == "2"
        assert int(headers["X-RateLimit-Reset"]) > 0
        # the body's write key works as well as the header's
        async with http.post(
            "/v1/t", data=orjson.dumps({**TRACK, "writeKey": "wk2"}), headers=JSON
        ) as resp:
            assert resp.status == 503
        async with http.get("/health") as resp:
            health = await resp.json()
            assert resp.status == 503 and health["status"] == "unavailable"
            assert health["kafka"]["available"] is False and health["kafka"]["reason"]
            assert health["sources"] == ["backend", "web"]

    run(test, retry_after_s=2)


def test_every_endpoint_and_short_alias_is_served() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        for name, kind in ENDPOINTS.items():
            body = {"batch": [TRACK]} if kind == "batch" else TRACK
            status, _, _ = await post(http, f"/v1/{name}", body)
            assert status == 503, name  # reached delivery: Kafka is down
        for name in ("b", "batch", "import"):
            status, body, _ = await post(http, f"/v1/{name}", {"events": []})
            assert (status, body["code"]) == (400, "invalid_request"), name
        status, _, _ = await post(http, "/v1/teleport")
        assert status == 404

    run(test)


def test_invalid_json_and_content_types_are_400() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        status, body, _ = await post(http, "/v1/track", data=b'{"userId": "u1",')
        assert (status, body["code"]) == (400, "invalid_json")
        status, body, _ = await post(
            http, "/v1/track", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert (status, body["code"]) == (400, "invalid_content_type")
        # analytics-next posts text/plain to avoid a CORS preflight
        status, _, _ = await post(http, "/v1/track", headers={"Content-Type": "text/plain"})
        assert status == 503
        status, body, _ = await post(http, "/v1/track", headers={"Content-Encoding": "br"})
        assert (status, body["code"]) == (400, "unsupported_encoding")

    run(test)


def test_size_limits_32_kb_per_call_and_500_kb_per_batch_also_after_gzip() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        big = {**TRACK, "properties": {"blob": "x" * 33_000}}
        status, body, _ = await post(http, "/v1/track", big)
        assert (status, body["code"]) == (400, "payload_too_large")
        assert "32 KB" in body["message"]
        item = {**TRACK, "properties": {"blob": "x" * 20_000}}
        status, body, _ = await post(http, "/v1/batch", {"batch": [item] * 26})  # ~520 KB
        assert (status, body["code"]) == (400, "payload_too_large")
        assert "500 KB" in body["message"]
        status, _, _ = await post(http, "/v1/batch", {"batch": [item] * 24})  # ~480 KB
        assert status == 503, "under the limits: on to Kafka"
        gz = {"Content-Encoding": "gzip"}
        bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
        assert len(bomb) < 10_000
        status, body, _ = await post(http, "/v1/batch", headers=gz, data=bomb)
        assert (status, body["code"]) == (400, "payload_too_large")
        assert "uncompressed" in body["message"]
        ok = gzip.compress(orjson.dumps({"batch": [TRACK] * 10}))
        status, _, _ = await post(http, "/v1/batch", headers=gz, data=ok)
        assert status == 503
        status, body, _ = await post(http, "/v1/batch", headers=gz, data=ok[:-8])
        assert (status, body["code"]) == (400, "invalid_gzip")
        status, body, _ = await post(http, "/v1/batch", headers=gz, data=b"plain")
        assert (status, body["code"]) == (400, "invalid_gzip")

    run(test)


def test_a_slow_body_is_cut_off_with_408() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
        writer.write(
            b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + AUTH["Authorization"].encode() + b"\r\n"
            b'Content-Length: 100\r\n\r\n{"userId":'
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.startswith(b"HTTP/1.1 408"), status_line
        writer.close()

    run(test, body_timeout_s=0.3)


def test_rate_limit_per_write_key_is_429_with_retry_after() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        first, _, _ = await post(http, "/v1/track")
        second, body, headers = await post(http, "/v1/track")
        assert first == 503 and second == 429
        assert body["code"] == "rate_limited"
        assert headers["Retry-After"] == "1" and "X-RateLimit-Reset" in headers
        other = {"Authorization": "Basic " + base64.b64encode(b"wk2:").decode()}
        status, _, _ = await post(http, "/v1/track", headers=other)
        assert status == 503, "another key has its own bucket"
        assert c.port is not None

    run(test, rate_limit=1)


def test_cors_preflight_and_answers_for_allowed_origins_only() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        preflight = {
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        async with http.options("/v1/t", headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert resp.headers["Access-Control-Allow-Headers"] == "authorization,content-type"
            assert "Origin" in resp.headers["Vary"]
        status, _, headers = await post(http, "/v1/t", headers={"Origin": "https://shop.example"})
        assert status == 503
        assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "Retry-After" in headers["Access-Control-Expose-Headers"], "readable by the page"
        async with http.options(
            "/v1/t", headers={**preflight, "Origin": "https://evil.example"}
        ) as resp:
            assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
        status, body, headers = await post(
            http, "/v1/t", headers={"Origin": "https://evil.example"}
        )
        assert (status, body["code"]) == (403, "origin_not_allowed")
        assert "Access-Control-Allow-Origin" not in headers
        status, _, headers = await post(http, "/v1/t")  # not a browser: no CORS at all
        assert status == 503 and "Access-Control-Allow-Origin" not in headers

    run(test, cors_origins="https://shop.example,https://www.shop.example")


def test_any_origin_by_default() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        status, _, headers = await post(http, "/v1/t", headers={"Origin": "http://localhost:3000"})
        assert status == 503 and headers["Access-Control-Allow-Origin"] == "http://localhost:3000"

    run(test)


def test_browser_settings_point_analytics_next_at_the_collector() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        async with http.get("/v1/projects/wk1/settings") as resp:
            assert resp.status == 200
            segment = (await resp.json())["integrations"]["Segment.io"]
        assert segment["apiHost"] == f"127.0.0.1:{c.port}/v1"
        assert segment["protocol"] == "http" and segment["apiKey"] == "wk1"
        async with http.get("/v1/projects/nope/settings") as resp:
            assert resp.status == 404

    run(test)


def test_metrics_count_requests_by_endpoint_status_and_source() -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        await post(http, "/v1/identify", {"userId": "u1"})
        await post(http, "/v1/identify", data=b"{", headers={})
        async with http.get("/metrics") as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            text = await resp.text()
        assert (
            'engage_collector_requests_total{endpoint="identify",source="web",status="503"}' in text
        )
        assert (
            'engage_collector_requests_total{endpoint="identify",source="web",status="400"}' in text
        )
        assert 'engage_collector_request_errors_total{code="invalid_json"}' in text
        assert "engage_collector_kafka_available 0.0" in text
        assert "engage_collector_request_seconds_bucket" in text

    run(test)


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_options_without_origin_is_not_an_error(path: str) -> None:
    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        async with http.options(path) as resp:
            assert resp.status == 204

    run(test)


def test_an_unexpected_error_is_a_json_500_and_the_server_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import engage_stream.collector.app as app_module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    async def test(c: Collector, http: aiohttp.ClientSession) -> None:
        monkeypatch.setattr(app_module, "prepare", broken)
        status, body, _ = await post(http, "/v1/track")
        assert (status, body["code"], body["success"]) == (500, "internal_error", False)
        monkeypatch.undo()
        status, _, _ = await post(http, "/v1/track")
        assert status == 503, "still serving (Kafka is down here)"

    run(test)


def test_run_serves_until_its_task_is_cancelled_then_stops() -> None:
    """How a host program (the worker's Faust app) runs it: a task, cancelled at shutdown."""

    async def main() -> None:
        settings = Settings(broker=f"127.0.0.1:{_closed_port()}")
        collector = Collector(settings, CollectorSettings(port=0, write_keys="wk1=web"))
        task = asyncio.create_task(collector.run())
        while collector.port is None:
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession(collector.url) as http, http.get("/health") as resp:
            assert resp.status == 503  # serving; Kafka is not there
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", collector.port)

    asyncio.run(main())
