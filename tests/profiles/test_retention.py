"""A lookback longer than the history the workers keep is refused, never evaluated short
(issue: an edit recomputed a 365-day audience over 90 days of history and exited members)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engage_stream.commands import load_checked, retention_problems
from engage_stream.config import Settings
from engage_stream.definitions.checks import Item
from engage_stream.definitions.loader import collect_items
from engage_stream.profiles.retention import lookback_problem

TWICE_A_YEAR = """
kind: audience
key: twice_year
include_history: {days: 365}
conditions:
  - event: E
    count: ">= 2"
destinations: [{name: crm}]
"""


def _items(tmp_path: Path, text: str) -> list[Item]:
    f = tmp_path / "a.yaml"
    f.write_text(text)
    items, problems = collect_items(f)
    assert not problems
    return items


def test_validate_names_the_setting_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(TWICE_A_YEAR)
    assert load_checked(str(f), Settings(history_days=90)) is None
    err = capsys.readouterr().err
    assert f"{f}:4: twice_year.include_history:" in err
    assert "ENGAGE_HISTORY_DAYS" in err and "365" in err
    assert load_checked(str(f), Settings(history_days=365)) is not None


def test_apply_checks_the_items_it_publishes(tmp_path: Path) -> None:
    items = _items(tmp_path, TWICE_A_YEAR)
    assert [p.location for p in retention_problems(items, Settings())] == [
        "twice_year.include_history"
    ]
    assert retention_problems(items, Settings(history_days=400)) == []


def test_a_worker_with_less_history_refuses_the_definition(tmp_path: Path) -> None:
    (item,) = _items(tmp_path, TWICE_A_YEAR)
    assert item.definition is not None
    why = lookback_problem(item.definition, Settings(history_days=30))
    assert why is not None and "30 days" in why
    assert lookback_problem(item.definition, Settings(history_days=365)) is None
