"""Answers that need the other workers: a profile request forwarded to the worker that owns
its partition, the audiences API's statuses, sizes and members, the journeys API's
counts, and the broadcasts API's progress and previews, gathered from all.

Each worker holds the state of the partitions it owns. Workers find each other through the
profiles consumer group (`WorkerState.owner` / `assignment`) and talk over this same web
API: the public Profile API when forwarding, internal endpoints (`STATE_PATH`,
`MEMBERS_PATH`, `JOURNEYS_PATH`, served by `api.views`) when gathering. Both ends of those
are here.

Trust (issue #15, #16): the consumer group says who owns what, but anything that reaches
the broker can join it. So a peer is asked with a request signed with the cluster's
internal secret (`api.peer_auth`; never the client's token, which stays here), its answer
is used only if it is signed back, and even a genuine answer counts only for the
partitions the group assigns to that peer: its sizes and counts come per partition and a
partition it does not own, or that another worker already answered for, is ignored.
Without an internal secret a worker answers from its own partitions only and refuses to
forward (503): proxying needs the secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

import aiohttp
import faust
import orjson
from faust.web import Request
from yarl import URL

from engage_stream.api import audiences as audience_api
from engage_stream.api.errors import ApiError
from engage_stream.api.peer_auth import (
    ANSWER_HEADER,
    NONCE_HEADER,
    answer_is_genuine,
    is_peer_request,
    sign_request,
)
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
PEER_TIMEOUT_S = 10.0  # a peer that takes longer is treated as gone (its partitions: 503)
NO_SECRET = (
    "ENGAGE_INTERNAL_SECRET is not set: this worker does not ask its peers, and answers "
    "only for its own partitions"
)


def local_state(state: WorkerState) -> dict[str, Any]:
    """This worker's part of the audiences' state, as `STATE_PATH` answers it: statuses,
    and sizes per partition (so the asker can keep only the partitions this worker owns)."""
    sizes = state.local_sizes_by_partition()
    return {"statuses": state.statuses(), "sizes": {str(p): s for p, s in sizes.items()}}


def local_journeys_body(state: WorkerState) -> bytes:
    """`JOURNEYS_PATH`'s answer: this worker's journey counts per partition
    (partition -> journey -> name -> n)."""
    counts = state.local_journey_counts_by_partition()
    return orjson.dumps({str(p): c for p, c in counts.items()})


def local_broadcasts_body(state: WorkerState) -> bytes:
    """`BROADCASTS_PATH`'s answer: this worker's partitions' broadcast progress."""
    return orjson.dumps([asdict(p) for p in state.local_broadcast_progress()])


def local_members_body(members: list[ProfileRecord]) -> bytes:
    """`MEMBERS_PATH`'s answer: one stored profile record per line."""
    return b"\n".join(r.dumps() for r in members)


def trusted_parts(
    parts: Mapping[str, Any], owned_by_peer: set[int], counted: set[int]
) -> dict[int, Any]:
    """Of a peer's per-partition answer, the partitions it may speak for: assigned to it
    and not yet answered for (by this worker or another peer). Adds them to `counted`."""
    out: dict[int, Any] = {}
    for raw, value in parts.items():
        try:
            p = int(raw)
        except ValueError:
            continue
        if p in owned_by_peer and p not in counted:
            out[p] = value
            counted.add(p)
    return out


class Peers:
    """The other workers, over HTTP (the Faust app's client session)."""

    def __init__(self, app: faust.App, state: WorkerState, secret: str) -> None:
        self._app = app
        self._state = state
        self._secret = secret
        self._warned_no_secret = False

    def _no_secret(self) -> None:
        if not self._warned_no_secret:
            log.warning("%s; set it (the same value) on every worker of the cluster", NO_SECRET)
            self._warned_no_secret = True

    async def _ask(self, url: str, path_qs: str) -> tuple[int, bytes] | None:
        """(status, body) of a signed GET of `path_qs` (URL-encoded, as sent and signed) to
        a peer, or None when its answer is not signed with the cluster's secret (a member
        that is no worker of ours). Raises on a network failure."""
        headers = sign_request(self._secret, "GET", path_qs)
        headers[ROUTED_HEADER] = "1"
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        target = URL(url + path_qs, encoded=True)  # as signed: no re-quoting on the way
        async with self._app.http_client.get(target, headers=headers, timeout=timeout) as r:
            body = await r.read()
            if not answer_is_genuine(
                self._secret, headers[NONCE_HEADER], r.status, body, r.headers.get(ANSWER_HEADER)
            ):
                log.warning("%s from %s ignored: not signed with the internal secret", path_qs, url)
                return None
            return r.status, body

    async def forward(self, partition: int, request: Request) -> tuple[int, bytes]:
        """The owner's answer to a profile request, as (status, JSON body).

        Forwarded once: a request that arrives forwarded is not sent on again, so two
        workers that disagree about the owner during a rebalance cannot bounce it between
        them; the caller gets a 503 to retry instead, as when the owner is unreachable
        (dead, its session not yet expired) or cannot prove it is one of ours."""
        state = self._state
        headers = request.headers
        routed = headers.get(ROUTED_HEADER) or is_peer_request(headers)
        owner = None if routed else await state.owner(partition)
        if owner is None or owner == state.url:
            raise ApiError.unavailable(
                f"Partition {partition} has no owner yet (rebalancing); retry shortly."
            )
        if not self._secret:
            self._no_secret()
            raise ApiError.unavailable(
                f"Partition {partition} is owned by another worker and this worker has no "
                "internal secret to ask it (ENGAGE_INTERNAL_SECRET)."
            )
        try:
            answer = await self._ask(owner, request.url.raw_path_qs)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("partition %d's owner %s is not answering: %r", partition, owner, exc)
            answer = None
        if answer is None:
            raise ApiError.unavailable(
                f"Partition {partition}'s owner is not answering (rebalancing); retry shortly."
            )
        return answer

    async def _gather(self, path: str) -> list[tuple[set[int], bytes]]:
        """GET `path` from every other worker that owns partitions: (its partitions, its
        answer) for each genuine 200 answer, skipping unreachable or unverifiable peers (a
        worker mid-restart leaves a gap rather than failing the request)."""
        state = self._state
        others = {url: ps for url, ps in (await state.assignment()).items() if url != state.url}
        if not others:
            return []
        if not self._secret:
            self._no_secret()
            return []
        out = []
        for url in sorted(others):
            try:
                answer = await self._ask(url, path)
            except Exception as exc:
                log.warning("%s from %s unavailable: %r", path, url, exc)
                continue
            if answer is None:
                continue
            status, body = answer
            if status != 200:
                log.warning("%s from %s answered %d", path, url, status)
                continue
            out.append((others[url], body))
        return out

    def _own(self) -> set[int]:
        return set(self._state.health().owned)

    async def audience_state(self) -> tuple[dict[str, str], dict[str, int]]:
        """Statuses (the least advanced worker's) and sizes (summed per partition, each
        partition from its owner) over every worker."""
        status_parts = [self._state.statuses()]
        by_partition = self._state.local_sizes_by_partition()
        counted = set(by_partition)
        for owned, raw in await self._gather(STATE_PATH):
            part = orjson.loads(raw)
            status_parts.append(part["statuses"])
            by_partition.update(trusted_parts(part["sizes"], owned, counted))
        sizes: dict[str, int] = {}
        for part_sizes in by_partition.values():
            for k, n in part_sizes.items():
                sizes[k] = sizes.get(k, 0) + int(n)
        return audience_api.merge_statuses(status_parts), sizes

    async def audience_members(self, key: str) -> list[ProfileRecord]:
        """An audience's members on every worker, each from the worker owning its
        partition."""
        members = await self._state.local_members(key)
        counted = self._own()
        for owned, raw in await self._gather(MEMBERS_PATH.format(key=quote(key, safe=""))):
            allowed = owned - counted
            counted |= allowed
            for line in raw.split(b"\n"):
                if line:
                    rec = ProfileRecord.loads(line)
                    if await self._state.partition_of(rec.profile_id) in allowed:
                        members.append(rec)
        return members

    async def journey_counts(self) -> Counts:
        """Journey counts (`journeys.counts`) summed over every worker's partitions."""
        by_partition = self._state.local_journey_counts_by_partition()
        counted = set(by_partition)
        for owned, raw in await self._gather(JOURNEYS_PATH):
            by_partition.update(trusted_parts(orjson.loads(raw), owned, counted))
        counts: Counts = {}
        for part in by_partition.values():
            add_counts(counts, part)
        return counts

    async def broadcast_progress(self) -> list[Progress]:
        """Every partition's broadcast progress, each from the worker owning it."""
        progress = self._state.local_broadcast_progress()
        counted = self._own()
        for owned, raw in await self._gather(BROADCASTS_PATH):
            allowed = owned - counted
            counted |= allowed
            progress.extend(
                Progress(**p) for p in orjson.loads(raw) if p.get("partition") in allowed
            )
        return progress

    async def broadcast_preview(self, key: str, sample: int) -> Preview:
        """Who would receive broadcast `key` now, over every worker's partitions (a
        preview is a sample, not per partition: it is taken from genuine peers as is)."""
        preview = await self._state.local_broadcast_preview(key, sample)
        path = PREVIEW_PATH.format(key=quote(key, safe="")) + f"?sample={sample}"
        for _owned, raw in await self._gather(path):
            preview.add(Preview(**orjson.loads(raw)), sample)
        return preview
