"""Reading a request body within Segment's size limits, and in bounded time and memory.

The limits apply to the JSON as sent, after gzip: 32 KB for a single call, 500 KB for a
batch (reference §9). Both the wire bytes and the inflated bytes are capped while they
are read, so neither a large upload nor a small gzip bomb is ever held in memory whole.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from aiohttp import web

from engage_stream.collector.errors import CollectorError
from engage_stream.ingest.segment import MAX_MESSAGE_BYTES

MAX_EVENT_BYTES = MAX_MESSAGE_BYTES  # 32 KB per call / per event, as ingest enforces
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500

# analytics-next posts text/plain so that browsers skip a CORS preflight for it
JSON_TYPES = frozenset({"application/json", "text/plain"})
_CHUNK = 64 * 1024


def _kb(n: int) -> str:
    return f"{n // 1024} KB"


async def read_json(request: web.Request, limit: int, timeout_s: float) -> Any:
    """The parsed JSON body; 400 for a wrong content type, an oversize body or bad JSON."""
    if request.content_type not in JSON_TYPES:
        raise CollectorError.bad_request(
            "invalid_content_type", "Content-Type must be application/json."
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise CollectorError.bad_request(
            "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported (use gzip)."
        )
    declared = request.content_length
    if encoding != "gzip" and declared is not None and declared > limit:
        raise CollectorError.too_large(f"Request body over {_kb(limit)}.")
    try:
        async with asyncio.timeout(timeout_s):
            raw = await _read(request, limit, gzip=encoding == "gzip")
    except TimeoutError:
        raise CollectorError(
            408, "request_timeout", f"Request body not received within {timeout_s:g}s."
        ) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CollectorError.bad_request("invalid_json", f"Invalid JSON: {exc}") from None


async def _read(request: web.Request, limit: int, gzip: bool) -> bytes:
    out = bytearray()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    wire = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            break
        wire += len(chunk)
        if inflater is None:
            out += chunk
        else:
            if wire > limit:  # gzip that does not shrink is no smaller than its JSON
                raise CollectorError.too_large(f"Request body over {_kb(limit)}.")
            try:
                out += inflater.decompress(chunk, limit + 1 - len(out))
            except zlib.error as exc:
                raise CollectorError.bad_request(
                    "invalid_gzip", f"Body is not valid gzip: {exc}"
                ) from None
            if inflater.unconsumed_tail:
                raise CollectorError.too_large(f"Request body over {_kb(limit)} uncompressed.")
        if len(out) > limit:
            raise CollectorError.too_large(f"Request body over {_kb(limit)}.")
    if inflater is not None:
        try:
            out += inflater.flush()
        except zlib.error as exc:
            raise CollectorError.bad_request(
                "invalid_gzip", f"Body is not valid gzip: {exc}"
            ) from None
        if not inflater.eof:
            raise CollectorError.bad_request("invalid_gzip", "Body is truncated gzip.")
        if len(out) > limit:
            raise CollectorError.too_large(f"Request body over {_kb(limit)} uncompressed.")
    return bytes(out)
