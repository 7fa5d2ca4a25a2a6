"""`/v1/broadcasts...`: the broadcasts' statuses and counts, previews, and the lifecycle
edits (create, schedule, unschedule, cancel), with the CLI's rules (`broadcasts.lifecycle`).

Pure: the views gather the catalog, the partitions' progress (summed over every worker by
`api.proxy`) and the definitions topic as the worker last read it, and this module shapes
the answers or the plan to publish.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from engage_stream.api.errors import ApiError
from engage_stream.broadcasts.catalog import BroadcastCatalog, BroadcastEntry
from engage_stream.broadcasts.lifecycle import Action, LifecycleError, revised
from engage_stream.broadcasts.models import BroadcastDefinition, Schedule
from engage_stream.broadcasts.recipients import Preview
from engage_stream.broadcasts.sending import Progress
from engage_stream.broadcasts.status import BroadcastStatus, status_of
from engage_stream.config import Settings
from engage_stream.stream import definitions_topic
from engage_stream.stream.definitions_topic import DefinitionRecord

ACTIONS: tuple[Action, ...] = ("schedule", "unschedule", "cancel")


def not_found(key: str) -> ApiError:
    return ApiError(404, "not_found", f"Broadcast {key!r} was not found.")


def entry_of(broadcasts: BroadcastCatalog, key: str) -> BroadcastEntry:
    entry = broadcasts.entries.get(key)
    if entry is None:
        if key in broadcasts.failed:
            raise ApiError(409, "invalid_definition", broadcasts.failed[key])
        raise not_found(key)
    return entry


def status(
    entry: BroadcastEntry, progress: Iterable[Progress], settings: Settings
) -> BroadcastStatus:
    return status_of(entry, progress, settings.partitions, settings.broadcast_rate)


def list_body(
    broadcasts: BroadcastCatalog, progress: list[Progress], settings: Settings
) -> dict[str, Any]:
    data: list[dict[str, Any]] = [status(e, progress, settings).model_dump() for e in broadcasts]
    data += [{"key": k, "status": "Failed", "error": why} for k, why in broadcasts.failed.items()]
    return {"data": sorted(data, key=lambda d: d["key"])}


def preview_body(entry: BroadcastEntry, preview: Preview) -> dict[str, Any]:
    return {
        "key": entry.key,
        "version": entry.version,
        "channel": entry.definition.channel,
        "profiles": preview.profiles,
        "recipients": preview.recipients,
        "skipped": preview.skipped,
        "sample": preview.sample,
    }


def create_plan(
    records: dict[bytes, DefinitionRecord], body: Any, audiences: set[str], now_ms: int
) -> definitions_topic.Plan:
    """A new broadcast from a JSON body (a draft unless it says otherwise). Refuses a key
    that is live already: editing is a new version of the content, through `apply`."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.")
    try:
        defn = BroadcastDefinition.model_validate({"kind": "broadcast", **body})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ApiError(400, "invalid_definition", f"{where}: {first['msg']}") from exc
    old = records.get(definitions_topic.record_key("broadcast", defn.key))
    if old is not None and not old.deleted:
        raise ApiError(409, "conflict", f"Broadcast {defn.key!r} exists already.")
    for row in defn.recipients:
        key = getattr(row, "audience", None)
        if isinstance(key, str) and key not in audiences:
            raise ApiError(400, "invalid_definition", f"recipients: no audience {key!r}")
    return definitions_topic.plan(
        records, [("broadcast", defn.key, defn.model_dump(mode="json"))], False, now_ms
    )


def action_plan(
    records: dict[bytes, DefinitionRecord],
    key: str,
    action: str,
    state: BroadcastStatus,
    body: Any,
    now_ms: int,
) -> definitions_topic.Plan:
    """`POST /v1/broadcasts/<key>/<action>`; schedule takes `{"at", "time_zone"}` or
    `{"now": true}`."""
    if action not in ACTIONS:
        raise ApiError(404, "not_found", f"No action {action!r} (one of {', '.join(ACTIONS)}).")
    rec = records.get(definitions_topic.record_key("broadcast", key))
    if rec is None or rec.deleted:
        raise not_found(key)
    schedule = None
    if action == "schedule":
        body = body if isinstance(body, dict) else {}
        if not body.get("now"):
            try:
                schedule = Schedule.model_validate(
                    {"at": body.get("at"), "time_zone": body.get("time_zone")}
                )
            except ValidationError as exc:
                msg = exc.errors(include_url=False)[0]["msg"]
                raise ApiError(
                    400, "invalid_request", f'give {{"at", "time_zone"}} or {{"now": true}}: {msg}'
                ) from exc
    try:
        new = revised(rec.body, action, state.status, schedule)  # type: ignore[arg-type]
    except LifecycleError as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
    except ValidationError as exc:
        raise ApiError(400, "invalid_definition", str(exc.errors()[0]["msg"])) from exc
    return definitions_topic.plan(records, [("broadcast", key, new)], False, now_ms)
