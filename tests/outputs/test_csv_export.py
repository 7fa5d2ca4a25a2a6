"""Audience CSV export in Segment's formatted / unformatted layouts (reference §7)."""

from __future__ import annotations

import csv
import io

import pytest

from engage_stream.outputs.csv_export import export_audience_csv, export_trait_csv
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


# -- legacy formats (reference §7): single column hashed, computed-trait CSVs -------------
LUKE_SHA256 = "A111F4879EC86CA6DE45B23732CB9CC5DA7EB381196377BC4933E4E1F50C7275"  # Segment's sample


def test_single_column_hashed_one_row_per_value(profiles: list[ProfileRecord]) -> None:
    import hashlib

    luke = member("use_l", [("email", "luke@force.com"), ("user_id", "u7")])
    out = io.StringIO()
    n = export_audience_csv([luke, *profiles], "vip", "single_column", None, out, id_type="email")
    assert n == 5, "one row per email of each member"
    assert rows(out.getvalue()) == [
        ["email"],
        [LUKE_SHA256],  # SHA-256 of the id, upper-case hex, as in Segment's sample file
        *[
            [hashlib.sha256(e.encode()).hexdigest().upper()]
            for e in ("a@x.io", "a2@x.io", "a3@x.io")
        ],
        [hashlib.sha256(b"b@x.io").hexdigest().upper()],
    ]


def test_single_column_raw_and_members_without_that_id(profiles: list[ProfileRecord]) -> None:
    out = io.StringIO()
    n = export_audience_csv(
        profiles, "vip", "single_column", None, out, id_type="user_id", hashed=False
    )
    assert n == 1, "use_b has no user_id: no row"
    assert rows(out.getvalue()) == [["user_id"], ["u1"]]


def test_single_column_needs_one_id_type_and_no_traits(profiles: list[ProfileRecord]) -> None:
    with pytest.raises(ValueError, match="single_column needs id_type"):
        export_audience_csv(profiles, "vip", "single_column", None, io.StringIO())
    with pytest.raises(ValueError, match="single_column has no trait columns"):
        export_audience_csv(
            profiles, "vip", "single_column", ["plan"], io.StringIO(), id_type="email"
        )
    with pytest.raises(ValueError, match="id_type is only for single_column"):
        export_audience_csv(profiles, "vip", "formatted", None, io.StringIO(), id_type="email")


@pytest.fixture
def trait_profiles() -> list[ProfileRecord]:
    a = member(
        "use_a",
        [("anonymous_id", "anon_1"), ("email", "luke@x.io"), ("email", "chosen@x.io")],
        None,
    )
    a.computed_traits["orders"] = TraitValue(34, 1)
    b = member(
        "use_b", [("anonymous_id", "anon_2"), ("email", "green@x.io"), ("group_id", "g1")], None
    )
    b.computed_traits["orders"] = TraitValue(23, 1)
    c = member("use_c", [("user_id", "u3")], None)
    c.computed_traits["orders"] = TraitValue(None, 1)  # cleared: no value, no row
    d = member("use_d", [("user_id", "u4")], None)  # never had one
    e = member("use_e", [("email", "e@x.io")], None)
    e.computed_traits["orders"] = TraitValue(["x", {"y": 1}], 1)
    return [a, b, c, d, e]


def test_trait_csv_unformatted(trait_profiles: list[ProfileRecord]) -> None:
    out = io.StringIO()
    assert export_trait_csv(trait_profiles, "orders", "unformatted", out) == 3
    assert rows(out.getvalue()) == [
        ["key", "value", "external_ids"],
        ["use_a", "34", '{"anonymous_id":["anon_1"],"email":["luke@x.io","chosen@x.io"]}'],
        ["use_b", "23", '{"anonymous_id":["anon_2"],"email":["green@x.io"]}'],
        ["use_e", '["x",{"y":1}]', '{"email":["e@x.io"]}'],
    ]


def test_trait_csv_formatted_indexed_columns(trait_profiles: list[ProfileRecord]) -> None:
    out = io.StringIO()
    assert export_trait_csv(trait_profiles, "orders", "formatted", out) == 3
    ids_a = '{"anonymous_id":["anon_1"],"email":["luke@x.io","chosen@x.io"]}'
    assert rows(out.getvalue()) == [
        ["key", "value", "external_ids", "anonymous_id", "email", "email_1"],
        ["use_a", "34", ids_a, "anon_1", "luke@x.io", "chosen@x.io"],
        [
            "use_b",
            "23",
            '{"anonymous_id":["anon_2"],"email":["green@x.io"]}',
            "anon_2",
            "green@x.io",
            "",
        ],
        ["use_e", '["x",{"y":1}]', '{"email":["e@x.io"]}', "", "e@x.io", ""],
    ]


def test_trait_csv_formatted_extra_rows(trait_profiles: list[ProfileRecord]) -> None:
    """Segment's third layout: one column per id type, an extra row per extra value with
    the first three columns repeated."""
    out = io.StringIO()
    assert export_trait_csv(trait_profiles, "orders", "formatted_rows", out) == 3
    ids_a = '{"anonymous_id":["anon_1"],"email":["luke@x.io","chosen@x.io"]}'
    assert rows(out.getvalue()) == [
        ["key", "value", "external_ids", "anonymous_id", "email"],
        ["use_a", "34", ids_a, "anon_1", "luke@x.io"],
        ["use_a", "34", ids_a, "", "chosen@x.io"],
        [
            "use_b",
            "23",
            '{"anonymous_id":["anon_2"],"email":["green@x.io"]}',
            "anon_2",
            "green@x.io",
        ],
        ["use_e", '["x",{"y":1}]', '{"email":["e@x.io"]}', "", "e@x.io"],
    ]


def test_trait_csv_empty_and_bad_format(trait_profiles: list[ProfileRecord]) -> None:
    out = io.StringIO()
    assert export_trait_csv(trait_profiles, "nothing", "formatted", out) == 0
    assert rows(out.getvalue()) == [["key", "value", "external_ids"]]
    with pytest.raises(ValueError, match="unknown computed-trait CSV format"):
        export_trait_csv(trait_profiles, "orders", "single_column", io.StringIO())  # type: ignore[arg-type]


FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


def attacker(i: int, value: str) -> ProfileRecord:
    """A member whose every sender-chosen text is a spreadsheet formula."""
    p = member(f"{value}{i}", [("email", value), ("user_id", value)], plan=value)
    p.computed_traits["orders"] = TraitValue(value, 1)
    return p


def test_formula_cells_are_neutralised_in_every_format() -> None:
    """OWASP CSV injection: every text cell a sender chose that starts like a formula is
    written with a leading single quote, in every audience and computed-trait format."""
    crafted = [attacker(i, v) for i, v in enumerate(FORMULAS)]
    texts = []
    for fmt in ("formatted", "unformatted"):
        out = io.StringIO()
        export_audience_csv(crafted, "vip", fmt, ["plan"], out)  # type: ignore[arg-type]
        texts.append(out.getvalue())
    out = io.StringIO()
    export_audience_csv(crafted, "vip", "single_column", None, out, id_type="email", hashed=False)
    texts.append(out.getvalue())
    for fmt in ("unformatted", "formatted", "formatted_rows"):
        out = io.StringIO()
        export_trait_csv(crafted, "orders", fmt, out)  # type: ignore[arg-type]
        texts.append(out.getvalue())
    for text in texts:
        for row in rows(text)[1:]:
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (cell, text)
    formatted = rows(texts[0])
    assert formatted[1] == [
        "'" + FORMULAS[0] + "0",
        "'" + FORMULAS[0],
        "'" + FORMULAS[0],
        "'" + FORMULAS[0],
    ]
    assert [r[0] for r in rows(texts[2])[1:]] == ["'" + v for v in FORMULAS]


def test_numbers_and_plain_text_are_written_as_they_are() -> None:
    """Only text that starts like a formula changes: a negative number trait stays a
    number, a hyphen inside text stays."""
    p = member("use_a", [("email", "a-b@x.io")], balance=-5, plan="semi-pro")
    out = io.StringIO()
    export_audience_csv([p], "vip", "formatted", ["balance", "plan"], out)
    assert rows(out.getvalue())[1] == ["use_a", "a-b@x.io", "-5", "semi-pro"]
