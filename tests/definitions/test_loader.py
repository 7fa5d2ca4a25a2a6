"""The YAML loader: every problem, in every file, with file:line: location: message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engage_stream.definitions import (
    DefinitionErrors,
    Problem,
    canonical_body,
    definition_from_body,
    definitions_fingerprint,
    load_definitions,
)
from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(DefinitionErrors) as info:
        load_definitions(path)
    return [str(p) for p in info.value.problems]


CART = """
kind: audience
key: cart_abandoners
conditions:
  - event: Product Added
    within: 7 days
    then_not:
      event: Order Completed
      within: 1 day
"""


def test_single_mapping_file(tmp_path: Path) -> None:
    defs = load_definitions(write(tmp_path, "cart.yaml", CART))
    assert len(defs) == 1
    (d,) = defs
    assert isinstance(d, AudienceDefinition)
    assert d.key == "cart_abandoners"
    assert d.conditions[0].then_not.within.ms == 86_400_000  # type: ignore[union-attr]


def test_list_file_and_directory_recursive_sorted(tmp_path: Path) -> None:
    write(tmp_path, "b/cart.yml", CART)
    write(
        tmp_path,
        "a/traits.yaml",
        """
        - kind: computed_trait
          key: total_revenue
          type: sum
          event: Order Completed
          property: revenue
        - kind: computed_trait
          key: orders_count
          type: counter
          event: Order Completed
        """,
    )
    write(tmp_path, "notes.txt", "not yaml: [")
    defs = load_definitions(tmp_path)
    assert [d.key for d in defs] == ["total_revenue", "orders_count", "cart_abandoners"]
    assert isinstance(defs[0], ComputedTraitDefinition)


def test_multiple_documents_and_empty_file(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "# nothing yet\n")
    write(tmp_path, "two.yaml", CART + "---\n" + CART.replace("cart_abandoners", "other"))
    assert [d.key for d in load_definitions(tmp_path)] == ["cart_abandoners", "other"]


def test_problem_str_format() -> None:
    assert str(Problem("f.yaml", "a.conditions[0]", 3, "bad")) == "f.yaml:3: a.conditions[0]: bad"
    assert str(Problem("f.yaml", "", 3, "bad")) == "f.yaml:3: bad"
    assert str(Problem("f.yaml", "a", None, "bad")) == "f.yaml: a: bad"


def test_out_of_range_window_in_funnel_step(tmp_path: Path) -> None:
    f = write(tmp_path, "cart.yaml", CART.replace("within: 1 day", "within: 1200 days"))
    assert problems(f) == [
        f"{f}:8: cart_abandoners.conditions[0].then_not.within: "
        "window out of range: at most 3 years (1095 days)"
    ]


def test_every_kind_of_field_problem_with_line_and_location(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "bad.yaml",
        """
        kind: audience
        key: broken
        conditions:
          - event: Product Viewed
            withn: 7 days
          - trait: plan
            operator: start_with
            value: pro
          - trait: plan
            operator: equals
            value: {nested: 1}
          - event: Page Viewed
            within: 7 dayz
          - event: Page Viewed
            count: lots
          - foo: 1
          - group:
              - audience: Not_A_Key
          - event: Page Viewed
            between: [90 days, 30 days]
          - trait: score
            operator: greater_than
        include_history: {days: 5000}
        destinations:
          - name: Braze
          - name: braze
            identify: false
        """,
    )
    got = problems(f)
    expected = [
        f"{f}:5: broken.conditions[0].withn: unknown field 'withn' (did you mean 'within'?)",
        f"{f}:7: broken.conditions[1].operator: unknown operator 'start_with' "
        "(did you mean 'starts_with'?); expected one of",
        f"{f}:11: broken.conditions[2].value: expected a string, a number, a boolean, a list, "
        "a duration (e.g. '7 days'); got a mapping",
        f"{f}:13: broken.conditions[3].within: invalid duration '7 dayz'",
        f"{f}:15: broken.conditions[4].count: invalid count 'lots'",
        f"{f}:16: broken.conditions[5]: a condition row needs one of: event, trait, audience, "
        "group",
        f"{f}:18: broken.conditions[6].group[0].audience: 'Not_A_Key' is not a valid key",
        f"{f}:20: broken.conditions[7].between: between: the first duration must be shorter",
        f"{f}:21: broken.conditions[8]: operator greater_than needs a number",
        f"{f}:23: broken.include_history.days: Input should be less than or equal to 1095",
        f"{f}:25: broken.destinations[0].name: 'Braze' is not a valid destination name",
        f"{f}:26: broken.destinations[1]: a destination needs identify and/or track",
    ]
    assert len(got) == len(expected), "\n".join(got)
    for g, e in zip(sorted(got), sorted(expected), strict=True):
        assert g.startswith(e), f"{g!r} does not start with {e!r}"


def test_yaml_syntax_error_and_other_files_still_checked(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "kind: audience\nkey: a\n  conditions: [\n")
    b = write(tmp_path, "b.yaml", CART.replace("7 days", "seven days"))
    got = problems(tmp_path)
    assert len(got) == 2
    assert got[0].startswith(f"{a}:3: YAML syntax error: mapping values are not allowed")
    assert got[1].startswith(f"{b}:5: cart_abandoners.conditions[0].within: invalid duration")


def test_duplicate_yaml_field(tmp_path: Path) -> None:
    f = write(tmp_path, "dup.yaml", CART + "key: again\n")
    assert problems(f) == [f"{f}:9: field 'key' is given twice in the same mapping"]


def test_missing_and_unknown_kind_and_missing_fields(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "kinds.yaml",
        """
        - key: no_kind
          conditions: [{event: X}]
        - kind: journey
          key: j
        - kind: computed_trait
          key: t
          type: sum
          event: Order Completed
        - kind: audience
          key: empty
          conditions: []
        - kind: audience
          name: no key
          conditions: [{event: X}]
        - just a string
        """,
    )
    assert problems(f) == [
        f"{f}:1: no_kind.kind: missing field 'kind': audience or computed_trait",
        f"{f}:3: j.kind: unknown kind 'journey': expected audience or computed_trait",
        f"{f}:5: t: a sum trait needs `property`",
        f"{f}:11: empty.conditions: needs at least 1 item",
        f"{f}:12: [4].key: missing required field 'key'",
        f"{f}:15: [5]: a definition is a mapping, not a string ('just a string')",
    ]


def test_top_level_scalar(tmp_path: Path) -> None:
    f = write(tmp_path, "s.yaml", "42\n")
    assert problems(f) == [
        f"{f}:1: a definitions file holds one definition (a mapping) or a list of them, "
        "not a number (42)"
    ]


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: no such file or directory"]
    (tmp_path / "empty").mkdir()
    assert problems(tmp_path / "empty") == [f"{tmp_path / 'empty'}: no *.yaml or *.yml files found"]


def test_many_problems_across_files_in_one_run(tmp_path: Path) -> None:
    write(tmp_path, "1.yaml", CART.replace("1 day", "0 days"))
    write(tmp_path, "2.yaml", CART.replace("cart_abandoners", "b").replace("Product Added", '""'))
    write(tmp_path, "3.yaml", "kind: audience\nkey: c\nconditions:\n  - audience: nobody\n")
    got = problems(tmp_path)
    assert len(got) == 3
    assert "1.yaml:8: cart_abandoners.conditions[0].then_not.within: a duration must be " in got[0]
    assert "2.yaml:4: b.conditions[0].event" in got[1]
    assert "3.yaml:4: c.conditions[0].audience: unknown audience 'nobody'" in got[2]


def test_reference_to_invalid_definition_is_not_also_unknown(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", CART.replace("7 days", "7 eons"))
    write(
        tmp_path, "b.yaml", "kind: audience\nkey: b\nconditions:\n  - audience: cart_abandoners\n"
    )
    got = problems(tmp_path)
    assert len(got) == 1 and "invalid duration" in got[0]


def test_canonical_body_and_fingerprint(tmp_path: Path) -> None:
    (a,) = load_definitions(write(tmp_path, "a.yaml", CART))
    (b,) = load_definitions(
        write(tmp_path, "b.yaml", CART.replace("within: 7 days", "within: {days: 7}"))
    )
    (c,) = load_definitions(write(tmp_path, "c.yaml", CART.replace("7 days", "8 days")))
    assert canonical_body(a) == canonical_body(b)
    assert definitions_fingerprint(a) == definitions_fingerprint(b)
    assert definitions_fingerprint(a) != definitions_fingerprint(c)
    assert definition_from_body(canonical_body(a)) == a


@pytest.mark.parametrize("kind", ["computed_trait", "audience"])
def test_between_windows_are_range_checked_alike(tmp_path: Path, kind: str) -> None:
    if kind == "computed_trait":
        text = (
            "kind: computed_trait\nkey: t\ntype: counter\nevent: X\nbetween: [1 days, 5000 days]\n"
        )
        where = "t.between"
    else:
        text = (
            "kind: audience\nkey: t\nconditions:\n  - event: X\n    between: [1 days, 5000 days]\n"
        )
        where = "t.conditions[0].between"
    f = write(tmp_path, "w.yaml", text)
    assert problems(f) == [f"{f}:5: {where}: window out of range: at most 3 years (1095 days)"]
    ok = text.replace("5000 days", "1095 days")
    assert load_definitions(write(tmp_path, "ok.yaml", ok))
