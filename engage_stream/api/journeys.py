"""`GET /v1/journeys[/<key>]`: the journeys in force, their status, version and flavour, and
how many instances are where.

Pure: the web view gathers the journey catalog and the partitions' journey counts
(`journeys.counts`, summed over every worker by `api.proxy`) and this module shapes the
answer. A profile's own journey state is the Profile API's `journeys` section
(`api.profiles`).

Counts are per journey, not per version: a step key kept by a new version is the same step
(its destination key is too, `journeys.models.step_key`), so instances still draining an
earlier version show in the steps they wait in. Steps only earlier versions have are
listed after the current ones, with `current: false`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from engage_stream.api.errors import ApiError
from engage_stream.journeys.catalog import JourneyCatalog, JourneyEntry
from engage_stream.journeys.counts import Counts
from engage_stream.journeys.models import JourneyDefinition
from engage_stream.timestamps import iso_ms

Flavour = Literal["classic", "event_triggered"]
TOTALS = ("entered", "active", "completed", "exited")


def flavour(defn: JourneyDefinition) -> Flavour:
    """Classic (v1): entered on joining an audience; event-triggered (v2): on an event."""
    return "event_triggered" if defn.event_triggered else "classic"


def not_found(key: str) -> ApiError:
    return ApiError(404, "not_found", f"Journey {key!r} was not found.")


def check_known(journeys: JourneyCatalog, key: str) -> None:
    """A 404 before any worker is asked for counts: an unknown key costs no fan-out."""
    if key not in journeys.entries and key not in journeys.failed:
        raise not_found(key)


def _failed(journeys: JourneyCatalog, key: str) -> dict[str, Any]:
    """A journey whose published body this worker cannot use: it runs nowhere."""
    return {"key": key, "status": "failed", "error": journeys.failed[key]}


def summary(entry: JourneyEntry, counts: Mapping[str, int]) -> dict[str, Any]:
    d = entry.definition
    return {
        "key": d.key,
        "name": d.name or d.key,
        "description": d.description,
        "status": d.status,
        "version": entry.version,
        "flavour": flavour(d),
        "published_at": iso_ms(entry.published_at),
        "counts": {name: int(counts.get(name, 0)) for name in TOTALS},
    }


def list_body(journeys: JourneyCatalog, counts: Counts) -> dict[str, Any]:
    keys = sorted(set(journeys.entries) | set(journeys.failed))
    return {
        "data": [
            summary(journeys.entries[k], counts.get(k, {}))
            if k in journeys.entries
            else _failed(journeys, k)
            for k in keys
        ]
    }


def _step_rows(entry: JourneyEntry, counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """The current version's steps in definition order, then those only earlier versions
    have (newest version first), each once."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for version, defn in (
        (entry.version, entry.definition),
        *sorted(entry.previous, key=lambda p: -p[0]),
    ):
        for s in defn.steps:
            if s.key in seen:
                continue
            seen.add(s.key)
            rows.append(
                {
                    "key": s.key,
                    "name": s.name or s.key,
                    "type": s.type,
                    "in_step": int(counts.get(f"step:{s.key}", 0)),
                    "reached": int(counts.get(f"reached:{s.key}", 0)),
                    "current": version == entry.version,
                }
            )
    return rows


def _by_prefix(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {
        name[len(prefix) :]: int(n) for name, n in sorted(counts.items()) if name.startswith(prefix)
    }


def one_body(journeys: JourneyCatalog, counts: Counts, key: str) -> dict[str, Any]:
    check_known(journeys, key)
    entry = journeys.entries.get(key)
    if entry is None:
        return _failed(journeys, key)
    mine = counts.get(key, {})
    body = summary(entry, mine)
    body["on_new_version"] = entry.definition.on_new_version
    body["steps"] = _step_rows(entry, mine)
    body["exits"] = _by_prefix(mine, "exit:")
    body["messages"] = {
        "requested": int(mine.get("requested", 0)),
        "skipped": _by_prefix(mine, "skipped:"),
    }
    body["previous_versions"] = [
        {"version": v, "name": d.name or d.key, "steps": [s.key for s in d.steps]}
        for v, d in sorted(entry.previous, key=lambda p: -p[0])
    ]
    return body
