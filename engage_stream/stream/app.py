"""The Faust app: lifecycle, web views and the clock tick, around two batched stages.

Data flow: input topics → ingest stage (validate, dead-letter, identity) → internal
`profile-events` topic keyed by canonical profile → profiles stage (RocksDB state via
`PartitionManager`, engine via `ProfileRuntime`) → output topics. Each stage is a
`BatchLoop` (see its module for why not a Faust agent) run as a Faust task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from faust.web import Request, Response, View

from engage_stream import metrics
from engage_stream.api import profiles as profile_api
from engage_stream.config import Settings
from engage_stream.identity.resolver import profile_id_for_lookup
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.transaction import Transaction
from engage_stream.stream.batch_consumer import BatchLoop
from engage_stream.stream.ingest_stage import IngestStage
from engage_stream.stream.partitions import PartitionManager
from engage_stream.stream.producing import OutgoingRecord, Sender
from engage_stream.stream.routing import OwnerDirectory, client_id_for, partition_for
from engage_stream.stream.runtime import TICK_KEY, ProfileRuntime

log = logging.getLogger(__name__)

ROUTED_HEADER = "X-Engage-Routed"


class Worker:
    """Everything one worker process runs; built before Faust starts, started by its tasks."""

    def __init__(self, settings: Settings, roles: set[str]) -> None:
        self.settings = settings
        self.roles = roles
        self.url = f"http://{settings.web_host}:{settings.web_port}"
        self.producer = Sender(settings.broker)
        self.partitions = PartitionManager(settings, self.producer)
        self.runtime = ProfileRuntime(settings, self.partitions)
        self.runtime.definitions_ready.set()
        self.owners = OwnerDirectory(
            settings.broker, settings.app_id, settings.topics.profile_events
        )
        common = dict(
            bootstrap=settings.broker,
            client_id=client_id_for(self.url),
            commit_interval_s=settings.commit_interval_s,
            max_records=settings.batch_size,
            wait_s=settings.batch_within_s,
        )
        self.ingest = BatchLoop(
            group_id=f"{settings.app_id}-ingest",
            topics=settings.topics.inputs(),
            handler=IngestStage(settings, self.producer).handle,
            **common,
        )
        self.profiles = BatchLoop(
            group_id=settings.app_id,
            topics=[settings.topics.profile_events],
            handler=self.runtime.handle,
            on_assigned=self._assigned,
            on_revoked=self._revoked,
            **common,
        )

    def owned(self) -> set[int]:
        return self.profiles.owned(self.settings.topics.profile_events)

    def _assigned(self, assigned: set[Any]) -> None:
        self.partitions.mark_rebalanced(tp.partition for tp in assigned)

    def _revoked(self, revoked: set[Any]) -> None:
        self.partitions.mark_rebalanced(self.owned() - {tp.partition for tp in revoked})

    async def tick(self) -> None:
        """Feed the wall clock into every owned partition so time-driven changes fire."""
        topic = self.settings.topics.profile_events
        await self.producer.send_many(
            [OutgoingRecord(topic, TICK_KEY, b"", None, p) for p in sorted(self.owned())]
        )
        for p, ps in list(self.partitions.open.items()):
            metrics.state_keys.labels(str(p)).set(ps.store.estimated_keys())
            metrics.state_bytes.labels(str(p)).set(ps.store.disk_bytes())


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
                loops.append(worker.profiles.run())
            await asyncio.gather(*loops)
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
            return self.json(
                {
                    "status": "ok",
                    "roles": sorted(worker.roles),
                    "owned": sorted(worker.owned()),
                    "partitions": sorted(worker.partitions.open),
                }
            )

    class Profiles(View):
        async def get(
            self, request: Request, space: str, collection: str, identifier: str, section: str
        ) -> Response:
            try:
                profile_api.check_basic_auth(
                    request.headers.get("Authorization"), settings.api_token
                )
                if collection != "users":
                    raise profile_api.not_found()
                id_type, _, value = identifier.partition(":")
                profile_id = profile_id_for_lookup(id_type, value)
                if profile_id is None:
                    raise profile_api.not_found()
                partition = partition_for(profile_id.encode(), settings.partitions)
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
                return self.bytes(
                    profile_api.dumps(err.body()),
                    status=err.status,
                    content_type="application/json",
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

    app.page("/metrics")(Metrics)
    app.page("/health")(Health)
    app.page("/v1/spaces/{space}/collections/{collection}/profiles/{identifier}/{section}")(
        Profiles
    )
    del topics
    return app
