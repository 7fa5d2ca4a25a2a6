"""Segment-compatible Profile API responses (reference §7), built from profile state.

Pure: takes a `ProfileStore` and request parameters and returns the response body (or
raises `ApiError`), so it is unit-testable without a web server. The web view
(`api.views.Profiles`) adds auth and finds the partition, here or on another worker.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, Field

from engage_stream.api.errors import ApiError
from engage_stream.events import ProfileEvent
from engage_stream.journeys.catalog import JourneyCatalog
from engage_stream.profiles.accounts import is_hidden
from engage_stream.profiles.record import ACCOUNT_PREFIX, ProfileRecord, TraitValue, is_account
from engage_stream.profiles.store import ProfileStore
from engage_stream.timestamps import iso_ms as iso

DEFAULT_LIMIT = 10
MAX_TRAITS_LIMIT = 200
MAX_LIST_LIMIT = 100
EVENTS_LOOKBACK_MS = 14 * 86_400_000


def not_found() -> ApiError:
    return ApiError(404, "not_found", "Profile was not found.")


def profile_id_of(
    space_id: str,
    space: str,
    collection: str,
    identifier: str,
    resolve: Callable[[str, str], str | None],
) -> str:
    """The canonical profile id a request path names (`<type>:<value>` in the users
    collection of this space, any identifier type: `user_id`, `email`, `ios.idfa`, a
    custom one), resolved by `resolve` (the identity map); a 404 for anything else."""
    if space != space_id:
        raise ApiError(404, "not_found", f"Space {space!r} was not found.")
    id_type, _, value = identifier.partition(":")
    if collection == "accounts":  # accounts are keyed by their group id
        if id_type.lower() != "group_id" or not value:
            raise not_found()
        return ACCOUNT_PREFIX + value
    if collection != "users":
        raise not_found()
    profile_id = resolve(id_type.lower(), value) if value else None
    if profile_id is None:
        raise not_found()
    return profile_id


class Cursor(BaseModel):
    url: str
    has_more: bool
    next: str = ""
    limit: int | None = None


class ProfileQuery(BaseModel):
    path: str = Field(description="request path, echoed in cursor.url")
    limit: int = DEFAULT_LIMIT
    next: str = ""
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    verbose: bool = False
    trait_class: str | None = None
    start: int | None = None
    end: int | None = None
    sort: str = "desc"

    @classmethod
    def from_params(cls, path: str, params: dict[str, str], max_limit: int) -> ProfileQuery:
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise ApiError(400, "validation_error", "limit must be an integer") from None
        if not 1 <= limit <= max_limit:
            raise ApiError(400, "validation_error", f"limit must be between 1 and {max_limit}")
        sort = params.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise ApiError(400, "validation_error", "sort must be asc or desc")
        return cls(
            path=path,
            limit=limit,
            next=params.get("next", ""),
            include=_csv(params.get("include")),
            exclude=_csv(params.get("exclude")),
            verbose=params.get("verbose", "").lower() == "true",
            trait_class=params.get("class"),
            start=_iso_param(params.get("start"), "start"),
            end=_iso_param(params.get("end"), "end"),
            sort=sort,
        )

    def cursor(
        self, has_more: bool, next_token: str, extra: dict[str, str] | None = None
    ) -> Cursor:
        params = {"limit": str(self.limit), **(extra or {})}
        if next_token:
            params["next"] = next_token
        return Cursor(url=f"{self.path}?{urlencode(params)}", has_more=has_more, next=next_token)


def _csv(v: str | None) -> list[str]:
    return [x for x in (v or "").split(",") if x]


def _iso_param(v: str | None, name: str) -> int | None:
    if not v:
        return None
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "validation_error", f"{name} must be an ISO-8601 timestamp") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "validation_error", "invalid next cursor") from None


def _untoken_position(token: str) -> tuple[int, str]:
    """A list cursor: `<int>` (external ids) or `<int>:<messageId>` (events)."""
    head, _, tail = _untoken(token).partition(":")
    if not head.isdigit():
        raise ApiError(400, "validation_error", "invalid next cursor")
    return int(head), tail


def _trait_entries(record: ProfileRecord, trait_class: str | None) -> dict[str, TraitValue]:
    if trait_class == "audience":
        return dict(record.audiences)
    if trait_class == "computed_trait":
        return dict(record.computed_traits)
    if trait_class not in (None, ""):
        raise ApiError(400, "validation_error", "class must be audience or computed_trait")
    merged = {k: v for k, v in record.traits.items() if v.value is not None}
    merged.update(record.computed_traits)
    merged.update(record.audiences)
    return merged


def traits(record: ProfileRecord, q: ProfileQuery) -> dict[str, Any]:
    entries = _trait_entries(record, q.trait_class)
    keys = sorted(
        k for k in entries if (not q.include or k in q.include) and not is_hidden(k)
    )  # hidden: the per-user parts and account flags of account audiences
    after = _untoken(q.next) if q.next else None
    if after is not None:
        keys = [k for k in keys if k > after]
    page, rest = keys[: q.limit], keys[q.limit :]
    body: dict[str, Any] = {}
    for k in page:
        tv = entries[k]
        body[k] = (
            {"value": tv.value, "source_id": "", "updated_at": iso(tv.ts)}
            if q.verbose
            else tv.value
        )
    next_token = _token(page[-1]) if rest else ""
    return {
        "traits": body,
        "cursor": q.cursor(bool(rest), next_token).model_dump(exclude_none=True),
    }


def external_ids(record: ProfileRecord, q: ProfileQuery) -> dict[str, Any]:
    ids = [x for x in record.external_ids if not q.include or x.type in q.include]
    start = _untoken_position(q.next)[0] if q.next else 0
    page = ids[start : start + q.limit]
    has_more = start + q.limit < len(ids)
    data = [
        {
            "source_id": x.source_id,
            "collection": x.collection,
            "id": x.id,
            "type": x.type,
            "created_at": iso(x.created_at),
            "encoding": x.encoding,
            "first_message_id": x.first_message_id,
        }
        for x in page
    ]
    next_token = _token(str(start + q.limit)) if has_more else ""
    return {"data": data, "cursor": q.cursor(has_more, next_token).model_dump(exclude_none=True)}


def merges(record: ProfileRecord, q: ProfileQuery) -> dict[str, Any]:
    """The profiles merged into this one (beyond Segment, which shows this only in its
    warehouse tables), in `id_graph_updates` shape, oldest first."""
    start = _untoken_position(q.next)[0] if q.next else 0
    page = record.merges[start : start + q.limit]
    has_more = start + q.limit < len(record.merges)
    data = [
        {
            "segment_id": m.source,
            "canonical_segment_id": record.profile_id,
            "triggering_event_id": m.message_id,
            "timestamp": iso(m.at),
        }
        for m in page
    ]
    next_token = _token(str(start + q.limit)) if has_more else ""
    return {"data": data, "cursor": q.cursor(has_more, next_token).model_dump(exclude_none=True)}


LINKS_LIMIT = 20


def links(record: ProfileRecord) -> dict[str, Any]:
    """Users ↔ accounts (reference §7 `/links`): a user's accounts, or an account's users."""
    if is_account(record.profile_id):
        data = [
            {
                "to_collection": "users",
                "external_ids": [
                    {
                        "id": v,
                        "type": t,
                        "source_id": "",
                        "collection": "users",
                        "created_at": iso(link.created_at),
                        "encoding": "none",
                    }
                    for t, v in link.external_ids
                ],
            }
            for link in record.links[:LINKS_LIMIT]
        ]
    else:
        data = [
            {
                "to_collection": "accounts",
                "external_ids": [
                    {
                        "id": x.id,
                        "type": x.type,
                        "source_id": x.source_id,
                        "collection": "accounts",
                        "created_at": iso(x.created_at),
                        "encoding": x.encoding,
                    }
                ],
            }
            for x in record.external_ids
            if x.collection == "accounts"
        ][:LINKS_LIMIT]
    return {"data": data}


def _iso_or_none(ms: int | None) -> str | None:
    return iso(ms) if ms is not None else None


def _token_row(tok: dict[str, Any], steps: dict[str, Any]) -> dict[str, Any]:
    """Where an instance waits: a step it is in, since when, until when at most."""
    s = steps.get(tok["step"])
    return {
        "key": tok["step"],
        "name": (s.name or s.key) if s is not None else None,
        "type": s.type if s is not None else None,
        "since": iso(tok["since"]),
        "due": _iso_or_none(tok.get("due")),
        "loops": tok.get("loops", 0),
    }


def journeys(record: ProfileRecord, catalog: JourneyCatalog | None) -> dict[str, Any]:
    """The profile's journey states (beyond Segment, which shows them only in its UI): per
    journey and version, the instances in progress and where each waits, and how many
    instances the profile ever started; plus its subscription states, which decide whether
    a send-message step requests a message. Step names and whether the version is the
    current one come from `catalog` (a version no longer known shows step keys alone)."""
    data: list[dict[str, Any]] = []
    for key in sorted(record.journeys):
        entry = catalog.entries.get(key) if catalog is not None else None
        per = record.journeys[key]
        for v in sorted(per, key=int):
            state, version = per[v], int(v)
            defn = entry.versions().get(version) if entry is not None else None
            steps = {x.key: x for x in defn.steps} if defn is not None else {}
            data.append(
                {
                    "journey": key,
                    "name": (entry.definition.name or key) if entry is not None else None,
                    "version": version,
                    "current": entry is not None and entry.version == version,
                    "entries": state.get("entries", 0),
                    "ended_at": _iso_or_none(state.get("ended_at")),
                    "reentry_at": _iso_or_none(state.get("reentry_at")),
                    "instances": [
                        {
                            "instance_id": inst["id"],
                            "entered": iso(inst["entered"]),
                            "expires": _iso_or_none(inst.get("expires")),
                            "unique_identifier": inst.get("uid"),
                            "context": inst.get("ctx", {}),
                            "steps": [_token_row(t, steps) for t in inst["tokens"]],
                        }
                        for inst in state.get("instances", [])
                    ],
                }
            )
    subscriptions = []
    for vector in sorted(record.subscriptions):
        channel, _, address = vector.partition(":")
        sub = record.subscriptions[vector]
        subscriptions.append(
            {
                "channel": channel,
                "address": address,
                "status": sub.get("status", "none"),
                "groups": dict(sorted(sub.get("groups", {}).items())),
            }
        )
    return {"data": data, "subscriptions": subscriptions}


def metadata(record: ProfileRecord) -> dict[str, Any]:
    md = record.metadata
    return {
        "metadata": {
            "created_at": iso(md.created_at),
            "updated_at": iso(md.updated_at),
            "expires_at": None,
            "first_message_id": md.first_message_id,
            "first_source_id": md.first_source_id,
            "last_message_id": md.last_message_id,
            "last_source_id": md.last_source_id,
        }
    }


def _event_item(record: ProfileRecord, e: ProfileEvent) -> dict[str, Any]:
    item: dict[str, Any] = {
        "external_ids": [
            {"collection": x.collection, "type": x.type, "id": x.id, "encoding": x.encoding}
            for x in record.external_ids
            if (x.type == "user_id" and x.id == e.user_id)
            or (x.type == "anonymous_id" and x.id == e.anonymous_id)
        ],
        "context": e.context,
        "type": e.type,
        "message_id": e.message_id,
        "source_id": e.source_id or "",
        "timestamp": iso(e.timestamp),
        "properties": e.properties,
        "event": e.event,
        "related": {"users": record.profile_id},
    }
    if e.traits:
        item["traits"] = e.traits
    return item


def events(
    store: ProfileStore, record: ProfileRecord, q: ProfileQuery, now_ms: int
) -> dict[str, Any]:
    """Last 14 days by event time; `next` is the (timestamp, messageId) to continue after."""
    start = max(q.start or 0, now_ms - EVENTS_LOOKBACK_MS)
    end = q.end + 1 if q.end is not None else None
    reverse = q.sort == "desc"
    after: tuple[int, str] | None = None
    if q.next:
        after = _untoken_position(q.next)
    items: list[ProfileEvent] = []
    has_more = False
    for e in store.history(record.profile_id, start, end, reverse=reverse):
        pos = (e.timestamp, e.message_id)
        if after is not None and (pos <= after if not reverse else pos >= after):
            continue
        name = e.event or e.type
        if q.include and name not in q.include:
            continue
        if name in q.exclude:
            continue
        if len(items) == q.limit:
            has_more = True
            break
        items.append(e)
    next_token = _token(f"{items[-1].timestamp}:{items[-1].message_id}") if has_more else ""
    return {
        "data": [_event_item(record, e) for e in items],
        "cursor": q.cursor(has_more, next_token, {"sort": q.sort}).model_dump(exclude_none=True),
    }


SECTIONS = ("traits", "external_ids", "events", "metadata", "merges", "links", "journeys")


def handle(
    store: ProfileStore,
    profile_id: str | None,
    section: str,
    path: str,
    params: dict[str, str],
    now_ms: int,
    journey_catalog: JourneyCatalog | None = None,
) -> dict[str, Any]:
    """`journey_catalog`: the journeys in force, for the `journeys` section's names."""
    if section not in SECTIONS:
        raise ApiError(404, "not_found", f"Unknown resource {section!r}.")
    record = store.get(profile_id) if profile_id else None
    if record is None:
        raise not_found()
    max_limit = MAX_TRAITS_LIMIT if section == "traits" else MAX_LIST_LIMIT
    q = ProfileQuery.from_params(path, params, max_limit)
    if section == "traits":
        return traits(record, q)
    if section == "external_ids":
        return external_ids(record, q)
    if section == "metadata":
        return metadata(record)
    if section == "merges":
        return merges(record, q)
    if section == "links":
        return links(record)
    if section == "journeys":
        return journeys(record, journey_catalog)
    return events(store, record, q, now_ms)
