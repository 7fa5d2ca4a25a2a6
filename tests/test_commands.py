"""`apply` planning without a broker: the union of the topic's definitions and the files
is validated, and versions continue across deletion and re-creation."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import pytest

from engage_stream import commands
from engage_stream.commands import plan_apply
from engage_stream.config import Settings
from engage_stream.definitions.checks import Item
from engage_stream.definitions.loader import collect_items, parse_items
from engage_stream.stream.definitions_topic import DefinitionRecord, Plan

T = 1_000


def rec(kind: str, key: str, version: int = 1, **body: object) -> DefinitionRecord:
    return DefinitionRecord(
        key=key,
        kind=kind,  # type: ignore[arg-type]
        version=version,
        applied_at=T,
        created_at=T,
        body={"kind": kind, "key": key, **body},
    )


def audience_rec(key: str, *conditions: dict[str, object], version: int = 1) -> DefinitionRecord:
    return rec("audience", key, version, conditions=list(conditions) or [{"event": "X"}])


def items(text: str) -> list[Item]:
    found, problems = parse_items(textwrap.dedent(text).lstrip("\n"), "f.yaml")
    assert not problems, problems
    return found


def apply(
    existing: list[DefinitionRecord], text: str, prune: bool = False
) -> tuple[Plan, list[str]]:
    plan, problems = plan_apply(existing, items(text), prune=prune, now_ms=2 * T)
    return plan, [str(p) for p in problems]


def test_a_subset_may_reference_an_audience_already_on_the_topic() -> None:
    plan, problems = apply(
        [audience_rec("buyers")],
        """
        kind: audience
        key: repeat_buyers
        conditions: [{audience: buyers}, {event: Order Completed, count: ">= 2"}]
        """,
    )
    assert problems == []
    assert [(r.key, r.version) for r in plan.publish] == [("repeat_buyers", 1)]
    assert plan.delete == []


def test_a_cycle_across_separate_applies_is_rejected_naming_both() -> None:
    _, problems = apply(
        [audience_rec("a1", {"audience": "a2"}), audience_rec("a2")],
        """
        kind: audience
        key: a2
        conditions:
          - audience: a1
        """,
    )
    assert problems == ["f.yaml:4: a2.conditions[0].audience: audience cycle: a2 -> a1 -> a2"]


def test_replaced_definitions_are_checked_in_their_new_form() -> None:
    existing = [audience_rec("a1", {"audience": "a2"}), audience_rec("a2", {"audience": "a1"})]
    plan, problems = apply(existing, "kind: audience\nkey: a2\nconditions: [{event: X}]\n")
    assert problems == [] and [r.key for r in plan.publish] == ["a2"]


def test_pruning_what_a_remaining_definition_needs_is_rejected() -> None:
    text = "kind: audience\nkey: fans\nconditions: [{audience: buyers}]\n"
    _, problems = apply([audience_rec("buyers")], text, prune=True)
    assert problems == ["f.yaml:3: fans.conditions[0].audience: unknown audience 'buyers'"]


def test_a_dangling_definition_on_the_topic_is_reported_as_on_the_topic() -> None:
    """From before apply checked the union: blocks applies until replaced or pruned."""
    existing = [audience_rec("fans", {"audience": "buyers"})]
    _, problems = apply(existing, "kind: audience\nkey: other\nconditions: [{event: X}]\n")
    assert problems == [
        "topic engage.definitions: fans.conditions[0].audience: unknown audience 'buyers'"
    ]
    _, problems = apply(existing, "kind: audience\nkey: fans\nconditions: [{event: X}]\n")
    assert problems == []


def test_a_key_used_by_the_other_kind_on_the_topic_is_rejected() -> None:
    existing = [rec("computed_trait", "vip", type="counter", event="Y")]
    text = "kind: audience\nkey: vip\nconditions: [{event: X}]\n"
    _, problems = apply(existing, text)
    assert problems == [
        "f.yaml:2: vip.key: duplicate key 'vip': already used by the computed trait at topic "
        "engage.definitions (audience and computed-trait keys share one namespace)"
    ]
    _, problems = apply(existing, text, prune=True)  # the trait is deleted by the same apply
    assert problems == []


def test_problems_of_invalid_file_definitions_still_get_the_union_checks(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "kind: audience\nkey: a\nconditions:\n  - {event: X, within: 7 eons}\n"
        "  - {audience: nope}\n  - {audience: b}\n"
    )
    found, own = collect_items(tmp_path)
    _, union = plan_apply([audience_rec("b", {"audience": "a"})], found, prune=False, now_ms=2 * T)
    got = [p.message for p in [*own, *union]]
    assert got[0].startswith("invalid duration")
    assert got[1:] == ["unknown audience 'nope'", "audience cycle: a -> b -> a"]


def test_a_recreated_key_continues_the_version_sequence() -> None:
    text = "kind: audience\nkey: buyers\nconditions: [{event: X}]\n"
    first, _ = apply([], text)
    (created,) = first.publish
    assert created.version == 1 and first.created == ["audience:buyers"]

    deleted, problems = apply(
        [created], "kind: audience\nkey: other\nconditions: [{event: X}]\n", prune=True
    )
    assert problems == []
    (marker,) = deleted.delete
    assert (marker.deleted, marker.version, marker.body) == (True, 1, {})

    again, _ = apply([marker], text.replace("X", "Y"))
    (recreated,) = again.publish
    assert recreated.version == 2 and again.created == ["audience:buyers"]
    assert recreated.created_at == 2 * T and not recreated.deleted

    same, _ = apply([marker], text)  # the same body as before deletion is still a creation
    assert [r.version for r in same.publish] == [2] and same.unchanged == []


def test_an_edit_keeps_created_at_and_an_unchanged_body_publishes_nothing() -> None:
    existing = [audience_rec("buyers", version=3)]
    plan, _ = apply(existing, "kind: audience\nkey: buyers\nconditions: [{event: X}]\n")
    assert plan.publish == [] and plan.unchanged == ["audience:buyers"]
    plan, _ = apply(existing, "kind: audience\nkey: buyers\nconditions: [{event: Z}]\n")
    (edit,) = plan.publish
    assert (edit.version, edit.created_at, plan.created) == (4, T, [])


def test_cmd_apply_reports_every_problem_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(
        "kind: audience\nkey: a\nconditions: [{event: X, within: 7 eons}, {audience: b}]\n"
    )
    (tmp_path / "b.yaml").write_text("kind: audience\nkey: vip\nconditions: [{event: X}]\n")
    topic = {r.topic_key: r for r in [rec("computed_trait", "vip", type="counter", event="Y")]}
    published: list[Plan] = []
    monkeypatch.setattr(commands, "ensure_topics", lambda *a, **k: [])
    monkeypatch.setattr(commands.definitions_topic, "read_all", lambda s: topic)
    monkeypatch.setattr(commands.definitions_topic, "publish", lambda s, p: published.append(p))
    args = argparse.Namespace(path=str(tmp_path), prune=False, dry_run=False)
    assert commands.cmd_apply(args, Settings()) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 2)[1] for line in err[:-1]] == [
        "a.conditions[0].within",
        "a.conditions[1].audience",
        "vip.key",
    ]
    assert err[-1] == f"3 problem(s) found in {tmp_path}" and published == []

    f.unlink()
    (tmp_path / "b.yaml").write_text("kind: audience\nkey: fans\nconditions: [{event: X}]\n")
    assert commands.cmd_apply(args, Settings()) == 0
    assert [r.key for p in published for r in p.publish] == ["fans"]


def test_validate_checks_journey_files_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).resolve().parent.parent / "topologies"
    (tmp_path / "a.yaml").write_text((root / "audiences" / "cart_abandoners.yaml").read_text())
    (tmp_path / "j.journey").write_text("kind: journey\nkey: bad\nname: x\nsteps: []\n")
    args = argparse.Namespace(path=str(tmp_path))
    assert commands.cmd_validate(args, Settings()) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'j.journey'}:4: bad.steps:" in err
    args = argparse.Namespace(path=str(root))
    assert commands.cmd_validate(args, Settings()) == 0
    assert "4 journey(s)" in capsys.readouterr().out


def journeys(text: str) -> list[tuple[object, object]]:
    from engage_stream.journeys.loading import parse_journey_items

    found, problems = parse_journey_items(textwrap.dedent(text).lstrip("\n"), "j.journey")
    assert not problems, problems
    return found  # type: ignore[return-value]


CART_JOURNEY = """
kind: journey
key: cart
entry: {audience: a}
steps:
  - {type: wait, key: w, duration: 1 day}
"""


def apply_journey(
    existing: list[DefinitionRecord], text: str, now: int = 2 * T
) -> tuple[Plan, list[str]]:
    plan, problems = plan_apply(
        existing,
        [],
        prune=False,
        now_ms=now,
        journeys=journeys(text),  # type: ignore[arg-type]
    )
    return plan, [str(p) for p in problems]


def test_a_journey_is_published_with_versions_and_keeps_its_earlier_bodies() -> None:
    topic = [audience_rec("a")]
    plan, problems = apply_journey(topic, CART_JOURNEY)
    assert problems == []
    (v1,) = plan.publish
    assert (v1.kind, v1.key, v1.version, v1.history) == ("journey", "cart", 1, [])
    # what workers read back is the journey itself (a step's `type` is a model default)
    from engage_stream.journeys.models import JourneyDefinition

    (written, _), *_ = journeys(CART_JOURNEY)
    assert JourneyDefinition.model_validate(v1.body) == written
    # pausing is not a new evaluated version: instances go on
    plan, _ = apply_journey([*topic, v1], CART_JOURNEY + "status: paused\n")
    (paused,) = plan.publish
    assert (paused.version, paused.evaluated_version, paused.history) == (2, 1, [])
    # a step edit is: the body it replaces is kept for the instances that drain on it
    plan, _ = apply_journey([*topic, paused], CART_JOURNEY.replace("1 day", "2 days"))
    (v3,) = plan.publish
    assert (v3.version, v3.evaluated_version) == (3, 3)
    assert v3.history == [{"version": 1, "body": paused.body}]


def test_a_journey_reading_an_unknown_audience_is_refused_with_its_location() -> None:
    plan, problems = apply_journey([], CART_JOURNEY)
    assert problems == ["j.journey:3: cart.entry.audience: no audience 'a'"]
    # an audience on the topic or in the same apply will do
    assert apply_journey([audience_rec("a")], CART_JOURNEY)[1] == []


def test_at_most_25_versions_of_a_journey() -> None:
    topic: list[DefinitionRecord] = [audience_rec("a")]
    current = None
    for n in range(1, 26):
        plan, problems = apply_journey(
            topic + ([current] if current else []), CART_JOURNEY.replace("1 day", f"{n} days")
        )
        assert problems == [], n
        current = plan.publish[0]
    assert current is not None and current.version == 25 and len(current.history) == 24
    _, problems = apply_journey([*topic, current], CART_JOURNEY.replace("1 day", "99 days"))
    assert problems and "at most 25 versions" in problems[0]


def test_pruning_the_audience_a_journey_reads_is_refused() -> None:
    plan, _ = apply_journey([audience_rec("a")], CART_JOURNEY)
    topic = [audience_rec("a"), audience_rec("b"), *plan.publish]
    found = items("kind: audience\nkey: b\nconditions: [{event: X}]\n")
    # pruning to `b` and the journey: `a` would go, and the journey reads it
    _, problems = plan_apply(
        topic,
        found,
        prune=True,
        now_ms=3 * T,
        journeys=journeys(CART_JOURNEY),  # type: ignore[arg-type]
    )
    assert [str(p) for p in problems] == ["j.journey:3: cart.entry.audience: no audience 'a'"]
    # pruning to `b` alone takes the journey too: nothing left reads `a`
    plan, problems = plan_apply(topic, found, prune=True, now_ms=3 * T)
    assert problems == [] and {r.key for r in plan.delete} == {"a", "cart"}


def test_a_broadcast_is_published_as_a_definitions_record() -> None:
    from engage_stream.broadcasts.loading import BROADCASTS
    from engage_stream.broadcasts.models import BroadcastDefinition

    text = "kind: broadcast\nkey: b\nchannel: email\ntemplate: t\nrecipients: [{audience: a}]\n"
    found, problems = BROADCASTS.parse(text, "b.broadcast")
    assert problems == []
    plan, problems = plan_apply(
        [audience_rec("a")], [], prune=False, now_ms=2 * T, broadcasts=found
    )
    assert problems == []
    (rec,) = plan.publish
    assert rec.kind == "broadcast"
    assert BroadcastDefinition.model_validate(rec.body) == found[0][0]
    _, problems = plan_apply([], [], prune=False, now_ms=2 * T, broadcasts=found)
    assert [str(p) for p in problems] == [
        "b.broadcast:5: b.recipients[0].audience: no audience 'a'"
    ]
