"""Cross-definition checks: duplicates, unknown references, cycles, operator/type fit."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engage_stream.definitions import DefinitionErrors, load_definitions
from engage_stream.definitions.checks import check_definitions, find_cycles
from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition

TRAITS = """
- kind: computed_trait
  key: total_revenue
  type: sum
  event: Order Completed
  property: revenue
- kind: computed_trait
  key: favorite_category
  type: most_frequent
  event: Product Viewed
  property: category
- kind: computed_trait
  key: categories
  type: unique_list
  event: Product Viewed
  property: category
"""


def problems_of(tmp_path: Path, text: str, traits: bool = True) -> list[str]:
    if traits:
        (tmp_path / "0_traits.yaml").write_text(TRAITS)
    f = tmp_path / "defs.yaml"
    f.write_text(textwrap.dedent(text).lstrip("\n"))
    with pytest.raises(DefinitionErrors) as info:
        load_definitions(tmp_path)
    prefix = f"{f}:"
    return [str(p).removeprefix(prefix) for p in info.value.problems]


def audience(key: str, *conditions: str) -> str:
    rows = "".join(f"    - {c}\n" for c in conditions)
    return f"- kind: audience\n  key: {key}\n  conditions:\n{rows}"


def test_duplicate_keys_share_one_namespace(tmp_path: Path) -> None:
    got = problems_of(
        tmp_path,
        audience("total_revenue", "{event: X}")
        + audience("a", "{event: X}")
        + audience("a", "{event: Y}"),
    )
    assert got[0].startswith(
        "2: total_revenue.key: duplicate key 'total_revenue': already used by the computed "
        f"trait at {tmp_path / '0_traits.yaml'}:2"
    )
    assert got[1].startswith("10: a.key: duplicate key 'a': already used by the audience at ")
    assert len(got) == 2


def test_unknown_references(tmp_path: Path) -> None:
    got = problems_of(
        tmp_path,
        audience(
            "a",
            "{audience: big_spender}",
            "{audience: total_revenue}",
            "{trait: total_revnue, source: computed, operator: exists}",
            "{trait: a2, source: computed, operator: exists}",
            "{trait: some_custom_trait, operator: exists}",
            "{event: X, where: [{property: p, operator: equals, value_from: {trait: whatever}}]}",
        )
        + audience("big_spenders", "{event: X}")
        + audience("a2", "{event: X}"),
    )
    assert got == [
        "4: a.conditions[0].audience: unknown audience 'big_spender' (did you mean "
        "'big_spenders'?)",
        "5: a.conditions[1].audience: 'total_revenue' is a computed trait, not an audience "
        "(compare it with a trait condition: `trait: total_revenue`)",
        "6: a.conditions[2].trait: unknown computed trait 'total_revnue': source: computed "
        "needs a computed trait defined alongside (did you mean 'total_revenue'?)",
        "7: a.conditions[3].trait: 'a2' is an audience, not a computed trait (use "
        "`audience: a2`, or `source: any`)",
    ]


def test_audience_cycle_through_audience_conditions(tmp_path: Path) -> None:
    got = problems_of(
        tmp_path,
        audience("a", "{audience: b}")
        + audience("b", "{event: X}", "{audience: c, member: false}")
        + audience("c", "{group: [{audience: a}]}")
        + audience("d", "{audience: a}"),
        traits=False,
    )
    assert got == ["4: a.conditions[0].audience: audience cycle: a -> b -> c -> a"]


def test_self_cycle_and_cycle_through_trait_condition(tmp_path: Path) -> None:
    got = problems_of(
        tmp_path,
        audience("selfish", "{audience: selfish}")
        + audience("x", "{trait: y, operator: equals, value: true}")
        + audience("y", "{audience: x}"),
        traits=False,
    )
    assert got == [
        "4: selfish.conditions[0].audience: audience cycle: selfish -> selfish",
        "8: x.conditions[0].trait: audience cycle: x -> y -> x",
    ]


def test_cycle_through_computed_trait_value_from(tmp_path: Path) -> None:
    got = problems_of(
        tmp_path,
        audience("a", "{trait: t, operator: greater_than, value: 1}")
        + """
- kind: computed_trait
  key: t
  type: counter
  event: X
  where: [{property: flag, operator: equals, value_from: {trait: a}}]
""",
        traits=False,
    )
    assert got == ["4: a.conditions[0].trait: definition cycle: a -> t -> a"]


def test_custom_source_is_no_dependency(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        audience("x", "{trait: y, source: custom, operator: equals, value: true}")
        + audience("y", "{audience: x}")
    )
    assert [d.key for d in load_definitions(tmp_path)] == ["x", "y"]


def test_operator_must_fit_the_computed_trait_type(tmp_path: Path) -> None:
    got = problems_of(
        tmp_path,
        audience(
            "a",
            "{trait: total_revenue, source: computed, operator: starts_with, value: '1'}",
            "{trait: total_revenue, operator: at_least, value: 'lots'}",
            "{trait: total_revenue, operator: equals_any_of, value: [1, two]}",
            "{trait: total_revenue, operator: within_last, value: 7 days}",
            "{trait: total_revenue, operator: at_least, value: 500}",
            "{trait: total_revenue, operator: exists}",
            "{trait: favorite_category, operator: starts_with, value: sh}",
            "{trait: categories, operator: greater_than, value: 2}",
            "{trait: categories, operator: contains, value: shoes}",
            "{trait: b, operator: starts_with, value: t}",
            "{trait: b, operator: equals, value: yes please}",
            "{trait: b, operator: equals, value: true}",
        )
        + audience("b", "{event: X}"),
    )
    assert got == [
        "4: a.conditions[0].operator: operator starts_with cannot apply to 'total_revenue', "
        "a sum computed trait (a number)",
        "5: a.conditions[1].value: 'total_revenue' is a sum computed trait (a number): "
        "compare it with a number, not 'lots'",
        "6: a.conditions[2].value: 'total_revenue' is a sum computed trait (a number): "
        "compare it with a number, not [1, 'two']",
        "7: a.conditions[3].operator: operator within_last cannot apply to 'total_revenue', "
        "a sum computed trait (a number)",
        "11: a.conditions[7].operator: operator greater_than cannot apply to 'categories', a "
        "unique_list computed trait (a list of values)",
        "13: a.conditions[9].operator: 'b' is an audience (membership is true/false): use "
        "equals, not_equals, exists or not_exists, not starts_with",
        "14: a.conditions[10].value: 'b' is an audience (membership is true/false), not "
        "'yes please'",
    ]


def test_duplicate_destination(tmp_path: Path) -> None:
    got = problems_of(
        tmp_path,
        audience("a", "{event: X}")
        + "  destinations:\n    - name: braze\n    - {name: braze, track: true}\n",
        traits=False,
    )
    assert got == [
        "7: a.destinations[1].name: destination 'braze' is listed twice (one entry "
        "per destination; it can send both identify and track)"
    ]


def test_check_definitions_without_sources() -> None:
    a = AudienceDefinition(key="a", conditions=[{"audience": "b"}])  # type: ignore[list-item]
    b = AudienceDefinition(key="b", conditions=[{"audience": "a"}])  # type: ignore[list-item]
    t = ComputedTraitDefinition(key="t", type="counter", event="X")
    got = [str(p) for p in check_definitions([a, b, t])]
    assert got == ["<definitions>: a.conditions[0].audience: audience cycle: a -> b -> a"]


def test_find_cycles_one_per_component_deterministic() -> None:
    edges = {
        "a": [("b", ()), ("c", ())],
        "b": [("a", ())],
        "c": [("a", ())],
        "d": [("d", ())],
        "e": [("a", ())],
    }
    assert find_cycles(edges) == [["a", "b", "a"], ["d", "d"]]


def test_a_definition_with_field_errors_is_still_cross_checked(tmp_path: Path) -> None:
    """A bad operator does not hide the same definition's unknown audience or its cycle."""
    got = problems_of(
        tmp_path,
        audience(
            "a1",
            "{trait: plan, operator: bogus, value: x}",
            "{audience: nope}",
            "{group: [{audience: a2}]}",
        )
        + audience("a2", "{audience: a1}"),
        traits=False,
    )
    assert len(got) == 3, got
    assert got[0].startswith("4: a1.conditions[0].operator: unknown operator 'bogus'")
    assert got[1:] == [
        "5: a1.conditions[1].audience: unknown audience 'nope'",
        "6: a1.conditions[2].group[0].audience: audience cycle: a1 -> a2 -> a1",
    ]


def test_invalid_definitions_take_part_in_duplicates_and_destinations(tmp_path: Path) -> None:
    got = problems_of(
        tmp_path,
        audience("a", "{event: X, within: 7 eons}")
        + "  destinations: [{name: braze}, {name: braze, track: true}]\n"
        + audience("a", "{event: Y}")
        + """
- kind: computed_trait
  key: t
  type: sum
  event: X
  where: [{property: p, operator: equals, value_from: {trait: b}}]
"""
        + audience("b", "{trait: t, source: computed, operator: exists}"),
        traits=False,
    )
    assert [g.split(": ", 2)[1] for g in got] == [
        "a.conditions[0].within",
        "a.destinations[1].name",
        "a.key",
        "t",  # a sum needs `property`: still found in the cycle below
        "b.conditions[0].trait",
    ]
    assert got[-1].endswith("definition cycle: b -> t -> b")


def test_malformed_raw_rows_are_skipped_not_crashed_on(tmp_path: Path) -> None:
    got = problems_of(
        tmp_path,
        audience(
            "a",
            "{audience: [x]}",
            "{trait: {x: 1}, operator: exists}",
            "{trait: p, source: [computed], operator: exists, value_from: 3}",
            "{group: 7}",
            "{event: X, where: oops, then: [1]}",
            "just a string",
        ),
        traits=False,
    )
    assert got and all(": unknown audience" not in g and "cycle" not in g for g in got)


def test_min_and_max_as_string_compare_as_text(tmp_path: Path) -> None:
    traits = """
    - {kind: computed_trait, key: lowest, type: min, event: E, property: p}
    - {kind: computed_trait, key: lowest_name, type: min, event: E, property: p, as_string: true}
    """
    got = problems_of(
        tmp_path,
        textwrap.dedent(traits).lstrip("\n")
        + audience(
            "a",
            "{trait: lowest, operator: starts_with, value: ab}",
            "{trait: lowest_name, operator: starts_with, value: ab}",
            "{trait: lowest_name, operator: equals, value: abc}",
        ),
        traits=False,
    )
    assert got == [
        "6: a.conditions[0].operator: operator starts_with cannot apply to 'lowest', a min "
        "computed trait (a number)"
    ]
