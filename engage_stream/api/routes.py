"""The web API's paths, and `register`: the one call the Faust app makes to serve them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import faust
import orjson
from aiohttp import web

from engage_stream.api import views
from engage_stream.api.auth import warn_about_settings
from engage_stream.api.proxy import (
    BROADCASTS_PATH,
    JOURNEYS_PATH,
    MEMBERS_PATH,
    PREVIEW_PATH,
    STATE_PATH,
    Peers,
)
from engage_stream.api.server_log import quiet_bad_requests
from engage_stream.api.source import WorkerSource, WorkerState

if TYPE_CHECKING:
    from engage_stream.stream.worker import Worker

ROUTES: tuple[tuple[str, type[views.ApiView]], ...] = (
    (STATE_PATH, views.LocalAudienceState),
    (MEMBERS_PATH, views.LocalMembers),
    (JOURNEYS_PATH, views.LocalJourneyCounts),
    (BROADCASTS_PATH, views.LocalBroadcastProgress),
    (PREVIEW_PATH, views.LocalBroadcastPreview),
    ("/v1/audiences", views.Audiences),
    ("/v1/audiences/{key}", views.Audience),
    ("/v1/audiences/{key}/members.csv", views.AudienceMembers),
    ("/v1/journeys", views.Journeys),
    ("/v1/journeys/{key}", views.Journey),
    ("/v1/broadcasts", views.Broadcasts),
    ("/v1/broadcasts/{key}", views.Broadcast),
    ("/v1/broadcasts/{key}/preview", views.BroadcastPreview),
    ("/v1/broadcasts/{key}/{action}", views.BroadcastAction),
    ("/metrics", views.Metrics),
    ("/health", views.Health),
    (
        "/v1/spaces/{space}/collections/{collection}/profiles/{identifier}/{section}",
        views.Profiles,
    ),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own answers — no such path (404), a method no route takes (405), a
    request it cannot read (400) — in Segment's JSON error shape, as every view's are."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {"error": {"code": views.error_code(exc.status), "message": exc.reason}}
        if exc.status == 404:
            body["error"]["message"] = f"No resource at {request.path}."
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return web.Response(
            body=orjson.dumps(body),
            status=exc.status,
            headers=headers,
            content_type="application/json",
        )


def register(app: faust.App, worker: Worker) -> None:
    """Serve the API on `app`'s web server, answering for `worker`."""
    settings = worker.settings
    warn_about_settings(settings.api_token, settings.internal_secret)
    serve(
        app,
        WorkerSource(worker),
        space_id=settings.space_id,
        api_token=settings.api_token,
        internal_secret=settings.internal_secret,
        metrics_token=settings.metrics_token,
    )


def serve(
    app: faust.App,
    state: WorkerState,
    *,
    space_id: str,
    api_token: str,
    internal_secret: str = "",
    metrics_token: str = "",
) -> None:
    """Serve every route of the API on `app`'s web server, answering from `state` (any
    `WorkerState`: the tests serve in-memory state)."""
    ctx = views.ApiContext(
        state,
        Peers(app, state, internal_secret),
        space_id,
        api_token,
        internal_secret=internal_secret,
        metrics_token=metrics_token,
    )
    app.web.web_app.middlewares.append(json_errors)
    quiet_bad_requests()
    for path, view in ROUTES:
        app.page(path)(view.bound(ctx))
