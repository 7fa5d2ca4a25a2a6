"""Definition commands: `validate`, `apply`, `schema`, `replay`, `journey`.

A path holds audiences and computed traits (`*.yaml`), journeys (`*.journey`) and
broadcasts (`*.broadcast`); each command reads all three kinds under it."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engage_stream.broadcasts.catalog import BroadcastCatalog
from engage_stream.broadcasts.loading import BROADCASTS, broadcast_problems
from engage_stream.broadcasts.models import BroadcastDefinition
from engage_stream.config import Settings
from engage_stream.definitions.catalog import (
    AnyDefinition,
    Catalog,
    Entry,
    definition_body,
    parse_body,
)
from engage_stream.definitions.checks import Item, check_items
from engage_stream.definitions.loader import SUFFIXES as DEFINITION_SUFFIXES
from engage_stream.definitions.loader import collect_items, definition_files, ordered, union
from engage_stream.definitions.models import parse_date_ms
from engage_stream.definitions.problems import DefinitionErrors, Problem, Source
from engage_stream.journeys.catalog import JourneyCatalog
from engage_stream.journeys.loading import collect_journeys, journey_files, journey_problems
from engage_stream.journeys.models import MAX_VERSIONS, JourneyDefinition
from engage_stream.stream import definitions_topic
from engage_stream.stream.definitions_topic import DefinitionRecord
from engage_stream.stream.topics import ensure_topics


def load_checked(path: str, settings: Settings | None = None) -> list[AnyDefinition] | None:
    """Definitions from a file or directory; every problem printed with file and location.
    With `settings`, also those the workers' history cannot serve (`profiles.retention`)."""
    items, problems = collect_items(path)
    problems = ordered([*problems, *check_items(items)], path)
    if settings is not None:
        problems.extend(retention_problems(items, settings))
    definitions = [i.definition for i in items if i.definition is not None]
    if not problems:
        problems = engine_problems(definitions, path)
    if problems:
        _report(problems, path)
        return None
    return definitions


def retention_problems(items: Sequence[Item], settings: Settings) -> list[Problem]:
    from engage_stream.profiles.retention import lookback_problem

    out = []
    for item in items:
        if item.definition is not None and not item.in_force:
            why = lookback_problem(item.definition, settings)
            if why is not None:
                out.append(item.source.problem(("include_history",), why))
    return out


def engine_problems(definitions: Sequence[AnyDefinition], where: str) -> list[Problem]:
    """The engine compiles every definition: anything it cannot evaluate fails here."""
    from engage_stream.profiles.stage import build_engine

    try:
        build_engine(Catalog.from_definitions(definitions), Settings())
    except Exception as exc:
        return [Problem(where, "", None, f"definitions rejected by the engine: {exc}")]
    return []


def _report(problems: Sequence[Problem], path: str) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems)} problem(s) found in {path}", file=sys.stderr)


def _summary(definitions: list[AnyDefinition]) -> str:
    n_aud = sum(1 for d in definitions if d.kind == "audience")
    return f"{n_aud} audience(s), {len(definitions) - n_aud} computed trait(s)"


def load_checked_journeys(
    path: str, definitions: Sequence[AnyDefinition]
) -> list[JourneyDefinition] | None:
    """The `*.journey` files under `path`, each problem printed (None if there were any);
    the audiences they read must be among `definitions`."""
    found, problems = collect_journeys(path)
    audiences = {d.key for d in definitions if d.kind == "audience"}
    problems = [*problems, *journey_problems(found, audiences)]
    if problems:
        _report(problems, path)
        return None
    return [j for j, _ in found]


def load_checked_broadcasts(
    path: str, definitions: Sequence[AnyDefinition]
) -> list[BroadcastDefinition] | None:
    """The `*.broadcast` files under `path`, each problem printed (None if any)."""
    found, problems = BROADCASTS.collect(path)
    audiences = {d.key for d in definitions if d.kind == "audience"}
    problems = [*problems, *broadcast_problems(found, audiences)]
    if problems:
        _report(problems, path)
        return None
    return [b for b, _ in found]


def has_definitions(path: str) -> bool:
    """Audience / trait YAML under `path` (a path of only other kinds needs none)."""
    p = Path(path)
    if p.is_file():
        return p.suffix in DEFINITION_SUFFIXES
    return bool(definition_files(path)) or not (journey_files(path) or BROADCASTS.files(path))


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    definitions = load_checked(args.path, settings) if has_definitions(args.path) else []
    if definitions is None:
        return 1
    journeys = load_checked_journeys(args.path, definitions) if journey_files(args.path) else []
    if journeys is None:
        return 1
    broadcasts = load_checked_broadcasts(args.path, definitions)
    if broadcasts is None:
        return 1
    more = f", {len(journeys)} journey(s)" if journeys else ""
    more += f", {len(broadcasts)} broadcast(s)" if broadcasts else ""
    print(f"{args.path}: OK — {_summary(definitions)}{more}")
    return 0


def in_force_items(records: Iterable[DefinitionRecord], topic: str) -> list[Item]:
    """The audiences and computed traits live on the topic, for the cross-checks (an
    invalid body still takes part with what can be read of it)."""
    out: list[Item] = []
    for rec in records:
        if rec.deleted or rec.kind not in ("audience", "computed_trait"):
            continue
        src = Source(f"topic {topic}", rec.key)
        try:
            out.append(Item.parsed(parse_body(rec.body), src, in_force=True))
        except ValidationError:
            item = Item.draft(rec.body, src, in_force=True)
            if item is not None:
                out.append(item)
    return out


def plan_apply(
    existing: Iterable[DefinitionRecord],
    items: Sequence[Item],
    *,
    prune: bool,
    now_ms: int,
    topic: str = "engage.definitions",
    where: str = "<apply>",
    journeys: Sequence[tuple[JourneyDefinition, Source]] = (),
    broadcasts: Sequence[tuple[BroadcastDefinition, Source]] = (),
) -> tuple[definitions_topic.Plan, list[Problem]]:
    """What applying `items` (and `journeys`, `broadcasts`) over the `existing` topic
    records publishes, and the problems of what is in force afterwards: the topic's
    definitions that the items neither replace nor (with `prune`) delete, plus the items;
    every journey in force and every broadcast applied must find the audiences it reads.
    Pure, so it is tested without a broker."""
    current = {rec.topic_key: rec for rec in existing}
    after = union([] if prune else in_force_items(current.values(), topic), items)
    problems = check_items(after)
    if not problems and all(i.definition is not None for i in items):
        problems = engine_problems([i.definition for i in after if i.definition], where)
    audiences = {i.key for i in after if i.kind == "audience"}
    named = {j.key for j, _ in journeys}
    in_force_journeys = [] if prune else in_force_journey_items(current.values(), topic, named)
    problems += journey_problems([*in_force_journeys, *journeys], audiences)
    problems += broadcast_problems(broadcasts, audiences)
    wanted: list[tuple[Any, str, dict[str, Any]]] = [
        (d.kind, d.key, definition_body(d)) for i in items if (d := i.definition) is not None
    ]
    wanted += [("journey", j.key, document_body(j)) for j, _ in journeys]
    wanted += [("broadcast", b.key, document_body(b)) for b, _ in broadcasts]
    plan = definitions_topic.plan(current, wanted, prune, now_ms)
    by_key = {j.key: src for j, src in journeys}
    for rec in plan.publish:
        old = current.get(rec.topic_key)
        if rec.kind != "journey" or old is None or old.deleted:
            continue
        if rec.evaluated_version == rec.version and len(old.history) + 2 > MAX_VERSIONS:
            problems.append(
                by_key[rec.key].problem(
                    ("key",),
                    f"at most {MAX_VERSIONS} versions of a journey: publish this one under "
                    "a new key (a clone)",
                )
            )
    return plan, problems


def document_body(doc: JourneyDefinition | BroadcastDefinition) -> dict[str, Any]:
    """The canonical body published for a journey or a broadcast: every field, defaults
    included — a step's `type` is a default of its model and the discriminator the worker
    reads it back by."""
    return doc.model_dump(mode="json")


def in_force_journey_items(
    records: Iterable[DefinitionRecord], topic: str, replaced: set[str]
) -> list[tuple[JourneyDefinition, Source]]:
    """The journeys live on the topic that an apply keeps (for the cross-checks)."""
    out: list[tuple[JourneyDefinition, Source]] = []
    for rec in records:
        if rec.deleted or rec.kind != "journey" or rec.key in replaced:
            continue
        try:
            out.append(
                (JourneyDefinition.model_validate(rec.body), Source(f"topic {topic}", rec.key))
            )
        except ValidationError:
            continue
    return out


def apply_definitions(
    settings: Settings, definitions: list[AnyDefinition], prune: bool = False, dry_run: bool = False
) -> definitions_topic.Plan:
    """`apply_items` for parsed definitions (no file to point problems at)."""
    items = [Item.parsed(d, Source("<apply>", d.key)) for d in definitions]
    return apply_items(settings, items, prune, dry_run)


def apply_items(
    settings: Settings,
    items: Sequence[Item],
    prune: bool = False,
    dry_run: bool = False,
    problems: Sequence[Problem] = (),
    path: str | None = None,
    journeys: Sequence[tuple[JourneyDefinition, Source]] = (),
    broadcasts: Sequence[tuple[BroadcastDefinition, Source]] = (),
) -> definitions_topic.Plan:
    """Publish what changed, versioned as `definitions_topic.plan` says (a re-created key
    continues after its deleted version); deleted keys (with `prune`) as deletion markers.
    Raises `DefinitionErrors` with `problems` (the files' own) and those of the definitions
    in force afterwards; publishes nothing then. Creates the worker's topics and, once the
    checks pass, the destinations' output topics, also on a dry run."""
    ensure_topics(settings)
    plan, more = plan_apply(
        definitions_topic.read_all(settings).values(),
        items,
        prune=prune,
        now_ms=int(time.time() * 1000),
        topic=settings.topics.definitions,
        where=path or "<apply>",
        journeys=journeys,
        broadcasts=broadcasts,
    )
    every = [*problems, *more, *retention_problems(items, settings)]
    if every:
        raise DefinitionErrors(ordered(every, path) if path else every)
    destinations = {x.name for i in items if i.definition for x in i.definition.destinations}
    destinations |= set(JourneyCatalog.from_definitions(j for j, _ in journeys).destinations())
    ensure_topics(settings, sorted(destinations))
    if not dry_run:
        definitions_topic.publish(settings, plan)
    return plan


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    items, problems = collect_items(args.path) if has_definitions(args.path) else ([], [])
    journeys, journey_errors = collect_journeys(args.path)
    broadcasts, broadcast_errors = BROADCASTS.collect(args.path)
    try:
        if not items and not journeys and not broadcasts:
            raise DefinitionErrors([*problems, *journey_errors, *broadcast_errors])
        plan = apply_items(
            settings,
            items,
            args.prune,
            args.dry_run,
            [*problems, *journey_errors, *broadcast_errors],
            args.path,
            journeys,
            broadcasts,
        )
    except DefinitionErrors as errs:
        _report(errs.problems, args.path)
        return 1
    for rec in plan.publish:
        verb = "create" if rec.topic_key.decode() in plan.created else "update"
        print(f"{verb:9} {rec.kind}:{rec.key} -> version {rec.version}")
    for rec in plan.delete:
        print(f"{'delete':9} {rec.kind}:{rec.key}")
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
    from engage_stream.engine.native import ENGINE_ENV
    from engage_stream.replay import Replay

    if args.engine:
        os.environ[ENGINE_ENV] = args.engine  # read where the engine is built (make_engine)

    definitions = load_checked(args.definitions) if has_definitions(args.definitions) else []
    if definitions is None:
        return 1
    journeys = load_checked_journeys(args.definitions, definitions)
    broadcasts = load_checked_broadcasts(args.definitions, definitions)
    if journeys is None or broadcasts is None:
        return 1
    until = None
    if args.until:
        until = parse_date_ms(args.until)
        if until is None:
            print(f"--until {args.until!r}: expected ISO-8601 with a zone", file=sys.stderr)
            return 2
    applied = applied_at_option(args.applied_at or [], {d.key for d in definitions})
    if isinstance(applied, str):
        print(applied, file=sys.stderr)
        return 2
    catalog = Catalog(
        {d.key: Entry(d, 1, applied.get(d.key, applied.get("", 0))) for d in definitions},
        journeys=JourneyCatalog.from_definitions(journeys, applied.get("", 0)),
        broadcasts=BroadcastCatalog.from_definitions(broadcasts, applied.get("", 0)),
    )
    replay = Replay(catalog, settings)
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


JOURNEY_ACTIONS = {"pause": "paused", "resume": "live", "archive": "archived"}


def cmd_journey(args: argparse.Namespace, settings: Settings) -> int:
    """Pause entry, resume or archive a published journey: a new record with the status
    changed — the same evaluated version, so running instances go on (or, archived, end)."""
    current = definitions_topic.read_all(settings)
    rec = current.get(definitions_topic.record_key("journey", args.key))
    if rec is None or rec.deleted:
        print(f"no journey {args.key!r} on {settings.topics.definitions}", file=sys.stderr)
        return 1
    status = JOURNEY_ACTIONS[args.action]
    was = rec.body.get("status", "live")
    if was == "archived" and status != "archived":
        print(f"journey {args.key!r} is archived: it cannot be resumed", file=sys.stderr)
        return 1
    body = {**rec.body, "status": status}
    plan = definitions_topic.revise(
        settings, current, "journey", args.key, body, int(time.time() * 1000)
    )
    if not plan.publish:
        print(f"journey {args.key}: already {status}")
        return 0
    print(f"journey {args.key}: {was} -> {status} (version {plan.publish[0].evaluated_version})")
    return 0


def applied_at_option(values: Sequence[str], keys: set[str]) -> dict[str, int] | str:
    """`--applied-at [KEY=]ISO` values: when each definition was created (`include_history:
    false` counts only what arrived after), "" for every definition not named. An error
    message instead, for a bad time or an unknown key."""
    out: dict[str, int] = {}
    for value in values:
        key, sep, when = value.rpartition("=") if "=" in value else ("", "", value)
        ms = parse_date_ms(when)
        if ms is None:
            return f"--applied-at {value!r}: expected [KEY=]ISO-8601 with a zone"
        if key and key not in keys:
            return f"--applied-at {value!r}: no definition {key!r}"
        out[key] = ms
    return out


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
    r.add_argument(
        "--applied-at",
        action="append",
        metavar="[KEY=]ISO",
        help="when a definition (KEY) or every definition was created: with include_history "
        "false only events received after it count (default: the start of the file)",
    )
    r.add_argument(
        "--engine",
        choices=("auto", "native", "python"),
        help="the evaluation engine: native core, the Python reference, or auto (native when "
        "built; default, or $ENGAGE_ENGINE)",
    )
    r.set_defaults(func=run(cmd_replay))

    j = sub.add_parser("journey", help="pause entry, resume or archive a published journey")
    j.add_argument("action", choices=sorted(JOURNEY_ACTIONS))
    j.add_argument("key")
    j.set_defaults(func=run(cmd_journey))
