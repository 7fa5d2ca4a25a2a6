"""Definition commands: `validate`, `apply`, `schema`, `replay`, `audiences`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engage_stream.config import Settings
from engage_stream.definitions.catalog import AnyDefinition, Catalog, definition_body
from engage_stream.definitions.models import parse_date_ms
from engage_stream.stream import definitions_topic
from engage_stream.stream.topics import ensure_topics


def load_checked(path: str) -> list[AnyDefinition] | None:
    """Definitions from a file or directory; every problem printed with file and location."""
    from engage_stream.definitions.loader import DefinitionErrors, load_definitions

    try:
        definitions = load_definitions(Path(path))
    except DefinitionErrors as errs:
        for problem in errs.problems:
            print(problem, file=sys.stderr)
        print(f"{len(errs.problems)} problem(s) found in {path}", file=sys.stderr)
        return None
    try:  # the engine compiles every definition: anything it cannot evaluate fails here
        from engage_stream.engine.engine import Engine

        Engine(definitions)
    except Exception as exc:
        print(f"{path}: definitions rejected by the engine: {exc}", file=sys.stderr)
        return None
    return definitions


def _summary(definitions: list[AnyDefinition]) -> str:
    n_aud = sum(1 for d in definitions if d.kind == "audience")
    return f"{n_aud} audience(s), {len(definitions) - n_aud} computed trait(s)"


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    definitions = load_checked(args.path)
    if definitions is None:
        return 1
    print(f"{args.path}: OK — {_summary(definitions)}")
    return 0


def apply_definitions(
    settings: Settings, definitions: list[AnyDefinition], prune: bool = False, dry_run: bool = False
) -> definitions_topic.Plan:
    """Publish what changed: new keys at version 1, edited bodies at version + 1; deleted
    keys (with `prune`) as tombstones. Creates the destinations' output topics first."""
    ensure_topics(settings, sorted({x.name for d in definitions for x in d.destinations}))
    current = definitions_topic.read_all(settings)
    plan = definitions_topic.plan(
        current,
        ((d.kind, d.key, definition_body(d)) for d in definitions),
        prune=prune,
        now_ms=int(time.time() * 1000),
    )
    if not dry_run:
        definitions_topic.publish(settings, plan)
    return plan


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    definitions = load_checked(args.path)
    if definitions is None:
        return 1
    plan = apply_definitions(settings, definitions, args.prune, args.dry_run)
    for rec in plan.publish:
        verb = "create" if rec.version == 1 else "update"
        print(f"{verb:9} {rec.kind}:{rec.key} -> version {rec.version}")
    for k in plan.delete:
        print(f"{'delete':9} {k}")
    print(
        f"{len(plan.publish)} to publish, {len(plan.delete)} to delete, "
        f"{len(plan.unchanged)} unchanged"
    )
    if args.dry_run:
        print("dry run: nothing published")
    else:
        print(f"published to {settings.topics.definitions}; running workers pick it up now")
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from engage_stream.definitions.schema_export import write_schema

    print(f"wrote {write_schema(Path(args.out))}")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from engage_stream.replay import Replay

    definitions = load_checked(args.definitions)
    if definitions is None:
        return 1
    until = None
    if args.until:
        until = parse_date_ms(args.until)
        if until is None:
            print(f"--until {args.until!r}: expected ISO-8601 with a zone", file=sys.stderr)
            return 2
    replay = Replay(Catalog.from_definitions(definitions), settings)
    out = sys.stdout.buffer
    with Path(args.events).open("rb") as fh:
        for rec in replay.run(fh, until):
            out.write(rec.to_json() + b"\n")
    out.flush()
    s = replay.stats
    for err in replay.errors[:20]:
        print(f"skipped {err}", file=sys.stderr)
    print(
        f"replayed {s.events} events ({s.invalid} invalid, {s.duplicates} duplicates): "
        f"{s.changes} changes, {s.records} records",
        file=sys.stderr,
    )
    return 0


def register(sub: argparse._SubParsersAction, settings_of) -> None:  # type: ignore[type-arg,no-untyped-def]
    """Add the definition commands to the `engage-stream` parser."""

    def run(fn):  # type: ignore[no-untyped-def]
        return lambda args: fn(args, settings_of(args))

    v = sub.add_parser("validate", help="check definition files; every problem with its location")
    v.add_argument("path", help="a YAML file or a directory (e.g. topologies/)")
    v.set_defaults(func=run(cmd_validate))

    a = sub.add_parser("apply", help="publish definitions to the definitions topic")
    a.add_argument("path")
    a.add_argument("--prune", action="store_true", help="delete definitions not in PATH")
    a.add_argument("--dry-run", dest="dry_run", action="store_true")
    a.set_defaults(func=run(cmd_apply))

    s = sub.add_parser("schema", help="export the definitions JSON Schema (editor support)")
    s.add_argument("--out", default="schemas")
    s.set_defaults(func=run(cmd_schema))

    r = sub.add_parser("replay", help="run definitions over an events file offline (backtest)")
    r.add_argument("--definitions", required=True, help="YAML file or directory")
    r.add_argument("--events", required=True, help="Segment events, JSON lines")
    r.add_argument("--until", help="advance the clock to this ISO-8601 time at the end")
    r.set_defaults(func=run(cmd_replay))
