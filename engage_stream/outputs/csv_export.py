"""Audience member CSV export, in Segment's formats (reference §7, audiences/index.md).

- **formatted**: `key`, then one column per external id type (alphabetical; user
  collection only), with indexed headers when a member has several values of a type
  (`email`, `email_1`, `email_2`, as many as the member with the most), then one column
  per chosen trait (header = trait key; `traits.<key>` if it would clash with an id
  column);
- **unformatted**: `key`, `external_ids` (JSON object: id type → list of values, in the
  order they were added), and `traits` (JSON object of the chosen traits) when traits
  were asked for.

`key` is the profile id (Segment's `segment_id` column). Members are the profiles whose
`audiences[<key>]` is `true`, in input order. Trait values are what a trait condition
sees (`ProfileRecord.trait`: audience, computed, then custom); in formatted columns
strings are written as is, other values (numbers, booleans, lists, objects) as JSON, and
a missing trait as an empty cell.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import orjson

from engage_stream.profiles.record import ProfileRecord

Format = Literal["formatted", "unformatted"]


def is_member(profile: ProfileRecord, audience_key: str) -> bool:
    tv = profile.audiences.get(audience_key)
    return tv is not None and tv.value is True


def _ids_by_type(profile: ProfileRecord) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for x in profile.external_ids:
        if x.collection != "users":
            continue
        values = out.setdefault(x.type, [])
        if x.id not in values:
            values.append(x.id)
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def export_audience_csv(
    profiles: Iterable[ProfileRecord],
    audience_key: str,
    fmt: Format,
    traits: list[str] | None,
    out: TextIO,
) -> int:
    """Write the members of `audience_key` as CSV to `out`; returns how many were written."""
    if fmt not in ("formatted", "unformatted"):
        raise ValueError(f"unknown CSV format {fmt!r}: formatted or unformatted")
    writer = csv.writer(out)
    trait_keys = list(traits or [])
    if fmt == "unformatted":
        header = ["key", "external_ids"] + (["traits"] if traits is not None else [])
        writer.writerow(header)
        n = 0
        for p in profiles:
            if not is_member(p, audience_key):
                continue
            row = [p.profile_id, orjson.dumps(_ids_by_type(p)).decode()]
            if traits is not None:
                row.append(orjson.dumps({k: p.trait(k) for k in trait_keys}).decode())
            writer.writerow(row)
            n += 1
        return n

    members = [(p, _ids_by_type(p)) for p in profiles if is_member(p, audience_key)]
    widths: dict[str, int] = {}
    for _, ids in members:
        for t, values in ids.items():
            widths[t] = max(widths.get(t, 0), len(values))
    id_columns: list[tuple[str, str, int]] = []  # (header, id type, index)
    for t in sorted(widths):
        for i in range(widths[t]):
            id_columns.append((t if i == 0 else f"{t}_{i}", t, i))
    used = {"key", *(h for h, _, _ in id_columns)}
    trait_headers = [k if k not in used else f"traits.{k}" for k in trait_keys]
    writer.writerow(["key", *(h for h, _, _ in id_columns), *trait_headers])
    for p, ids in members:
        row = [p.profile_id]
        for _, t, i in id_columns:
            values = ids.get(t, [])
            row.append(values[i] if i < len(values) else "")
        row.extend(_cell(p.trait(k)) for k in trait_keys)
        writer.writerow(row)
    return len(members)
