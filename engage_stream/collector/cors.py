"""CORS for browser SDKs calling the collector from web pages.

analytics-next posts `text/plain` (a "simple" request) but adds an Authorization header,
so browsers send a preflight first; both need the origin allowed. Retry-After must be
exposed, or a page cannot read it from a 429 / 503 and analytics-next retries blindly.
A request from an origin that is not allowed is refused (403) rather than processed
unseen: a browser would hide the answer, not the event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from engage_stream.collector.errors import CollectorError
from engage_stream.collector.settings import CollectorSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

EXPOSED = "Retry-After, X-RateLimit-Reset"
MAX_AGE_S = "86400"


def origin_allowed(config: CollectorSettings, origin: str) -> bool:
    return config.any_origin or origin.rstrip("/") in config.cors_origins


def cors_middleware(
    config: CollectorSettings,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not request.path.startswith("/v1/"):
            return await handler(request)
        if not origin_allowed(config, origin):
            err = CollectorError(403, "origin_not_allowed", "This origin may not send events here.")
            return web.Response(body=err.body(), status=err.status, content_type="application/json")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            requested = request.headers.get("Access-Control-Request-Headers")
            if requested:
                response.headers["Access-Control-Allow-Headers"] = requested
            response.headers["Access-Control-Max-Age"] = MAX_AGE_S
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
        response.headers.add("Vary", "Origin")
        return response

    return cors
