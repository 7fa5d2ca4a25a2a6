"""An over-long request line sent to the API: a 400, and one warning line without a
traceback (at most once a minute), not aiohttp's ERROR with the parser's traceback."""

from __future__ import annotations

import asyncio
import logging
import socket

import faust
import pytest
from aiohttp.http_exceptions import BadStatusLine, LineTooLong
from aiohttp.test_utils import TestServer

from engage_stream.api import routes
from engage_stream.api.server_log import BadRequestLog
from tests.api.test_views import INTERNAL, SPACE, TOKEN, LocalState


def send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(raw)
        return conn.recv(4096)


def test_an_over_long_request_line_is_one_warning_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[bytes]:
        app = faust.App("test-server-log", web_enabled=True)
        routes.serve(
            app, LocalState(0, {}), space_id=SPACE, api_token=TOKEN, internal_secret=INTERNAL
        )
        server = TestServer(app.web.web_app, host="127.0.0.1")
        await server.start_server()
        try:
            line = b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            return [await asyncio.to_thread(send, server.port, line) for _ in range(3)]
        finally:
            await app.http_client.close()
            await server.close()

    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        answers = asyncio.run(main())
    assert all(a.startswith(b"HTTP/1.0 400") for a in answers)
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    # one warning, or none when another test's bad request warned less than a minute ago
    assert [(r.levelname, r.exc_info, r.exc_text) for r in records] in (
        [("WARNING", None, None)],
        [],
    )
    assert all("LineTooLong" in r.getMessage() for r in records)


def record(exc: BaseException | None, level: int = logging.ERROR) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(
        "aiohttp.server",
        level,
        __file__,
        1,
        "Error handling request from %s",
        ("1.2.3.4",),
        exc_info,
    )


def test_one_warning_per_interval_counting_the_dropped_ones() -> None:
    f = BadRequestLog(interval_s=3600)
    first = record(LineTooLong("Got more than 8190 bytes"))
    assert f.filter(first) and first.levelname == "WARNING" and first.exc_info is None
    assert "LineTooLong" in first.getMessage()
    assert not f.filter(record(LineTooLong("again")))
    assert not f.filter(record(BadStatusLine("junk")))
    f.interval_s = 0
    later = record(LineTooLong("later"))
    assert f.filter(later) and "2 more since" in later.getMessage()
    other = record(RuntimeError("a real bug"))
    assert f.filter(other) and other.levelname == "ERROR" and other.exc_info is not None
