"""Audience CSV export in Segment's formatted / unformatted layouts (reference §7)."""

from __future__ import annotations

import csv
import io

import pytest

from engage_stream.outputs.csv_export import export_audience_csv
from engage_stream.profiles.record import ExternalId, ProfileRecord, TraitValue


def member(
    pid: str, ids: list[tuple[str, str]], in_audience: bool | None = True, **traits: object
) -> ProfileRecord:
    p = ProfileRecord(
        pid,
        external_ids=[ExternalId(t, v, "accounts" if t == "group_id" else "users") for t, v in ids],
        traits={k: TraitValue(v, 1) for k, v in traits.items()},
    )
    if in_audience is not None:
        p.audiences["vip"] = TraitValue(in_audience, 1)
    return p


@pytest.fixture
def profiles() -> list[ProfileRecord]:
    a = member(
        "use_a",
        [
            ("user_id", "u1"),
            ("email", "a@x.io"),
            ("email", "a2@x.io"),
            ("email", "a3@x.io"),
            ("group_id", "g1"),
        ],
        plan="pro",
        tags=["x", "y"],
    )
    a.computed_traits["total_revenue"] = TraitValue(512.5, 1)
    b = member("use_b", [("anonymous_id", "anon-b"), ("email", "b@x.io")], plan="free")
    gone = member("use_gone", [("user_id", "u9")], in_audience=False)
    never = member("use_never", [("user_id", "u8")], in_audience=None)
    return [a, gone, b, never]


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_formatted_indexed_id_columns_and_traits(profiles: list[ProfileRecord]) -> None:
    out = io.StringIO()
    n = export_audience_csv(
        profiles, "vip", "formatted", ["plan", "total_revenue", "tags", "missing"], out
    )
    assert n == 2
    assert rows(out.getvalue()) == [
        [
            "key",
            "anonymous_id",
            "email",
            "email_1",
            "email_2",
            "user_id",
            "plan",
            "total_revenue",
            "tags",
            "missing",
        ],
        ["use_a", "", "a@x.io", "a2@x.io", "a3@x.io", "u1", "pro", "512.5", '["x","y"]', ""],
        ["use_b", "anon-b", "b@x.io", "", "", "", "free", "", "", ""],
    ]


def test_formatted_without_traits_and_clashing_trait_name(profiles: list[ProfileRecord]) -> None:
    out = io.StringIO()
    export_audience_csv(profiles[2:3], "vip", "formatted", None, out)
    assert rows(out.getvalue()) == [["key", "anonymous_id", "email"], ["use_b", "anon-b", "b@x.io"]]
    out = io.StringIO()
    export_audience_csv(profiles[2:3], "vip", "formatted", ["email"], out)
    assert rows(out.getvalue())[0] == ["key", "anonymous_id", "email", "traits.email"]


def test_unformatted(profiles: list[ProfileRecord]) -> None:
    out = io.StringIO()
    n = export_audience_csv(profiles, "vip", "unformatted", ["plan", "total_revenue"], out)
    assert n == 2
    assert rows(out.getvalue()) == [
        ["key", "external_ids", "traits"],
        [
            "use_a",
            '{"user_id":["u1"],"email":["a@x.io","a2@x.io","a3@x.io"]}',
            '{"plan":"pro","total_revenue":512.5}',
        ],
        [
            "use_b",
            '{"anonymous_id":["anon-b"],"email":["b@x.io"]}',
            '{"plan":"free","total_revenue":null}',
        ],
    ]
    out = io.StringIO()
    export_audience_csv(profiles, "vip", "unformatted", None, out)
    assert rows(out.getvalue())[0] == ["key", "external_ids"]


def test_empty_audience_and_bad_format(profiles: list[ProfileRecord]) -> None:
    out = io.StringIO()
    assert export_audience_csv(profiles, "nobody", "formatted", None, out) == 0
    assert rows(out.getvalue()) == [["key"]]
    with pytest.raises(ValueError):
        export_audience_csv(profiles, "vip", "excel", None, io.StringIO())  # type: ignore[arg-type]
