"""`engage-stream` command line: worker, local Kafka, producing, demo, definitions."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from engage_stream import commands
from engage_stream.broadcasts import commands as broadcast_commands
from engage_stream.config import Settings, SettingsError


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        broker=getattr(args, "broker", None),
        app_id=getattr(args, "app_id", None),
        web_port=getattr(args, "web_port", None),
        data_dir=getattr(args, "data_dir", None),
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from engage_stream.stream.app import create_app
    from engage_stream.stream.topics import ensure_topics

    settings = _settings(args)
    ensure_topics(settings)
    roles = {"ingest", "profiles"} if args.role == "all" else {args.role}
    app = create_app(settings, roles)
    if args.reset_local_state:
        app.engage_worker.partitions.wipe()  # type: ignore[attr-defined]
    _tune_gc()
    worker = Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


def _tune_gc() -> None:
    """The hot path allocates many short-lived objects per event and keeps few: collect
    the young generation less often, and keep start-up objects (modules, definitions,
    the app) out of every full collection. Measured: ~10% less CPU per event in the
    profiles stage (bench/engine_bench `profiles_stage`, alternating runs)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    gc.callbacks.append(GcPauses().callback)


class GcPauses:
    """Observes each collection's pause in `engage_gc_pause_seconds`: a collection stops
    every stage's loop at once, so a long one shows up in every latency percentile."""

    def __init__(self) -> None:
        from engage_stream import metrics

        self._started = 0.0
        self._by_generation = [
            metrics.gc_pause_seconds.labels(str(g)) for g in range(3)
        ]  # at 0 from the start

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)
            self._started = 0.0


def _broker_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from engage_stream.kafka_local.broker import BrokerConfig

    return BrokerConfig(
        port=args.port, controller_port=args.controller_port, data_dir=Path(args.kafka_dir)
    )


def cmd_kafka(args: argparse.Namespace) -> int:
    from engage_stream.kafka_local import broker

    cfg = _broker_config(args)
    if args.action == "start":
        broker.start(cfg)
    elif args.action == "stop":
        if not broker.stop(cfg):
            print("no broker started from", cfg.data_dir)
    else:
        print(broker.status(cfg))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from engage_stream.stream.topics import ensure_topics

    created = ensure_topics(_settings(args))
    print("created:", ", ".join(created) if created else "(all topics already exist)")
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from engage_stream.produce import produce_lines

    path = Path(args.file)
    total = sum(1 for line in path.open("rb") if line.strip())
    with path.open("rb") as fh:
        n = produce_lines(_settings(args), fh, total=total, mixed=args.mixed)
    print(f"produced {n} records from {path}")
    return 0


def cmd_collector(args: argparse.Namespace) -> int:
    import asyncio

    from engage_stream.collector.app import serve
    from engage_stream.collector.settings import CollectorSettings
    from engage_stream.collector.write_keys import WriteKeyError, WriteKeys
    from engage_stream.stream.topics import ensure_topics

    settings = _settings(args)
    try:
        config = CollectorSettings.from_env(
            host=args.host, port=args.port, write_keys_file=args.write_keys
        )
        WriteKeys.from_settings(config)  # a bad file fails here, before listening
    except (WriteKeyError, ValueError) as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return 2
    try:
        ensure_topics(settings)
    except Exception as exc:  # Kafka down now: the collector answers 503 until it is back
        logging.getLogger("engage_stream.collector").warning(
            "could not check the topics (%s); they are the worker's to create", exc
        )
    logging.getLogger("engage_stream.collector").setLevel(args.loglevel.upper())
    # While Kafka is away aiokafka logs every reconnect attempt (tens of lines a second);
    # the collector logs each change of Kafka's availability once, with the reason.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    asyncio.run(serve(settings, config))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from engage_stream.demo import run_demo

    return run_demo(
        _settings(args),
        events=args.events,
        users=args.users,
        kafka_dir=Path(args.kafka_dir),
        port=args.port,
        definitions_path=Path(args.definitions) if args.definitions else None,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engage-stream", description=__doc__)
    p.add_argument("--broker", help="Kafka bootstrap host:port (env ENGAGE_BROKER)")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worker", help="run a stream worker (ingest, profiles, API on the web port)")
    w.add_argument("--app-id", dest="app_id")
    w.add_argument("--web-port", dest="web_port", type=int)
    w.add_argument("--data-dir", dest="data_dir")
    w.add_argument("--loglevel", default="warning")
    w.add_argument(
        "--role",
        choices=["all", "ingest", "profiles"],
        default="all",
        help="run both stages (default) or one, e.g. one process per core",
    )
    w.add_argument(
        "--reset-local-state",
        action="store_true",
        help="delete local RocksDB state first; it is rebuilt from the changelog",
    )
    w.set_defaults(func=cmd_worker)

    k = sub.add_parser("kafka", help="run a local Apache Kafka broker (no Docker needed)")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--port", type=int, default=9092)
    k.add_argument("--controller-port", dest="controller_port", type=int, default=9093)
    k.add_argument("--kafka-dir", dest="kafka_dir", default="var/kafka")
    k.set_defaults(func=cmd_kafka)

    t = sub.add_parser("topics", help="create the topics the worker uses")
    t.set_defaults(func=cmd_topics)

    pr = sub.add_parser("produce", help="produce a JSON-lines file of Segment events")
    pr.add_argument("file")
    pr.add_argument("--mixed", action="store_true", help="send everything to the mixed topic")
    pr.set_defaults(func=cmd_produce)

    c = sub.add_parser(
        "collector",
        help="Segment-compatible HTTP Tracking API: SDKs send events here (env ENGAGE_COLLECTOR_*)",
    )
    c.add_argument("--host", help="listen address (env ENGAGE_COLLECTOR_HOST, 127.0.0.1)")
    c.add_argument("--port", type=int, help="listen port (env ENGAGE_COLLECTOR_PORT, 8088)")
    c.add_argument(
        "--write-keys",
        dest="write_keys",
        metavar="FILE",
        help="YAML or JSON file: write key -> source id (env ENGAGE_COLLECTOR_WRITE_KEYS_FILE)",
    )
    c.add_argument("--loglevel", default="info")
    c.set_defaults(func=cmd_collector)

    d = sub.add_parser("demo", help="broker + worker + sample events + what happened, then stop")
    d.add_argument("--events", type=int, default=4000)
    d.add_argument("--users", type=int, default=300)
    d.add_argument("--port", type=int, default=9092)
    d.add_argument("--kafka-dir", dest="kafka_dir", default="var/kafka")
    d.add_argument("--web-port", dest="web_port", type=int)
    d.add_argument(
        "--definitions",
        metavar="PATH",
        help="directory of definitions to apply (default: the checkout's topologies/)",
    )
    d.set_defaults(func=cmd_demo)

    commands.register(sub, _settings)
    broadcast_commands.register(sub, _settings)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"engage-stream: invalid setting: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
