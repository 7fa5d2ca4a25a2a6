"""`engage-stream apply` of journey files and `engage-stream journey pause|resume|archive`
against a real broker's definitions topic."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engage_stream import commands
from engage_stream.config import Settings
from engage_stream.stream import definitions_topic

pytestmark = pytest.mark.broker

AUDIENCE = "kind: audience\nkey: carters\nconditions: [{event: Product Added, within: 1 day}]\n"
JOURNEY = """kind: journey
key: cart
entry: {audience: carters}
steps:
  - {type: send_to_destination, key: ad, destinations: [ads], next: w}
  - {type: wait, key: w, duration: 1 day}
"""


def _journey_record(settings: Settings) -> definitions_topic.DefinitionRecord:
    current = definitions_topic.read_all(settings)
    return current[definitions_topic.record_key("journey", "cart")]


def test_apply_then_pause_resume_archive(
    worker_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(AUDIENCE)
    (tmp_path / "cart.journey").write_text(JOURNEY)
    s = worker_settings
    assert (
        commands.cmd_apply(argparse.Namespace(path=str(tmp_path), prune=False, dry_run=False), s)
        == 0
    )
    assert "create    journey:cart -> version 1" in capsys.readouterr().out
    first = _journey_record(s)
    assert (first.version, first.evaluated_version, first.body["status"]) == (1, 1, "live")
    # the published body reads back as the journey, steps and all
    assert first.body["steps"][0]["type"] == "send_to_destination"

    def journey(action: str) -> int:
        return commands.cmd_journey(argparse.Namespace(action=action, key="cart"), s)

    assert journey("pause") == 0
    paused = _journey_record(s)
    assert (paused.version, paused.evaluated_version, paused.body["status"]) == (2, 1, "paused")
    assert journey("pause") == 0 and "already paused" in capsys.readouterr().out
    assert journey("resume") == 0
    resumed = _journey_record(s)
    assert resumed.body["status"] == "live" and resumed.evaluated_version == 1
    # re-applying the file now is a no-op: the body is the file's again
    assert (
        commands.cmd_apply(argparse.Namespace(path=str(tmp_path), prune=False, dry_run=False), s)
        == 0
    )
    assert "0 to publish" in capsys.readouterr().out
    assert journey("archive") == 0
    assert _journey_record(s).body["status"] == "archived"
    assert journey("resume") == 1
    assert "archived: it cannot be resumed" in capsys.readouterr().err
    assert commands.cmd_journey(argparse.Namespace(action="pause", key="nope"), s) == 1
