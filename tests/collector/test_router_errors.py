"""The collector's router-level answers (#16.8): unknown paths, wrong methods and
unparseable requests in the SDKs' JSON error shape; `/metrics` behind a Bearer token when
one is set; write keys compared in constant time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from engage_stream.collector.app import Collector
from engage_stream.collector.settings import CollectorSettings
from engage_stream.collector.write_keys import WriteKeys
from engage_stream.config import Settings
from tests.collector.test_http import AUTH, _closed_port


@contextlib.asynccontextmanager
async def collector(
    metrics_token: str = "",
) -> AsyncIterator[tuple[Collector, aiohttp.ClientSession]]:
    settings = Settings(broker=f"127.0.0.1:{_closed_port()}", metrics_token=metrics_token)
    c = Collector(settings, CollectorSettings(port=0, write_keys="wk1=web"))
    await c.start()
    try:
        async with aiohttp.ClientSession(c.url) as http:
            yield c, http
    finally:
        await c.stop()


def test_unknown_paths_and_wrong_methods_are_json_errors() -> None:
    async def main() -> None:
        async with collector() as (_, http):
            for method, path, want, code in (
                ("GET", "/nope", 404, "not_found"),
                ("POST", "/v2/track", 404, "not_found"),
                ("GET", "/v1/track", 405, "method_not_allowed"),
                ("DELETE", "/health", 405, "method_not_allowed"),
            ):
                async with http.request(method, path, headers=AUTH) as resp:
                    assert (resp.status, resp.content_type) == (want, "application/json"), path
                    body = orjson.loads(await resp.read())
                    assert body["success"] is False and body["code"] == code, path
                    assert body["message"], path
                    if want == 405:
                        assert resp.headers["Allow"], path

    asyncio.run(main())


def test_an_over_long_request_line_is_a_400_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def send(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"POST /v1/" + b"t" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            return conn.recv(4096)

    async def main() -> bytes:
        async with collector() as (c, _):
            assert c.port is not None
            return await asyncio.to_thread(send, c.port)

    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        answer = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.0 400")
    for r in caplog.records:
        if r.name == "aiohttp.server":
            assert (r.levelname, r.exc_info) == ("WARNING", None)


def test_metrics_behind_a_bearer_token_when_one_is_set() -> None:
    async def main() -> None:
        async with collector(metrics_token="scrape-me") as (_, http):
            for headers in ({}, AUTH, {"Authorization": "Bearer nope"}):
                async with http.get("/metrics", headers=headers) as resp:
                    assert (resp.status, resp.content_type) == (401, "application/json")
            headers = {"Authorization": "Bearer scrape-me"}
            async with http.get("/metrics", headers=headers) as resp:
                assert resp.status == 200 and b"engage_" in await resp.read()
            async with http.get("/health") as resp:
                assert resp.status in (200, 503)  # probes need no token
        async with collector() as (_, http), http.get("/metrics") as resp:
            assert resp.status == 200  # off by default

    asyncio.run(main())


def test_write_key_lookup_finds_exactly_the_key() -> None:
    keys = WriteKeys.parse({"wk_a": "a", "wk_b": "b"}, "test")
    assert keys.lookup("wk_a").source_id == "a"  # type: ignore[union-attr]
    assert keys.lookup("wk_b").source_id == "b"  # type: ignore[union-attr]
    for wrong in ("wk_", "wk_a ", "WK_A", "wk_ab", "", None):
        assert keys.lookup(wrong) is None
