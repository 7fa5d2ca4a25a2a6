"""The Faust app: lifecycle, the clock tick and the web server, around two batched stages.

Data flow: input topics → ingest stage (validate, dead-letter, identity) → internal
`profile-events` topic keyed by canonical profile → profiles stage (RocksDB state via
`PartitionManager`, engine via `ProfileRuntime`) → output topics. Each stage is a
`BatchLoop` (see its module for why not a Faust agent) run as a Faust task; `Worker`
composes them. The web API (`engage_stream.api`) is registered on the app's web server.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from engage_stream.api import routes as api_routes
from engage_stream.collector.app import Collector
from engage_stream.collector.settings import CollectorSettings
from engage_stream.config import Settings
from engage_stream.stream import client_backoff
from engage_stream.stream.client_log import quiet_client_retries
from engage_stream.stream.worker import Worker

log = logging.getLogger(__name__)


def create_app(settings: Settings, roles: set[str] | None = None) -> faust.App:
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    quiet_client_retries()
    client_backoff.install()
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
        # Faust's own consumer group (`<app>-web`) waits this long for a dead member before
        # it rebalances, and the worker is not up until it has: the data path's timeout,
        # not Faust's 60 s default, or a restarted worker waits a minute (issue #16)
        broker_session_timeout=settings.consumer.session_timeout_ms / 1000,
        # and, like the data path's groups, static membership: a restarted worker rejoins
        # as itself at once instead of waiting out its old session
        consumer_group_instance_id=settings.group_instance_id,
    )
    worker = Worker(settings, roles or {"ingest", "profiles"})
    app.engage_worker = worker  # type: ignore[attr-defined]

    collector_config = CollectorSettings.from_env()
    if collector_config.in_worker:  # ENGAGE_COLLECTOR_IN_WORKER=true: one process for the demo
        collector = Collector(settings, collector_config)

        @app.task
        async def run_collector() -> None:
            await collector.run()  # serves on its own port until the app stops

    @app.task
    async def run_stages() -> None:
        # Faust's logging set-up leaves the Kafka clients at DEBUG, which costs a log record
        # per produced message on the hot path.
        for name in ("aiokafka", "kafka"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.root.level))
        await worker.producer.start()
        try:
            await asyncio.gather(*worker.loops())
        except Exception as exc:
            # A stage that stops is a dead worker: say why and exit, so the supervisor
            # restarts it (its state is safe: nothing past the last checkpoint was committed).
            log.exception("a stream stage failed; stopping the worker")
            await app.crash(exc)
        finally:
            await worker.producer.stop()
            worker.close()

    @app.timer(settings.tick_interval_s)
    async def tick() -> None:
        if worker.producer.ready:
            await worker.tick()

    api_routes.register(app, worker)
    return app
