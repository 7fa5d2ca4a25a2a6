"""`GET /v1/audiences[/<key>[/members.csv]]`: what is defined, its compute status, its
size and its members.

Pure: the web view gathers the catalog, the worker's progress, the stored member counts
and the members (from every worker, when there are several: `api.proxy`) and this module
shapes the answer.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engage_stream.api.errors import ApiError
from engage_stream.definitions.catalog import Catalog, Status
from engage_stream.definitions.models import AudienceDefinition
from engage_stream.outputs.csv_export import (
    Format,
    TraitFormat,
    export_audience_csv,
    export_trait_csv,
)
from engage_stream.profiles.record import ProfileRecord

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


_FORMATS: tuple[Format, ...] = ("formatted", "unformatted", "single_column")
_TRAIT_FORMATS: tuple[TraitFormat, ...] = ("unformatted", "formatted", "formatted_rows")


@dataclass(frozen=True, slots=True)
class MembersExport:
    """A checked export request (reference §7 CSV formats): an audience's members, or the
    profiles holding a computed trait's value."""

    key: str
    fmt: str
    traits: list[str] | None
    trait: bool = False  # a computed-trait export
    id_type: str | None = None  # single_column: the identifier type written
    hashed: bool = True  # single_column: SHA-256 of each value, as Segment's file


def members_export(catalog: Catalog, key: str, params: Mapping[str, str]) -> MembersExport:
    """Checked before any worker is asked for members: a bad request costs no fan-out."""
    defn = catalog.get(key)
    if defn is None:
        raise ApiError(404, "not_found", f"Audience {key!r} was not found.")
    traits = [t for t in params.get("traits", "").split(",") if t] or None
    if defn.kind == "computed_trait":
        fmt = params.get("format", "unformatted")
        if fmt not in _TRAIT_FORMATS:
            raise ApiError(
                400, "validation_error", f"format must be one of {', '.join(_TRAIT_FORMATS)}"
            )
        return MembersExport(key, fmt, traits, trait=True)
    fmt = params.get("format", "formatted")
    if fmt not in _FORMATS:
        raise ApiError(400, "validation_error", f"format must be one of {', '.join(_FORMATS)}")
    if fmt != "single_column":
        return MembersExport(key, fmt, traits)
    id_type = params.get("id_type", "")
    if not id_type:
        raise ApiError(400, "validation_error", "single_column needs id_type (e.g. email)")
    hashed = params.get("hashed", "true").lower() not in ("false", "0", "no")
    return MembersExport(key, fmt, None, id_type=id_type, hashed=hashed)


def members_csv(export: MembersExport, members: Iterable[ProfileRecord]) -> bytes:
    """One row per member in profile id order, whichever worker each came from."""
    buf = io.StringIO()
    ordered = sorted(members, key=lambda r: r.profile_id)
    if export.trait:
        export_trait_csv(ordered, export.key, export.fmt, buf)  # type: ignore[arg-type]
    else:
        export_audience_csv(
            ordered,
            export.key,
            export.fmt,  # type: ignore[arg-type]
            export.traits,
            buf,
            id_type=export.id_type,
            hashed=export.hashed,
        )
    return buf.getvalue().encode()
