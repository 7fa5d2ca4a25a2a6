"""Audience member and computed-trait CSV exports, in Segment's formats (reference §7).

Audiences (`export_audience_csv`, audiences/index.md):

- **formatted**: `key`, then one column per external id type (alphabetical; user
  collection only), with indexed headers when a member has several values of a type
  (`email`, `email_1`, `email_2`, as many as the member with the most), then one column
  per chosen trait (header = trait key; `traits.<key>` if it would clash with an id
  column);
- **unformatted**: `key`, `external_ids` (JSON object: id type → list of values, in the
  order they were added), and `traits` (JSON object of the chosen traits) when traits
  were asked for;
- **single_column**: one column, headed by the chosen id type (`email`), one row per value
  of it (a member with two emails has two rows, one with none has none), each SHA-256
  hashed by default as upper-case hex (Segment's sample: `luke@force.com` →
  `A111F487…`), raw with `hashed=False` — what list uploads (Snapchat, Braze) expect.

Computed traits (`export_trait_csv`, computed-traits.md): every profile with a value for
the trait, first three columns `key`, `value`, `external_ids` (as above), then
- **unformatted**: nothing more;
- **formatted**: one column per id type with indexed headers for extra values (as the
  audience's formatted export);
- **formatted_rows**: one column per id type, and a member's extra values on extra rows,
  the first three columns repeated.

`key` is the profile id (Segment's `segment_id` column). Members are the profiles whose
`audiences[<key>]` is `true`, in input order. Trait values are what a trait condition
sees (`ProfileRecord.trait`: audience, computed, then custom); in formatted columns
strings are written as is, other values (numbers, booleans, lists, objects) as JSON, and
a missing trait as an empty cell.

Formula injection (OWASP "CSV Injection"): a spreadsheet opening the file runs a cell that
begins with `=`, `+`, `-` or `@` (or a tab or carriage return before one) as a formula, and
every text cell here — profile ids, identifier values, string trait values — is whatever a
tracked event said. Such a cell is written with a single quote in front (`'=1+1`), which
spreadsheets show as text, as OWASP recommends; numbers written from JSON numbers (`-5`)
are left alone (they are not text a sender chose), as are the JSON and SHA-256 cells (they
begin with `{`, `[` or a hex digit). A consumer reading the file as data strips one leading
`'` from a text cell that begins with `'` followed by one of those characters.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import orjson

from engage_stream.profiles.record import ProfileRecord

Format = Literal["formatted", "unformatted", "single_column"]
TraitFormat = Literal["unformatted", "formatted", "formatted_rows"]


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


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """`text` as a spreadsheet shows it and never evaluates it (see the module doc)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    return orjson.dumps(value).decode()


def _id_columns(id_lists: Iterable[dict[str, list[str]]]) -> list[tuple[str, str, int]]:
    """(header, id type, index) per column: types alphabetically, indexed headers
    (`email`, `email_1`, ...) as many as the profile with the most values of a type."""
    widths: dict[str, int] = {}
    for ids in id_lists:
        for t, values in ids.items():
            widths[t] = max(widths.get(t, 0), len(values))
    columns: list[tuple[str, str, int]] = []
    for t in sorted(widths):
        for i in range(widths[t]):
            columns.append((t if i == 0 else f"{t}_{i}", t, i))
    return columns


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest().upper()


def export_audience_csv(
    profiles: Iterable[ProfileRecord],
    audience_key: str,
    fmt: Format,
    traits: list[str] | None,
    out: TextIO,
    *,
    id_type: str | None = None,
    hashed: bool = True,
) -> int:
    """Write the members of `audience_key` as CSV to `out`; returns how many rows of
    members were written (single_column: one per id value). `id_type` and `hashed` are
    single_column's: the one id type written, and whether it is SHA-256 hashed."""
    if fmt not in ("formatted", "unformatted", "single_column"):
        raise ValueError(f"unknown CSV format {fmt!r}: formatted, unformatted or single_column")
    if fmt != "single_column" and id_type is not None:
        raise ValueError("id_type is only for single_column")
    writer = csv.writer(out)
    if fmt == "single_column":
        if not id_type:
            raise ValueError("single_column needs id_type (the one id type written)")
        if traits:
            raise ValueError("single_column has no trait columns")
        writer.writerow([id_type])
        n = 0
        for p in profiles:
            if not is_member(p, audience_key):
                continue
            for value in _ids_by_type(p).get(id_type, []):
                writer.writerow([_sha256(value) if hashed else neutralise(value)])
                n += 1
        return n
    trait_keys = list(traits or [])
    if fmt == "unformatted":
        header = ["key", "external_ids"] + (["traits"] if traits is not None else [])
        writer.writerow(header)
        n = 0
        for p in profiles:
            if not is_member(p, audience_key):
                continue
            row = [neutralise(p.profile_id), orjson.dumps(_ids_by_type(p)).decode()]
            if traits is not None:
                row.append(orjson.dumps({k: p.trait(k) for k in trait_keys}).decode())
            writer.writerow(row)
            n += 1
        return n

    members = [(p, _ids_by_type(p)) for p in profiles if is_member(p, audience_key)]
    id_columns = _id_columns(ids for _, ids in members)
    used = {"key", *(h for h, _, _ in id_columns)}
    trait_headers = [k if k not in used else f"traits.{k}" for k in trait_keys]
    writer.writerow(["key", *(h for h, _, _ in id_columns), *trait_headers])
    for p, ids in members:
        row = [neutralise(p.profile_id)]
        for _, t, i in id_columns:
            values = ids.get(t, [])
            row.append(neutralise(values[i]) if i < len(values) else "")
        row.extend(_cell(p.trait(k)) for k in trait_keys)
        writer.writerow(row)
    return len(members)


def export_trait_csv(
    profiles: Iterable[ProfileRecord], trait_key: str, fmt: TraitFormat, out: TextIO
) -> int:
    """Write every profile with a value of the computed trait `trait_key` as CSV to `out`
    (in input order); returns how many profiles were written."""
    if fmt not in ("unformatted", "formatted", "formatted_rows"):
        raise ValueError(
            f"unknown computed-trait CSV format {fmt!r}: unformatted, formatted or formatted_rows"
        )
    writer = csv.writer(out)
    valued: list[tuple[ProfileRecord, Any, dict[str, list[str]]]] = []
    for p in profiles:
        tv = p.computed_traits.get(trait_key)
        if tv is not None and tv.value is not None:
            valued.append((p, tv.value, _ids_by_type(p)))
    head = ["key", "value", "external_ids"]
    if fmt == "unformatted":
        writer.writerow(head)
        for p, value, ids in valued:
            writer.writerow([neutralise(p.profile_id), _cell(value), orjson.dumps(ids).decode()])
        return len(valued)
    if fmt == "formatted":
        columns = _id_columns(ids for _, _, ids in valued)
        writer.writerow([*head, *(h for h, _, _ in columns)])
        for p, value, ids in valued:
            row = [neutralise(p.profile_id), _cell(value), orjson.dumps(ids).decode()]
            for _, t, i in columns:
                values = ids.get(t, [])
                row.append(neutralise(values[i]) if i < len(values) else "")
            writer.writerow(row)
        return len(valued)
    types = sorted({t for _, _, ids in valued for t in ids})
    writer.writerow([*head, *types])
    for p, value, ids in valued:
        first = [neutralise(p.profile_id), _cell(value), orjson.dumps(ids).decode()]
        for i in range(max((len(v) for v in ids.values()), default=1)):
            values = [ids.get(t, []) for t in types]
            writer.writerow([*first, *(neutralise(v[i]) if i < len(v) else "" for v in values)])
    return len(valued)
