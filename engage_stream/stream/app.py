"""The Faust app: lifecycle, web views and the clock tick, around two batched stages.

Data flow: input topics → ingest stage (validate, dead-letter, identity) → internal
`profile-events` topic keyed by canonical profile → profiles stage (RocksDB state via
`PartitionManager`, engine via `ProfileRuntime`) → output topics. Each stage is a
`BatchLoop` (see its module for why not a Faust agent) run as a Faust task.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time

import faust
import orjson
from faust.web import Request, Response, View

from engage_stream import metrics
from engage_stream.api import audiences as audience_api
from engage_stream.api import profiles as profile_api
from engage_stream.config import Settings
from engage_stream.identity.resolver import profile_id_for_lookup
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.transaction import Transaction
from engage_stream.stream import definitions_topic
from engage_stream.stream.worker import Worker

log = logging.getLogger(__name__)

ROUTED_HEADER = "X-Engage-Routed"
LOCAL_STATE_PATH = "/v1/internal/audience-state"
LOCAL_MEMBERS_PATH = "/v1/internal/audience-members/{key}"


def _token_b64(token: str) -> str:
    return base64.b64encode(f"{token}:".encode()).decode()


def create_app(settings: Settings, roles: set[str] | None = None) -> faust.App:
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.app_id}-web",
        broker=f"kafka://{settings.broker}",
        store="memory://",
        datadir=str(settings.data_dir / settings.app_id / "faust"),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        topic_allow_declare=False,
        web_enabled=True,
    )
    worker = Worker(settings, roles or {"ingest", "profiles"})
    app.engage_worker = worker  # type: ignore[attr-defined]
    topics = settings.topics

    @app.task
    async def run_stages() -> None:
        # Faust's logging set-up leaves the Kafka clients at DEBUG, which costs a log record
        # per produced message on the hot path.
        for name in ("aiokafka", "kafka"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.root.level))
        await worker.producer.start()
        try:
            loops = []
            if "ingest" in worker.roles:
                loops.append(worker.ingest.run())
            if "profiles" in worker.roles:
                loops.append(
                    definitions_topic.watch(
                        settings, worker.on_definitions, worker.runtime.definitions_ready
                    )
                )
                loops.append(worker.profiles.run())
            await asyncio.gather(*loops)
        except Exception as exc:
            # A stage that stops is a dead worker: say why and exit, so the supervisor
            # restarts it (its state is safe: nothing past the last checkpoint was committed).
            log.exception("a stream stage failed; stopping the worker")
            await app.crash(exc)
        finally:
            await worker.producer.stop()
            worker.partitions.close()

    @app.timer(settings.tick_interval_s)
    async def tick() -> None:
        if worker.producer.ready:
            await worker.tick()

    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    class Health(View):
        async def get(self, request: Request) -> Response:
            parts = worker.partitions.status()
            ready = worker.ready()
            return self.json(
                {
                    "status": "ready" if ready else "starting",
                    "roles": sorted(worker.roles),
                    "owned": sorted(worker.owned()),
                    "partitions": sorted(worker.partitions.open),
                    "partition_status": {str(p): st for p, st in parts.items()},
                    "definitions_ready": worker.runtime.definitions_ready.is_set(),
                }
            )

    def _error(view: View, err: profile_api.ApiError) -> Response:
        return view.bytes(
            profile_api.dumps(err.body()), status=err.status, content_type="application/json"
        )

    class Profiles(View):
        async def get(
            self, request: Request, space: str, collection: str, identifier: str, section: str
        ) -> Response:
            try:
                profile_api.check_basic_auth(
                    request.headers.get("Authorization"), settings.api_token
                )
                if space != settings.space_id:
                    raise profile_api.ApiError(404, "not_found", f"Space {space!r} was not found.")
                if collection != "users":
                    raise profile_api.not_found()
                id_type, _, value = identifier.partition(":")
                profile_id = profile_id_for_lookup(id_type, value)
                if profile_id is None:
                    raise profile_api.not_found()
                if not worker.producer.ready:
                    raise profile_api.ApiError(
                        503, "service_unavailable", "The worker is starting; retry shortly."
                    )
                partition = await worker.producer.partition_of(
                    topics.profile_events, profile_id.encode()
                )
                if partition not in worker.owned():
                    return await self._route(partition, request)
                ps = await worker.partitions.get(partition)
                body = profile_api.handle(
                    ProfileStore(Transaction(ps.store)),
                    profile_id,
                    section,
                    request.path,
                    dict(request.query),
                    now_ms=max(ps.clock, int(time.time() * 1000)),
                )
            except profile_api.ApiError as err:
                metrics.api_requests.labels(section, str(err.status)).inc()
                return _error(self, err)
            except Exception:
                log.exception("profile API request %s failed", request.path)
                metrics.api_requests.labels(section, "500").inc()
                return _error(
                    self, profile_api.ApiError(500, "internal_error", "Internal server error.")
                )
            metrics.api_requests.labels(section, "200").inc()
            return self.bytes(profile_api.dumps(body), content_type="application/json")

        async def _route(self, partition: int, request: Request) -> Response:
            """A profile owned by another worker: proxy the request to it, once."""
            owner = (
                None if request.headers.get(ROUTED_HEADER) else await worker.owners.owner(partition)
            )
            if owner is None or owner == worker.url:
                raise profile_api.ApiError(
                    503,
                    "service_unavailable",
                    f"Partition {partition} has no owner yet (rebalancing); retry shortly.",
                )
            headers = {
                "Authorization": request.headers.get("Authorization", ""),
                ROUTED_HEADER: "1",
            }
            async with app.http_client.get(
                owner + str(request.url.path_qs), headers=headers
            ) as resp:
                return self.bytes(
                    await resp.read(), status=resp.status, content_type="application/json"
                )

    async def _check_auth(request: Request) -> None:
        profile_api.check_basic_auth(request.headers.get("Authorization"), settings.api_token)

    async def _from_other_workers(path: str) -> list[bytes]:
        """GET `path` from every other worker that owns partitions (skipping unreachable ones:
        a worker mid-restart leaves a gap rather than failing the request)."""
        headers = {"Authorization": f"Basic {_token_b64(settings.api_token)}"}
        out = []
        for url in sorted(await worker.owners.workers() - {worker.url}):
            try:
                async with app.http_client.get(url + path, headers=headers) as resp:
                    resp.raise_for_status()
                    out.append(await resp.read())
            except Exception as exc:
                log.warning("%s from %s unavailable: %s", path, url, exc)
        return out

    async def _cluster_state() -> tuple[dict[str, str], dict[str, int]]:
        """Statuses and sizes over every worker (each owns some partitions)."""
        status_parts = [worker.statuses()]
        sizes = worker.local_sizes()
        for raw in await _from_other_workers(LOCAL_STATE_PATH):
            part = orjson.loads(raw)
            status_parts.append(part["statuses"])
            for k, n in part["sizes"].items():
                sizes[k] = sizes.get(k, 0) + int(n)
        return audience_api.merge_statuses(status_parts), sizes

    class LocalAudienceState(View):
        async def get(self, request: Request) -> Response:
            try:
                await _check_auth(request)
            except profile_api.ApiError as err:
                return _error(self, err)
            return self.json({"statuses": worker.statuses(), "sizes": worker.local_sizes()})

    class Audiences(View):
        async def get(self, request: Request) -> Response:
            try:
                await _check_auth(request)
                status, sizes = await _cluster_state()
                kind = (
                    "computed_trait"
                    if request.query.get("kind") == "computed_trait"
                    else "audience"
                )
                body = audience_api.list_body(worker.catalog, status, sizes, kind)
            except profile_api.ApiError as err:
                return _error(self, err)
            return self.bytes(profile_api.dumps(body), content_type="application/json")

    class Audience(View):
        async def get(self, request: Request, key: str) -> Response:
            try:
                await _check_auth(request)
                status, sizes = await _cluster_state()
                body = audience_api.one_body(worker.catalog, status, sizes, key)
            except profile_api.ApiError as err:
                return _error(self, err)
            return self.bytes(profile_api.dumps(body), content_type="application/json")

    class LocalMembers(View):
        async def get(self, request: Request, key: str) -> Response:
            try:
                await _check_auth(request)
            except profile_api.ApiError as err:
                return _error(self, err)
            members = await worker.local_members(key)
            return self.bytes(b"\n".join(r.dumps() for r in members), content_type="text/plain")

    class AudienceMembers(View):
        """CSV export of an audience's members (reference §7 formats), from every worker."""

        async def get(self, request: Request, key: str) -> Response:
            from engage_stream.outputs.csv_export import export_audience_csv

            try:
                await _check_auth(request)
                if worker.catalog.get(key) is None:
                    raise profile_api.ApiError(404, "not_found", f"Audience {key!r} was not found.")
                fmt = request.query.get("format", "formatted")
                if fmt not in ("formatted", "unformatted"):
                    raise profile_api.ApiError(
                        400, "validation_error", "format must be formatted or unformatted"
                    )
            except profile_api.ApiError as err:
                return _error(self, err)
            traits = [t for t in request.query.get("traits", "").split(",") if t] or None
            members = await worker.local_members(key)
            for raw in await _from_other_workers(LOCAL_MEMBERS_PATH.format(key=key)):
                members.extend(ProfileRecord.loads(line) for line in raw.split(b"\n") if line)
            members.sort(key=lambda r: r.profile_id)
            buf = io.StringIO()
            export_audience_csv(members, key, fmt, traits, buf)  # type: ignore[arg-type]
            return self.bytes(buf.getvalue().encode(), content_type="text/csv")

    app.page(LOCAL_STATE_PATH)(LocalAudienceState)
    app.page(LOCAL_MEMBERS_PATH)(LocalMembers)
    app.page("/v1/audiences")(Audiences)
    app.page("/v1/audiences/{key}")(Audience)
    app.page("/v1/audiences/{key}/members.csv")(AudienceMembers)
    app.page("/metrics")(Metrics)
    app.page("/health")(Health)
    app.page("/v1/spaces/{space}/collections/{collection}/profiles/{identifier}/{section}")(
        Profiles
    )
    return app
