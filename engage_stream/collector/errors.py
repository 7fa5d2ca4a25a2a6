"""Error answers in the shape Segment's SDKs read.

analytics-python raises `APIError(status, body["code"], body["message"])` and treats a
4xx other than 408/429 as final only when the body has both fields (a body without them
is retried as an unknown failure), so every error carries `code` and `message`; `success`
mirrors the `{"success": true}` of a 200. 429 and 503 carry `Retry-After` in whole
seconds, which all three SDKs honour before retrying.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CollectorError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps({"success": False, "code": self.code, "message": self.message})

    @classmethod
    def unauthorized(cls, message: str) -> CollectorError:
        return cls(401, "unauthorized", message, {"WWW-Authenticate": 'Basic realm="Segment"'})

    @classmethod
    def bad_request(cls, code: str, message: str) -> CollectorError:
        return cls(400, code, message)

    @classmethod
    def too_large(cls, message: str) -> CollectorError:
        return cls(400, "payload_too_large", message)

    @classmethod
    def unavailable(cls, message: str, retry_after_s: float) -> CollectorError:
        return cls(503, "service_unavailable", message, _retry_headers(retry_after_s))

    @classmethod
    def too_many_requests(cls, code: str, message: str, retry_after_s: float) -> CollectorError:
        return cls(429, code, message, _retry_headers(retry_after_s))


def _retry_headers(retry_after_s: float) -> dict[str, str]:
    wait = max(1, math.ceil(retry_after_s))
    return {"Retry-After": str(wait), "X-RateLimit-Reset": str(int(time.time()) + wait)}


ROUTER_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own answers — no such path (404), a method the path does not take (405),
    a request it cannot read (400) — in the shape the SDKs read, as every handler's are
    (an SDK given a text/plain 4xx retries it as an unknown failure)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = ROUTER_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal_error")
        message = f"No endpoint {request.path}." if exc.status == 404 else str(exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        err = CollectorError(exc.status, code, message, headers)
        return web.Response(
            body=err.body(), status=err.status, headers=err.headers, content_type="application/json"
        )
