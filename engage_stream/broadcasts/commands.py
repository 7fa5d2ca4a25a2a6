"""`engage-stream broadcast create|preview|schedule|unschedule|cancel|status`.

Lifecycle commands publish a new record for the broadcast on the definitions topic (its
status, its schedule); workers pick it up at once. `status` reads the definitions topic
and the partitions' progress (`engage.broadcast-progress`), `--follow` prints a progress
line every second until the send is over. `preview` asks a worker's API (every worker
answers for the whole cluster), since the recipients are in the workers' state.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import orjson

from engage_stream.api.auth import basic_authorization
from engage_stream.broadcasts.catalog import BroadcastCatalog
from engage_stream.broadcasts.lifecycle import Action, revised
from engage_stream.broadcasts.models import Schedule
from engage_stream.broadcasts.sending import Progress
from engage_stream.broadcasts.status import BroadcastStatus, status_of
from engage_stream.config import Settings
from engage_stream.stream import compacted, definitions_topic

DONE = ("Sent", "Cancelled")


def read_progress(settings: Settings) -> list[Progress]:
    """The latest progress of every broadcast on every partition."""
    latest: dict[bytes, bytes] = {}
    for key, value in compacted.read_all(settings, settings.topics.broadcast_progress):
        if key is not None and value is not None:
            latest[key] = value
    return [Progress.loads(v) for v in latest.values()]


def _record(settings: Settings, key: str) -> tuple[dict[bytes, Any], Any] | None:
    current = definitions_topic.read_all(settings)
    rec = current.get(definitions_topic.record_key("broadcast", key))
    if rec is None or rec.deleted:
        print(f"no broadcast {key!r} on {settings.topics.definitions}", file=sys.stderr)
        return None
    return current, rec


def status(settings: Settings, key: str) -> BroadcastStatus | None:
    found = _record(settings, key)
    if found is None:
        return None
    _, rec = found
    entry = BroadcastCatalog.from_records(
        [(rec.key, rec.evaluated_version or rec.version, rec.applied_at, rec.body)]
    ).entries.get(key)  # (one record, parsed as the workers parse it)
    if entry is None:
        print(f"broadcast {key!r}: its published body is not valid", file=sys.stderr)
        return None
    return status_of(entry, read_progress(settings), settings.partitions, settings.broadcast_rate)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    st = status(settings, args.key)
    if st is None:
        return 1
    if not args.follow:
        print(orjson.dumps(st.model_dump(), option=orjson.OPT_INDENT_2).decode())
        return 0
    while True:
        print(st.line(), flush=True)
        if st.status in DONE or (st.status == "Draft"):
            return 0
        time.sleep(1.0)
        st = status(settings, args.key)
        if st is None:
            return 1


def _act(settings: Settings, key: str, action: Action, schedule: Schedule | None = None) -> int:
    found = _record(settings, key)
    st = status(settings, key)
    if found is None or st is None:
        return 1
    current, rec = found
    try:
        body = revised(rec.body, action, st.status, schedule)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    plan = definitions_topic.revise(
        settings, current, "broadcast", key, body, int(time.time() * 1000)
    )
    was, now = rec.body.get("status", "draft"), body["status"]
    print(f"broadcast {key}: {was} -> {now}" if plan.publish else f"broadcast {key}: already {now}")
    return 0


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    if args.now:
        return _act(settings, args.key, "schedule")
    if not (args.at and args.time_zone):
        print("give --at LOCAL-TIME and --tz ZONE, or --now", file=sys.stderr)
        return 2
    try:
        schedule = Schedule(at=args.at, time_zone=args.time_zone)
    except ValueError as exc:
        print(f"--at/--tz: {exc}", file=sys.stderr)
        return 2
    return _act(settings, args.key, "schedule", schedule)


def cmd_unschedule(args: argparse.Namespace, settings: Settings) -> int:
    return _act(settings, args.key, "unschedule")


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    return _act(settings, args.key, "cancel")


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    """Publish `*.broadcast` files (each as its file says: a draft unless `status` is given)."""
    from engage_stream.commands import cmd_apply

    return cmd_apply(
        argparse.Namespace(path=args.path, prune=False, dry_run=args.dry_run), settings
    )


def cmd_preview(args: argparse.Namespace, settings: Settings) -> int:
    url = (args.api or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")
    req = urllib.request.Request(
        f"{url}/v1/broadcasts/{args.key}/preview?sample={args.sample}",
        headers={"Authorization": basic_authorization(settings.api_token)},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        print(f"preview failed: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"no worker API at {url}: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    return 0


def register(sub: argparse._SubParsersAction, settings_of) -> None:  # type: ignore[type-arg,no-untyped-def]
    def run(fn):  # type: ignore[no-untyped-def]
        return lambda args: fn(args, settings_of(args))

    b = sub.add_parser("broadcast", help="one-time email / SMS campaigns to an audience snapshot")
    bs = b.add_subparsers(dest="action", required=True)
    c = bs.add_parser("create", help="publish *.broadcast files (drafts unless they say)")
    c.add_argument("path")
    c.add_argument("--dry-run", dest="dry_run", action="store_true")
    c.set_defaults(func=run(cmd_create))
    p = bs.add_parser("preview", help="recipient count and a sample, without sending")
    p.add_argument("key")
    p.add_argument("--sample", type=int, default=10)
    p.add_argument("--api", help="a worker's API (default: this machine's web port)")
    p.set_defaults(func=run(cmd_preview))
    s = bs.add_parser("schedule", help="send at a local time in a time zone, or now")
    s.add_argument("key")
    s.add_argument("--at", help="local date and time, e.g. 2027-03-01T09:00")
    s.add_argument("--tz", dest="time_zone", help="IANA time zone, e.g. Europe/Paris")
    s.add_argument("--now", action="store_true")
    s.set_defaults(func=run(cmd_schedule))
    u = bs.add_parser("unschedule", help="back to draft (before the send starts)")
    u.add_argument("key")
    u.set_defaults(func=run(cmd_unschedule))
    x = bs.add_parser("cancel", help="cancel a scheduled broadcast or stop a send")
    x.add_argument("key")
    x.set_defaults(func=run(cmd_cancel))
    t = bs.add_parser("status", help="status and counts across every partition")
    t.add_argument("key")
    t.add_argument("--follow", action="store_true", help="a progress line every second")
    t.set_defaults(func=run(cmd_status))
