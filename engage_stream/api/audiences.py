"""`GET /v1/audiences[/<key>]`: what is defined, its compute status and its size.

Pure: the web view gathers the catalog, the worker's progress and the stored member counts
(from every worker, when there are several) and this module shapes the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engage_stream.api.profiles import ApiError
from engage_stream.definitions.catalog import Catalog, Status
from engage_stream.definitions.models import AudienceDefinition

STATUSES: tuple[Status, ...] = ("Preparing", "Computing", "Live", "Disabled", "Failed")


def status_of(
    key: str, catalog: Catalog, active: set[str], computing: set[str], ready: bool
) -> Status:
    """Segment's real-time compute statuses (reference §1.8)."""
    if key in catalog.failed:
        return "Failed"
    if key not in active:
        return "Disabled"
    if not ready:
        return "Preparing"
    if key in computing:
        return "Computing"
    return "Live"


def statuses(
    catalog: Catalog, active: set[str], computing: set[str], ready: bool
) -> dict[str, Status]:
    keys = set(catalog.entries) | set(catalog.failed)
    return {k: status_of(k, catalog, active, computing, ready) for k in sorted(keys)}


def merge_statuses(parts: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """One status per key across workers: the least advanced one wins."""
    rank = {s: i for i, s in enumerate(("Failed", "Preparing", "Computing", "Disabled", "Live"))}
    out: dict[str, str] = {}
    for part in parts:
        for k, s in part.items():
            if k not in out or rank.get(s, 0) < rank.get(out[k], 0):
                out[k] = s
    return out


def summary(
    catalog: Catalog, status: Mapping[str, str], sizes: Mapping[str, int], key: str
) -> dict[str, Any]:
    entry = catalog.entries.get(key)
    if entry is None:
        return {"key": key, "status": status.get(key, "Failed"), "error": catalog.failed.get(key)}
    d = entry.definition
    out: dict[str, Any] = {
        "key": d.key,
        "name": d.display_name,
        "description": d.description,
        "kind": d.kind,
        "computation_id": d.computation_id(d.computation_prefix),
        "version": entry.version,
        "created_at": entry.created_at,
        "status": status.get(key, "Preparing"),
        "destinations": [x.name for x in d.destinations],
    }
    if isinstance(d, AudienceDefinition):
        out["size"] = int(sizes.get(key, 0))
    return out


def list_body(
    catalog: Catalog, status: Mapping[str, str], sizes: Mapping[str, int], kind: str
) -> dict[str, Any]:
    keys = sorted(set(catalog.entries) | set(catalog.failed))
    items = [summary(catalog, status, sizes, k) for k in keys]
    return {"data": [x for x in items if x.get("kind", kind) == kind]}


def one_body(
    catalog: Catalog, status: Mapping[str, str], sizes: Mapping[str, int], key: str
) -> dict[str, Any]:
    if key not in catalog.entries and key not in catalog.failed:
        raise ApiError(404, "not_found", f"Audience {key!r} was not found.")
    return summary(catalog, status, sizes, key)
