"""Journey definitions: ranges, references, cycles, weights, limits, and the examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from engage_stream.definitions.loader import definition_files, load_definitions
from engage_stream.definitions.problems import DefinitionErrors
from engage_stream.journeys.loading import load_journeys
from engage_stream.journeys.models import JourneyDefinition, step_key
from tests.journeys.helpers import journey, v2

EXAMPLES = Path(__file__).resolve().parents[2] / "topologies" / "journeys"


def wait(key: str, nxt: str | None = None, d: str = "1 day") -> dict[str, Any]:
    return {"type": "wait", "key": key, "duration": d, "next": nxt}


def bad(steps: list[dict[str, Any]], match: str, **kw: Any) -> None:
    with pytest.raises(ValidationError, match=match):
        journey(steps, **kw)


def test_wait_range() -> None:
    bad([wait("w", d="4 minutes")], "between 5 minutes and 182 days")
    bad([wait("w", d="183 days")], "between 5 minutes and 182 days")
    assert journey([wait("w", d="5 minutes")]).steps[0].duration.ms == 300_000
    assert journey([wait("w", d="26 weeks")])


def test_references_exist() -> None:
    bad([wait("w", "nope")], "no step with key 'nope'")
    bad([{"type": "goto", "key": "g", "target": "zz"}], "no step with key 'zz'")


def test_no_cycles_and_reachable() -> None:
    bad([wait("a", "b"), {"type": "goto", "key": "b", "target": "a"}], "loop back")
    bad([wait("a"), wait("b")], "step b cannot be reached")
    bad([wait("a", "b"), wait("a")], "duplicate step key 'a'")


def test_hold_loop_back_is_not_a_cycle() -> None:
    j = v2(
        [
            {
                "type": "hold_until",
                "key": "h",
                "max_hold": "1 day",
                "branches": [{"name": "again", "event": "Ping", "loop_back": True}],
            }
        ]
    )
    assert j.steps[0].branches[0].loop_back


def test_hold_limits() -> None:
    branches = [{"name": f"b{i}", "event": "E"} for i in range(10)]
    with pytest.raises(ValidationError, match="at most 9"):
        v2([{"type": "hold_until", "key": "h", "max_hold": "1 day", "branches": branches}])
    with pytest.raises(ValidationError, match="between 5 minutes"):
        v2([{"type": "hold_until", "key": "h", "max_hold": "200 days", "branches": branches[:1]}])


def test_random_split_weights() -> None:
    def rs(*pcts: int) -> list[dict[str, Any]]:
        return [
            {
                "type": "random_split",
                "key": "r",
                "branches": [{"name": f"b{i}", "percent": p} for i, p in enumerate(pcts)],
            }
        ]

    bad(rs(50, 40), "add up to 100, not 90")
    bad(rs(20, 20, 20, 20, 10, 10), "at most 5")
    assert journey(rs(40, 40, 20))


def test_entry_rules() -> None:
    with pytest.raises(ValidationError, match="needs unique_identifier"):
        v2([wait("w")], entry={"event": "E", "rule": "every_time"})
    with pytest.raises(ValidationError, match="only applies to rule every_time"):
        v2([wait("w")], entry={"event": "E", "rule": "once", "unique_identifier": "x"})
    with pytest.raises(ValidationError, match="entry needs `audience`"):
        journey([wait("w")], entry={"segment": "x"})


def test_exit_limits_and_v1_restrictions() -> None:
    events = [{"event": f"E{i}"} for i in range(11)]
    with pytest.raises(ValidationError, match="at most 10"):
        v2([wait("w")], exit={"events": events})
    bad([wait("w")], "exit.events need an event-triggered", exit={"events": events[:1]})
    bad([wait("w")], "at most 365 days", exit={"after": "400 days"})
    with pytest.raises(ValidationError, match="multi_split is for classic"):
        v2(
            [
                {
                    "type": "multi_split",
                    "key": "m",
                    "branches": [
                        {"name": "a", "condition": [{"trait": "x", "operator": "exists"}]},
                        {"name": "b", "condition": [{"trait": "y", "operator": "exists"}]},
                    ],
                }
            ]
        )


def test_message_subscription_all_only_email() -> None:
    step = {"type": "send_message", "key": "s", "channel": "sms", "template": "t"}
    bad([{**step, "subscription": "all"}], "only available for email")
    assert journey([{**step, "channel": "email", "subscription": "all"}])


def test_reentry_shorthands() -> None:
    assert journey([wait("w")], reentry="30 days").reentry.mode == "after"
    assert journey([wait("w")], reentry="every_time").reentry.mode == "every_time"
    assert journey([wait("w")], reentry="once").reentry.mode == "never"


def test_step_keys_stable_and_shaped() -> None:
    k = step_key("first_purchase", "opened_email", False)
    assert k.startswith("j_o_first_purchase__opened_email_") and k == step_key(
        "first_purchase", "opened_email", False
    )
    assert len(step_key("a_very_long_journey_key", "a_very_long_step", True)) <= 31


def test_examples_load() -> None:
    journeys = {j.key: j for j in load_journeys(EXAMPLES)}
    assert set(journeys) >= {"abandoned_cart", "trial_to_paid", "onboarding_welcome", "win_back"}
    assert journeys["trial_to_paid"].event_triggered
    assert not journeys["abandoned_cart"].event_triggered


def test_examples_reference_existing_audiences() -> None:
    audiences = {d.key for d in load_definitions(EXAMPLES.parent)}
    for j in load_journeys(EXAMPLES):
        if j.entry.audience is not None:
            assert j.entry.audience in audiences, j.key


def test_definitions_loader_does_not_read_journey_files() -> None:
    assert not any(f.suffix == ".journey" for f in definition_files(EXAMPLES.parent))


def test_journey_problems_have_lines(tmp_path: Path) -> None:
    f = tmp_path / "j.journey"
    f.write_text(
        "kind: journey\nkey: bad\nentry: {audience: aud}\nsteps:\n"
        "  - type: wait\n    key: w\n    duration: 1 minute\n"
        "  - type: send_message\n    key: s\n    channel: fax\n    template: t\n"
    )
    with pytest.raises(DefinitionErrors) as e:
        load_journeys(tmp_path)
    text = [str(p) for p in e.value.problems]
    assert f"{f}:7: bad.steps[0].duration: out of range: between 5 minutes and 182 days" in text
    assert any(t.startswith(f"{f}:10: bad.steps[1].channel:") for t in text), text
    f.write_text(
        "kind: journey\nkey: g\nentry: {audience: aud}\nsteps:\n"
        "  - {type: goto, key: a, target: nope}\n"
    )
    with pytest.raises(DefinitionErrors, match="no step with key 'nope'"):
        load_journeys(f)


def test_min_wait_is_five_minutes_unless_lowered_for_demos(monkeypatch: Any) -> None:
    body = {
        "kind": "journey",
        "key": "j",
        "entry": {"audience": "aud"},
        "steps": [{"type": "wait", "key": "w", "duration": {"minutes": 0.25}}],
    }
    with pytest.raises(ValidationError, match="between 5 minutes and 182 days"):
        JourneyDefinition.model_validate(body)
    monkeypatch.setenv("ENGAGE_JOURNEY_MIN_WAIT_MS", "1000")
    assert JourneyDefinition.model_validate(body).steps[0].duration.ms == 15_000  # type: ignore[union-attr]
