"""The Faust app: topics, the two agents, the clock tick and the web views — wiring only.

Data flow: input topics → `ingest` agent (validate, dead-letter, identity) → internal
`profile-events` topic keyed by canonical profile → `profiles` agent (RocksDB state via
`PartitionManager`, engine via `ProfileRuntime`) → output topics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from engage_stream import metrics
from engage_stream.api import profiles as profile_api
from engage_stream.config import Settings
from engage_stream.identity.resolver import canonical_profile_id, profile_id_for_lookup
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.ingest.validate import InvalidEvent, Reason, parse_message
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.transaction import Transaction
from engage_stream.stream.partitions import PartitionManager
from engage_stream.stream.runtime import TICK_KEY, ProfileRuntime

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        store="memory://",
        datadir=str(settings.data_dir / settings.app_id / "faust"),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_every=1000,
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        stream_wait_empty=True,
        # Faust only uses its own partition assignor (which shares every worker's URL and
        # partitions, needed to route Profile API lookups) when standbys are configured or
        # Faust tables exist; we keep state ourselves, so ask for it this way.
        table_standby_replicas=1,
        web_enabled=True,
    )
    topics = settings.topics
    input_topic = app.topic(
        *topics.inputs(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    profile_topic = app.topic(
        topics.profile_events,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    partitions = PartitionManager(settings, app.producer)
    runtime = ProfileRuntime(settings, partitions)
    app.engage_runtime = runtime  # type: ignore[attr-defined]

    @app.agent(input_topic, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            pending = []
            for ev in events:
                msg = ev.message
                received = int((msg.timestamp or time.time()) * 1000)
                try:
                    if msg.value is None:
                        raise InvalidEvent(Reason.MALFORMED_JSON, "record has no value")
                    event = parse_message(msg.value, received)
                except InvalidEvent as exc:
                    dl = DeadLetter(
                        reason=exc.reason,
                        detail=exc.detail,
                        topic=msg.topic,
                        partition=msg.partition,
                        offset=msg.offset,
                        timestamp_ms=received,
                    )
                    pending.append(
                        await app.producer.send(
                            topics.dead_letter, msg.key, msg.value or b"", None, None, dl.headers()
                        )
                    )
                    metrics.dead_lettered.labels(exc.reason).inc()
                    continue
                event.profile_id = canonical_profile_id(event)
                pending.append(
                    await app.producer.send(
                        topics.profile_events,
                        event.profile_id.encode(),
                        event.to_json(),
                        None,
                        None,
                        None,
                    )
                )
                metrics.events_consumed.labels(event.type).inc()
            await asyncio.gather(*pending)

    @app.agent(profile_topic, name="profiles")
    async def profiles(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            await runtime.process(events)

    @app.timer(settings.tick_interval_s)
    async def tick() -> None:
        """Feed the wall clock into every owned partition so time-driven changes fire."""
        for tp in app.consumer.assignment():
            if tp.topic == topics.profile_events:
                await app.producer.send(
                    topics.profile_events, TICK_KEY, b"", tp.partition, None, None
                )
        for p, ps in list(partitions.open.items()):
            metrics.state_keys.labels(str(p)).set(ps.store.estimated_keys())
            metrics.state_bytes.labels(str(p)).set(ps.store.disk_bytes())

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        partitions.mark_rebalanced(
            tp.partition for tp in assigned if tp.topic == topics.profile_events
        )

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        await runtime.wait_idle()

    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    class Health(View):
        async def get(self, request: Request) -> Response:
            owned = sorted(
                tp.partition
                for tp in app.consumer.assignment()
                if tp.topic == topics.profile_events
            )
            return self.json(
                {"status": "ok", "owned": owned, "partitions": sorted(partitions.open)}
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
                key = profile_id.encode()
                partition = app.producer.key_partition(topics.profile_events, key).partition
                owned = {
                    tp.partition
                    for tp in app.consumer.assignment()
                    if tp.topic == topics.profile_events
                }
                if partition not in owned:
                    return await _route(partition, key, request, self)
                ps = await partitions.get(partition)
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

    async def _route(partition: int, key: bytes, request: Request, view: View) -> Response:
        """Serve a lookup owned by another worker by proxying it there."""
        try:
            return await app.router.route_topic_req(profile_topic, key, view.web, request)
        except (KeyError, ServiceUnavailable, SameNode) as exc:
            log.info("cannot route partition %d yet: %r", partition, exc)
            raise profile_api.ApiError(
                503,
                "service_unavailable",
                f"Partition {partition} has no owner yet (rebalancing); retry shortly.",
            ) from None

    app.page("/metrics")(Metrics)
    app.page("/health")(Health)
    app.page("/v1/spaces/{space}/collections/{collection}/profiles/{identifier}/{section}")(
        Profiles
    )
    return app
