"""Write-key files and inline keys: which source a key names, and keys never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engage_stream.collector.settings import CollectorSettings
from engage_stream.collector.write_keys import Source, WriteKeyError, WriteKeys

SECRET = "wk_live_9f8e7d6c5b4a"


def test_yaml_file_maps_keys_to_sources_with_optional_rate_limits(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        f"{SECRET}: web\nwk_backend: {{source_id: backend, rate_limit: 50}}\n# comment\n"
    )
    keys = WriteKeys.load_file(path)
    assert len(keys) == 2
    assert keys.lookup(SECRET) == Source(source_id="web")
    assert keys.lookup("wk_backend") == Source(source_id="backend", rate_limit=50)
    assert keys.lookup("unknown") is None
    assert keys.lookup("") is None and keys.lookup(None) is None
    assert keys.source_ids() == ["backend", "web"]


def test_json_file_is_read_as_json(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({SECRET: "web", "k2": {"source_id": "ios"}}))
    assert WriteKeys.load_file(path).lookup("k2") == Source(source_id="ios")


def test_keys_never_appear_in_repr_or_errors(tmp_path: Path) -> None:
    keys = WriteKeys.parse({SECRET: "web"}, "test")
    assert SECRET not in repr(keys) and "web" in repr(keys)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"{SECRET}: {{source_id: ''}}\n")
    with pytest.raises(WriteKeyError) as exc:
        WriteKeys.load_file(bad)
    assert SECRET not in str(exc.value) and "entry 1" in str(exc.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"{SECRET}: [web\n")
    with pytest.raises(WriteKeyError) as exc:
        WriteKeys.load_file(broken)
    assert SECRET not in str(exc.value) and "line" in str(exc.value)
    settings = CollectorSettings(write_keys=f"{SECRET}=web")
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (["web"], "expected a mapping"),
        ({"": "web"}, "entry 1: a write key"),
        ({"a:b": "web"}, "without ':'"),
        ({"k": 5}, "entry 1"),
        ({"k": {"source_id": "web", "rate_limit": -1}}, "rate_limit"),
        ({"k": " web"}, "surrounding spaces"),
    ],
)
def test_invalid_entries_are_refused_with_where(data: object, problem: str) -> None:
    with pytest.raises(WriteKeyError, match=problem):
        WriteKeys.parse(data, "keys.yaml")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WriteKeyError, match="cannot read the write-key file"):
        WriteKeys.load_file(tmp_path / "nope.yaml")


def test_inline_keys_add_to_the_file_and_win(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("k1: web\nk2: ios\n")
    config = CollectorSettings(write_keys_file=path, write_keys="k2=android, k3=backend")
    keys = WriteKeys.from_settings(config)
    assert [keys.lookup(k) for k in ("k1", "k2", "k3")] == [
        Source(source_id="web"),
        Source(source_id="android"),
        Source(source_id="backend"),
    ]
    with pytest.raises(WriteKeyError, match="expected key=source_id"):
        WriteKeys.parse_inline("k1")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGAGE_COLLECTOR_PORT", "9999")
    monkeypatch.setenv("ENGAGE_COLLECTOR_CORS_ORIGINS", "https://a.example, https://b.example/")
    monkeypatch.setenv("ENGAGE_COLLECTOR_RATE_LIMIT", "12.5")
    monkeypatch.setenv("ENGAGE_COLLECTOR_WRITE_KEYS", "k=web")
    config = CollectorSettings.from_env(host="0.0.0.0")
    assert config.port == 9999 and config.host == "0.0.0.0" and config.rate_limit == 12.5
    assert config.cors_origins == ("https://a.example", "https://b.example")
    assert not config.any_origin
    # env() round-trips, secrets included, for a child process
    for k, v in config.env().items():
        monkeypatch.setenv(k, v)
    assert CollectorSettings.from_env() == config
