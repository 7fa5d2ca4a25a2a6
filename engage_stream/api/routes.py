"""The web API's paths, and `register`: the one call the Faust app makes to serve them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from engage_stream.api import views
from engage_stream.api.proxy import (
    BROADCASTS_PATH,
    JOURNEYS_PATH,
    MEMBERS_PATH,
    PREVIEW_PATH,
    STATE_PATH,
    Peers,
)
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


def register(app: faust.App, worker: Worker) -> None:
    """Serve the API on `app`'s web server, answering for `worker`."""
    settings = worker.settings
    serve(app, WorkerSource(worker), space_id=settings.space_id, api_token=settings.api_token)


def serve(app: faust.App, state: WorkerState, *, space_id: str, api_token: str) -> None:
    """Serve every route of the API on `app`'s web server, answering from `state` (any
    `WorkerState`: the tests serve in-memory state)."""
    ctx = views.ApiContext(state, Peers(app, state, api_token), space_id, api_token)
    for path, view in ROUTES:
        app.page(path)(view.bound(ctx))
