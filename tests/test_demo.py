"""The demo's pieces that need no broker: its throughput figure and finding definitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from engage_stream import demo
from engage_stream.config import Settings


def test_throughput_counts_only_events_seen_between_two_readings() -> None:
    # 165 events were already processed at the first reading: not part of the rate
    samples = [(10.0, 0.0), (10.1, 165.0), (10.6, 2165.0), (11.1, 4000.0)]
    assert demo.throughput(samples) == pytest.approx((3835.0, 1.0))


def test_throughput_is_not_made_up_from_a_single_reading() -> None:
    assert demo.throughput([(1.0, 0.0), (1.1, 4000.0)]) is None
    assert demo.throughput([(1.0, 4000.0), (1.1, 4000.0)]) is None
    assert demo.throughput([]) is None


def test_definitions_default_to_the_checkout_and_can_be_given(tmp_path: Path) -> None:
    assert demo.definitions_dir(None) == demo.TOPOLOGIES and demo.TOPOLOGIES.is_dir()
    assert demo.definitions_dir(tmp_path) == tmp_path


def test_a_missing_definitions_directory_is_a_clear_error_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_broker(*args: object, **kwargs: object) -> None:
        raise AssertionError("the broker must not be started")

    monkeypatch.setattr(demo.broker, "start", no_broker)
    missing = tmp_path / "nope"
    rc = demo.run_demo(Settings(), 10, 2, tmp_path / "kafka", 1, definitions_path=missing)
    assert rc == 2
    assert f"definitions {missing} not found" in capsys.readouterr().err
    monkeypatch.setattr(demo, "TOPOLOGIES", missing)
    assert demo.definitions_dir(None) is None
    err = capsys.readouterr().err
    assert "topologies/ of a source checkout" in err and "--definitions PATH" in err
