"""Answers that need the other workers: a profile request forwarded to the worker that owns
its partition, the audiences API's statuses, sizes and members, the journeys API's
counts, and the broadcasts API's progress and previews, gathered from all.

Each worker holds the state of the partitions it owns. Workers find each other through the
profiles consumer group (`WorkerState.owner` / `workers`) and talk over this same web API:
the public Profile API when forwarding, internal endpoints (`STATE_PATH`, `MEMBERS_PATH`,
`JOURNEYS_PATH`, served by `api.views`) when gathering. Both ends of those are here.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import faust
import orjson
from faust.web import Request

from engage_stream.api import audiences as audience_api
from engage_stream.api.auth import basic_authorization
from engage_stream.api.errors import ApiError
from engage_stream.api.source import WorkerState
from engage_stream.broadcasts.recipients import Preview
from engage_stream.broadcasts.sending import Progress
from engage_stream.journeys.counts import Counts
from engage_stream.journeys.counts import add as add_counts
from engage_stream.profiles.record import ProfileRecord

log = logging.getLogger(__name__)

ROUTED_HEADER = "X-Engage-Routed"
STATE_PATH = "/v1/internal/audience-state"
MEMBERS_PATH = "/v1/internal/audience-members/{key}"
JOURNEYS_PATH = "/v1/internal/journey-counts"
BROADCASTS_PATH = "/v1/internal/broadcast-progress"
PREVIEW_PATH = "/v1/internal/broadcast-preview/{key}"


def local_state(state: WorkerState) -> dict[str, Any]:
    """This worker's part of the audiences' state, as `STATE_PATH` answers it."""
    return {"statuses": state.statuses(), "sizes": state.local_sizes()}


def local_journeys_body(state: WorkerState) -> bytes:
    """`JOURNEYS_PATH`'s answer: this worker's journey counts (journey -> name -> n)."""
    return orjson.dumps(state.local_journey_counts())


def local_broadcasts_body(state: WorkerState) -> bytes:
    """`BROADCASTS_PATH`'s answer: this worker's partitions' broadcast progress."""
    return orjson.dumps([asdict(p) for p in state.local_broadcast_progress()])


def local_members_body(members: list[ProfileRecord]) -> bytes:
    """`MEMBERS_PATH`'s answer: one stored profile record per line."""
    return b"\n".join(r.dumps() for r in members)


class Peers:
    """The other workers, over HTTP (the Faust app's client session)."""

    def __init__(self, app: faust.App, state: WorkerState, token: str) -> None:
        self._app = app
        self._state = state
        self._authorization = basic_authorization(token)

    async def forward(self, partition: int, request: Request) -> tuple[int, bytes]:
        """The owner's answer to a profile request, as (status, JSON body).

        Forwarded once: a request that arrives forwarded is not sent on again, so two
        workers that disagree about the owner during a rebalance cannot bounce it between
        them; the caller gets a 503 to retry instead."""
        state = self._state
        owner = None if request.headers.get(ROUTED_HEADER) else await state.owner(partition)
        if owner is None or owner == state.url:
            raise ApiError(
                503,
                "service_unavailable",
                f"Partition {partition} has no owner yet (rebalancing); retry shortly.",
            )
        headers = {
            "Authorization": request.headers.get("Authorization", ""),
            ROUTED_HEADER: "1",
        }
        url = owner + str(request.url.path_qs)
        async with self._app.http_client.get(url, headers=headers) as resp:
            return resp.status, await resp.read()

    async def _gather(self, path: str) -> list[bytes]:
        """GET `path` from every other worker that owns partitions (skipping unreachable ones:
        a worker mid-restart leaves a gap rather than failing the request)."""
        headers = {"Authorization": self._authorization}
        out = []
        for url in sorted(await self._state.workers() - {self._state.url}):
            try:
                async with self._app.http_client.get(url + path, headers=headers) as resp:
                    resp.raise_for_status()
                    out.append(await resp.read())
            except Exception as exc:
                log.warning("%s from %s unavailable: %s", path, url, exc)
        return out

    async def audience_state(self) -> tuple[dict[str, str], dict[str, int]]:
        """Statuses (the least advanced worker's) and sizes (summed) over every worker."""
        status_parts = [self._state.statuses()]
        sizes = self._state.local_sizes()
        for raw in await self._gather(STATE_PATH):
            part = orjson.loads(raw)
            status_parts.append(part["statuses"])
            for k, n in part["sizes"].items():
                sizes[k] = sizes.get(k, 0) + int(n)
        return audience_api.merge_statuses(status_parts), sizes

    async def audience_members(self, key: str) -> list[ProfileRecord]:
        """An audience's members on every worker."""
        members = await self._state.local_members(key)
        for raw in await self._gather(MEMBERS_PATH.format(key=key)):
            members.extend(ProfileRecord.loads(line) for line in raw.split(b"\n") if line)
        return members

    async def journey_counts(self) -> Counts:
        """Journey counts (`journeys.counts`) summed over every worker."""
        counts = self._state.local_journey_counts()
        for raw in await self._gather(JOURNEYS_PATH):
            add_counts(counts, orjson.loads(raw))
        return counts

    async def broadcast_progress(self) -> list[Progress]:
        """Every partition's broadcast progress, from every worker."""
        progress = self._state.local_broadcast_progress()
        for raw in await self._gather(BROADCASTS_PATH):
            progress.extend(Progress(**p) for p in orjson.loads(raw))
        return progress

    async def broadcast_preview(self, key: str, sample: int) -> Preview:
        """Who would receive broadcast `key` now, over every worker's partitions."""
        preview = await self._state.local_broadcast_preview(key, sample)
        path = PREVIEW_PATH.format(key=key) + f"?sample={sample}"
        for raw in await self._gather(path):
            preview.add(Preview(**orjson.loads(raw)), sample)
        return preview
