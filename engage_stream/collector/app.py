"""The collector's HTTP server: Segment's tracking endpoints, `/health`, `/metrics`.

`Collector(settings).start()` / `.stop()` run it on the current event loop, so the same
server runs as its own process (`engage-stream collector`) or inside another asyncio
program such as the worker. No access log: a request line can carry a write key (the
settings URL does), and keys are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from engage_stream import metrics as project_metrics
from engage_stream.api.server_log import quiet_bad_requests
from engage_stream.collector import metrics
from engage_stream.collector.auth import authenticate, basic_username, check_metrics_token
from engage_stream.collector.body import MAX_BATCH_BYTES, MAX_EVENT_BYTES, read_json
from engage_stream.collector.cors import cors_middleware
from engage_stream.collector.delivery import Delivery
from engage_stream.collector.errors import CollectorError, json_errors
from engage_stream.collector.messages import Call, prepare
from engage_stream.collector.ratelimit import RateLimiter
from engage_stream.collector.settings import CollectorSettings
from engage_stream.collector.write_keys import Source, WriteKeys
from engage_stream.config import Settings

log = logging.getLogger(__name__)

# Path name → what it is; the one-letter names are what analytics-next posts to.
ENDPOINTS: dict[str, str] = {
    "track": "track",
    "t": "track",
    "identify": "identify",
    "i": "identify",
    "group": "group",
    "g": "group",
    "page": "page",
    "p": "page",
    "screen": "screen",
    "s": "screen",
    "alias": "alias",
    "a": "alias",
    "batch": "batch",
    "b": "batch",
    "import": "batch",
}

SUCCESS = orjson.dumps({"success": True})


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


class Collector:
    def __init__(
        self,
        settings: Settings,
        config: CollectorSettings | None = None,
        write_keys: WriteKeys | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or CollectorSettings.from_env()
        self.write_keys = (
            write_keys if write_keys is not None else WriteKeys.from_settings(self.config)
        )
        self.delivery = Delivery(settings, self.config)
        self.limiter = RateLimiter()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[cors_middleware(self.config), json_errors])
        for name, kind in ENDPOINTS.items():
            app.router.add_post(f"/v1/{name}", self._endpoint(kind))
            app.router.add_route("OPTIONS", f"/v1/{name}", _no_preflight)
        app.router.add_post("/v1/{name}", _unknown_endpoint)
        app.router.add_get("/v1/projects/{write_key}/settings", self.browser_settings)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def start(self) -> None:
        """Listen, and connect to Kafka in the background (503s until it is reachable)."""
        if not len(self.write_keys):
            log.warning("collector: no write keys configured; every request will get 401")
        await self.delivery.start()
        self._runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.config.keepalive_timeout_s,
            # gzip is inflated by body.py, within the size limit (aiohttp's would not be)
            auto_decompress=False,
        )
        quiet_bad_requests()
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        log.info(
            "collector listening on %s (%d write keys; sources %s)",
            self.url,
            len(self.write_keys),
            ", ".join(self.write_keys.source_ids()) or "none",
        )

    async def stop(self) -> None:
        """Stop listening, finish the requests under way, produce what was accepted."""
        if self._runner is not None:
            await self._runner.shutdown()
        await self.delivery.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run(self) -> None:
        """Start, serve until cancelled, then stop: the body of a host program's task
        (a Faust `@app.task`, an `asyncio.create_task`)."""
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    def _endpoint(self, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return await self.handle(request, kind)

        return handle

    async def handle(self, request: web.Request, kind: str) -> web.Response:
        started = time.perf_counter()
        received_ms = time.time_ns() // 1_000_000
        source_id = ""
        status = 200
        try:
            header_key = basic_username(request.headers.get("Authorization"))
            source = authenticate(self.write_keys, header_key, None) if header_key else None
            if source is not None:
                source_id = source.source_id
                self._rate_limit(source)
            limit = MAX_BATCH_BYTES if kind == "batch" else MAX_EVENT_BYTES
            body = await read_json(request, limit, self.config.body_timeout_s)
            if source is None:
                source = authenticate(self.write_keys, None, body)
                source_id = source.source_id
                self._rate_limit(source)
            call = Call(source_id, received_ms, self._client_ip(request))
            prepared = prepare(kind, body, call, self.settings.topics)
            if prepared.records:
                await self.delivery.deliver(prepared.records, prepared.payload_bytes)
            metrics.batch_events.observe(prepared.events)
            for event_type, n in prepared.accepted.items():
                metrics.labelled(metrics.events_accepted, event_type, source_id).inc(n)
            for reason, n in prepared.rejected.items():
                metrics.labelled(metrics.events_rejected, reason, source_id).inc(n)
            return _json(SUCCESS)
        except CollectorError as err:
            status = err.status
            metrics.labelled(metrics.request_errors, err.code).inc()
            return _json(err.body(), err.status, err.headers)
        except Exception:
            # A bug, not the request: say so in JSON (SDKs retry a 500 a bounded number of
            # times) and keep serving.
            log.exception("collector: unexpected error handling /v1/%s", kind)
            status = 500
            metrics.labelled(metrics.request_errors, "internal_error").inc()
            err = CollectorError(500, "internal_error", "Unexpected error; see the collector log.")
            return _json(err.body(), 500)
        finally:
            metrics.labelled(metrics.requests, kind, str(status), source_id).inc()
            metrics.labelled(metrics.request_seconds, kind).observe(time.perf_counter() - started)

    def _rate_limit(self, source: Source) -> None:
        rate = source.rate_limit if source.rate_limit is not None else self.config.rate_limit
        wait = self.limiter.acquire(source.source_id, rate)
        if wait > 0:
            metrics.labelled(metrics.rate_limited, source.source_id).inc()
            raise CollectorError.too_many_requests(
                "rate_limited", f"Over {rate:g} requests/s for this write key.", wait
            )

    def _client_ip(self, request: web.Request) -> str | None:
        if self.config.trust_forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For")
            if forwarded:
                return forwarded.split(",")[0].strip()
        return request.remote

    async def browser_settings(self, request: web.Request) -> web.Response:
        """What analytics-next fetches from its CDN before it sends anything
        (`<cdnURL>/v1/projects/<writeKey>/settings`): pointing `cdnURL` at the collector
        sends its events here with no other setting."""
        key = request.match_info["write_key"]
        if self.write_keys.lookup(key) is None:
            err = CollectorError(404, "not_found", "No source has this write key.")
            return _json(err.body(), 404)
        scheme = (
            request.headers.get("X-Forwarded-Proto") if self.config.trust_forwarded_for else None
        )
        scheme = scheme or request.scheme
        return _json(
            orjson.dumps(
                {
                    "integrations": {
                        "Segment.io": {
                            "apiKey": key,
                            "apiHost": f"{request.host}/v1",
                            "protocol": scheme,
                            "unbundledIntegrations": [],
                            "addBundledMetadata": True,
                        }
                    },
                    "plan": {
                        kind: {"__default": {"enabled": True}}
                        for kind in ("track", "identify", "group")
                    },
                    "metrics": {"sampleRate": 0},
                    "remotePlugins": [],
                    "enabledMiddleware": {},
                }
            ),
            headers={"Cache-Control": "no-store"},
        )

    async def health(self, request: web.Request) -> web.Response:
        d = self.delivery
        body = {
            "status": "ready" if d.available else "unavailable",
            "kafka": {"available": d.available, "reason": d.reason, "broker": self.settings.broker},
            "topic": self.settings.topics.mixed,
            "inflight_bytes": d.inflight_bytes,
            "sources": self.write_keys.source_ids(),
        }
        return _json(orjson.dumps(body), 200 if d.available else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        if self.settings.metrics_token:
            try:
                check_metrics_token(
                    request.headers.get("Authorization"), self.settings.metrics_token
                )
            except CollectorError as err:
                return _json(err.body(), err.status, err.headers)
        return web.Response(
            body=project_metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


async def _unknown_endpoint(request: web.Request) -> web.Response:
    err = CollectorError(404, "not_found", f"No endpoint {request.path}.")
    return _json(err.body(), 404)


async def _no_preflight(request: web.Request) -> web.Response:
    """OPTIONS without an Origin (the CORS middleware answers real preflights)."""
    return web.Response(status=204, headers={"Allow": "POST, OPTIONS"})


async def serve(settings: Settings, config: CollectorSettings) -> None:
    """Run until SIGTERM / SIGINT, then stop gracefully."""
    collector = Collector(settings, config)
    await collector.start()
    print(
        f"collector: listening on {collector.url}, producing to {settings.topics.mixed} on "
        f"{settings.broker} ({len(collector.write_keys)} write keys)",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await collector.stop()
