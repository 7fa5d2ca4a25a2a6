"""The web API's Faust views: check the request, ask the pure handlers (`api.profiles`,
`api.audiences`, `api.journeys`) or the other workers (`api.proxy`), write the response.

Faust creates each view itself, from its class, so what a view reads (`ApiContext`) is
bound to the class: `routes.serve` registers `ApiView.bound(ctx)`, a subclass per worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, ClassVar, cast

import orjson
from faust.web import Request, Response, View
from faust.web.exceptions import WebError

from engage_stream import metrics
from engage_stream.api import audiences as audience_api
from engage_stream.api import broadcasts as broadcast_api
from engage_stream.api import journeys as journey_api
from engage_stream.api import profiles as profile_api
from engage_stream.api.auth import check_basic_auth, check_bearer
from engage_stream.api.errors import RETRY_AFTER_S, ApiError
from engage_stream.api.peer_auth import (
    ANSWER_HEADER,
    ReplayGuard,
    is_peer_request,
    sign_answer,
    verify_request,
)
from engage_stream.api.proxy import (
    Peers,
    local_broadcasts_body,
    local_journeys_body,
    local_members_body,
    local_state,
)
from engage_stream.api.source import WorkerState
from engage_stream.definitions.catalog import Catalog
from engage_stream.journeys.catalog import JourneyCatalog
from engage_stream.journeys.counts import Counts
from engage_stream.stream import definitions_topic

log = logging.getLogger(__name__)

AudiencesBody = Callable[[Catalog, Mapping[str, str], Mapping[str, int]], dict[str, Any]]
JourneysBody = Callable[[JourneyCatalog, Counts], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ApiContext:
    state: WorkerState
    peers: Peers
    space_id: str
    api_token: str
    internal_secret: str = ""  # peers' HMAC key (`api.peer_auth`); "" = no peer requests
    metrics_token: str = ""  # "" = /metrics open; else it wants `Bearer <metrics_token>`
    replays: ReplayGuard = field(default_factory=ReplayGuard)


ERROR_CODES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "authentication_error",
    404: "not_found",
    405: "invalid_request_error",
    429: "rate_limit_error",
}


def error_code(status: int) -> str:
    """Segment's error code for an HTTP status (reference §7)."""
    return ERROR_CODES.get(status, "internal_error" if status >= 500 else "invalid_request_error")


class ApiView(View):
    ctx: ClassVar[ApiContext]

    @classmethod
    def bound(cls, ctx: ApiContext) -> type[ApiView]:
        """This view serving one worker (the subclass keeps the view's name and doc)."""
        return cast(type[ApiView], type(cls.__name__, (cls,), {"ctx": ctx, "__doc__": cls.__doc__}))

    def authorize(self, request: Request) -> str | None:
        """A client's request (the access token) or a peer's (signed with the internal
        secret, `api.peer_auth`): the nonce its answer is signed with when a peer's."""
        if is_peer_request(request.headers):
            return self.authorize_peer(request)
        check_basic_auth(request.headers.get("Authorization"), self.ctx.api_token)
        return None

    def authorize_peer(self, request: Request) -> str:
        """A 401 unless the request is a peer's; the internal endpoints take no other."""
        ctx = self.ctx
        if not is_peer_request(request.headers):
            raise ApiError(401, "authentication_error", "Internal endpoint: peers only.")
        path_qs = request.url.raw_path_qs  # as the peer signed it: URL-encoded
        return verify_request(
            ctx.internal_secret, request.headers, request.method, path_qs, ctx.replays
        )

    def signed(self, response: Response, nonce: str | None) -> Response:
        """`response`, signed for the peer that asked (`nonce`) so it can tell it from a
        stranger's."""
        if nonce is not None:
            body = cast(bytes, response.body)
            response.headers[ANSWER_HEADER] = sign_answer(
                self.ctx.internal_secret, nonce, response.status, body
            )
        return response

    def json_bytes(self, body: dict[str, Any], status: int = 200) -> Response:
        return self.bytes(orjson.dumps(body), status=status, content_type="application/json")

    def error(self, err: ApiError) -> Response:
        response = self.json_bytes(err.body(), err.status)
        response.headers.update(err.headers)
        return response

    async def on_request_error(self, request: Request, exc: WebError) -> Response:
        """Faust's own errors (a method the view has not: 405) in Segment's shape."""
        status = exc.code or 500
        err = ApiError(status, error_code(status), str(exc.detail))
        if status == 405:
            err.headers["Allow"] = ", ".join(sorted(self.methods))
        return self.error(err)


class Metrics(ApiView):
    """Prometheus's scrape; behind `Bearer <metrics_token>` when one is set (the audience
    sizes and definition keys in it may be worth hiding)."""

    async def get(self, request: Request) -> Response:
        if self.ctx.metrics_token:
            try:
                check_bearer(request.headers.get("Authorization"), self.ctx.metrics_token)
            except ApiError as err:
                return self.error(err)
        return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")


class Health(ApiView):
    async def get(self, request: Request) -> Response:
        h = self.ctx.state.health()
        return self.json(
            {
                "status": "ready" if h.ready else "starting",
                "roles": sorted(h.roles),
                "owned": sorted(h.owned),
                "partitions": sorted(h.open),
                "partition_status": {str(p): st for p, st in h.partition_status.items()},
                "definitions_ready": h.definitions_ready,
            }
        )


class Profiles(ApiView):
    """The Profile API (reference §7) for a profile in any partition: answered here when
    this worker owns it, else by its owner."""

    async def get(
        self, request: Request, space: str, collection: str, identifier: str, section: str
    ) -> Response:
        ctx = self.ctx
        nonce = None
        try:
            nonce = self.authorize(request)
            if not ctx.state.accepting():
                # before resolving: an identifier missing from a map still loading is not
                # a profile that does not exist (a 404 would be a lie)
                raise ApiError.unavailable("The worker is starting; retry shortly.")
            profile_id = profile_api.profile_id_of(
                ctx.space_id, space, collection, identifier, ctx.state.resolve
            )
            partition = await ctx.state.partition_of(profile_id)
            if not ctx.state.owns(partition):
                # counted by the owner, which answers it
                status, body = await ctx.peers.forward(partition, request)
                response = self.bytes(body, status=status, content_type="application/json")
                if status == 503:
                    response.headers["Retry-After"] = str(RETRY_AFTER_S)
                return self.signed(response, nonce)
            part = await ctx.state.read(partition)
            answer = profile_api.handle(
                part.store,
                profile_id,
                section,
                request.path,
                dict(request.query),
                now_ms=max(part.clock, int(time.time() * 1000)),
                journey_catalog=ctx.state.catalog.journeys,
            )
        except ApiError as err:
            metrics.api_requests.labels(section, str(err.status)).inc()
            return self.signed(self.error(err), nonce)
        except Exception:
            log.exception("profile API request %s failed", request.path)
            metrics.api_requests.labels(section, "500").inc()
            err = ApiError(500, "internal_error", "Internal server error.")
            return self.signed(self.error(err), nonce)
        metrics.api_requests.labels(section, "200").inc()
        return self.signed(self.json_bytes(answer), nonce)


class _AudiencesView(ApiView):
    async def answer(self, request: Request, shape: AudiencesBody) -> Response:
        """The audiences' statuses and sizes over every worker, shaped by `shape`."""
        try:
            self.authorize(request)
            status, sizes = await self.ctx.peers.audience_state()
            body = shape(self.ctx.state.catalog, status, sizes)
        except ApiError as err:
            return self.error(err)
        return self.json_bytes(body)


class Audiences(_AudiencesView):
    async def get(self, request: Request) -> Response:
        kind = "computed_trait" if request.query.get("kind") == "computed_trait" else "audience"
        return await self.answer(request, partial(audience_api.list_body, kind=kind))


class Audience(_AudiencesView):
    async def get(self, request: Request, key: str) -> Response:
        return await self.answer(request, partial(audience_api.one_body, key=key))


class AudienceMembers(ApiView):
    """CSV export of an audience's members (reference §7 formats), from every worker."""

    async def get(self, request: Request, key: str) -> Response:
        try:
            self.authorize(request)
            export = audience_api.members_export(self.ctx.state.catalog, key, request.query)
        except ApiError as err:
            return self.error(err)
        members = await self.ctx.peers.audience_members(key)
        return self.bytes(audience_api.members_csv(export, members), content_type="text/csv")


class _JourneysView(ApiView):
    async def answer(self, request: Request, shape: JourneysBody, key: str = "") -> Response:
        """The journeys in force with their counts over every worker, shaped by `shape`."""
        try:
            self.authorize(request)
            journeys = self.ctx.state.catalog.journeys
            if key:
                journey_api.check_known(journeys, key)
            body = shape(journeys, await self.ctx.peers.journey_counts())
        except ApiError as err:
            return self.error(err)
        except Exception:
            log.exception("journeys API request %s failed", request.path)
            return self.error(ApiError(500, "internal_error", "Internal server error."))
        return self.json_bytes(body)


class Journeys(_JourneysView):
    async def get(self, request: Request) -> Response:
        return await self.answer(request, journey_api.list_body)


class Journey(_JourneysView):
    async def get(self, request: Request, key: str) -> Response:
        return await self.answer(request, partial(journey_api.one_body, key=key), key)


class _BroadcastsView(ApiView):
    """Broadcasts: read across every worker, edits published to the definitions topic
    (workers pick them up as they do `apply`'s)."""

    async def guarded(self, request: Request, work: Callable[[], Any]) -> Response:
        try:
            self.authorize(request)
            return self.json_bytes(await work())
        except ApiError as err:
            return self.error(err)
        except Exception:
            log.exception("broadcasts API request %s failed", request.path)
            return self.error(ApiError(500, "internal_error", "Internal server error."))

    async def publish(self, plan: Any) -> None:
        settings = self.ctx.state.settings
        if plan.publish:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, definitions_topic.publish, settings, plan)

    async def status(self, key: str) -> Any:
        state = self.ctx.state
        entry = broadcast_api.entry_of(state.catalog.broadcasts, key)
        return broadcast_api.status(
            entry, await self.ctx.peers.broadcast_progress(), state.settings
        )


class Broadcasts(_BroadcastsView):
    async def get(self, request: Request) -> Response:
        async def work() -> dict[str, Any]:
            state = self.ctx.state
            progress = await self.ctx.peers.broadcast_progress()
            return broadcast_api.list_body(state.catalog.broadcasts, progress, state.settings)

        return await self.guarded(request, work)

    async def post(self, request: Request) -> Response:
        async def work() -> dict[str, Any]:
            state = self.ctx.state
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, "invalid_request", "The body is not JSON.") from exc
            audiences = {e.definition.key for e in state.catalog if e.definition.kind == "audience"}
            plan = broadcast_api.create_plan(
                state.definition_records(), body, audiences, int(time.time() * 1000)
            )
            await self.publish(plan)
            rec = plan.publish[0]
            return {"key": rec.key, "version": rec.version, "status": rec.body["status"]}

        return await self.guarded(request, work)


class Broadcast(_BroadcastsView):
    async def get(self, request: Request, key: str) -> Response:
        async def work() -> dict[str, Any]:
            return (await self.status(key)).model_dump()

        return await self.guarded(request, work)


class BroadcastPreview(_BroadcastsView):
    async def get(self, request: Request, key: str) -> Response:
        async def work() -> dict[str, Any]:
            entry = broadcast_api.entry_of(self.ctx.state.catalog.broadcasts, key)
            try:
                sample = max(0, min(100, int(request.query.get("sample", 10))))
            except ValueError as exc:
                raise ApiError(400, "invalid_request", "sample: a number") from exc
            preview = await self.ctx.peers.broadcast_preview(key, sample)
            return broadcast_api.preview_body(entry, preview)

        return await self.guarded(request, work)


class BroadcastAction(_BroadcastsView):
    async def post(self, request: Request, key: str, action: str) -> Response:
        async def work() -> dict[str, Any]:
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw.strip() else {}
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, "invalid_request", "The body is not JSON.") from exc
            current = await self.status(key)
            plan = broadcast_api.action_plan(
                self.ctx.state.definition_records(),
                key,
                action,
                current,
                body,
                int(time.time() * 1000),
            )
            await self.publish(plan)
            new = plan.publish[0].body["status"] if plan.publish else current.status.lower()
            return {"key": key, "action": action, "status": new}

        return await self.guarded(request, work)


class LocalBroadcastProgress(ApiView):
    """This worker's part of another worker's `Peers.broadcast_progress`."""

    async def get(self, request: Request) -> Response:
        try:
            nonce = self.authorize_peer(request)
        except ApiError as err:
            return self.error(err)
        body = local_broadcasts_body(self.ctx.state)
        return self.signed(self.bytes(body, content_type="application/json"), nonce)


class LocalBroadcastPreview(ApiView):
    """This worker's part of another worker's `Peers.broadcast_preview`."""

    async def get(self, request: Request, key: str) -> Response:
        try:
            nonce = self.authorize_peer(request)
        except ApiError as err:
            return self.error(err)
        try:
            sample = int(request.query.get("sample", 10))
        except ValueError:
            err = ApiError(400, "invalid_request_error", "sample: a number")
            return self.signed(self.error(err), nonce)
        preview = await self.ctx.state.local_broadcast_preview(key, sample)
        return self.signed(self.json_bytes(asdict(preview)), nonce)


class LocalAudienceState(ApiView):
    """This worker's part of another worker's `Peers.audience_state`."""

    async def get(self, request: Request) -> Response:
        try:
            nonce = self.authorize_peer(request)
        except ApiError as err:
            return self.error(err)
        return self.signed(self.json_bytes(local_state(self.ctx.state)), nonce)


class LocalMembers(ApiView):
    """This worker's part of another worker's `Peers.audience_members`."""

    async def get(self, request: Request, key: str) -> Response:
        try:
            nonce = self.authorize_peer(request)
        except ApiError as err:
            return self.error(err)
        members = await self.ctx.state.local_members(key)
        response = self.bytes(local_members_body(members), content_type="text/plain")
        return self.signed(response, nonce)


class LocalJourneyCounts(ApiView):
    """This worker's part of another worker's `Peers.journey_counts`."""

    async def get(self, request: Request) -> Response:
        try:
            nonce = self.authorize_peer(request)
        except ApiError as err:
            return self.error(err)
        body = local_journeys_body(self.ctx.state)
        return self.signed(self.bytes(body, content_type="application/json"), nonce)
