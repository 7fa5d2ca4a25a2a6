"""`Settings.from_env`: every `ENGAGE_*` value parsed as its setting's type, and one that
cannot be is a `SettingsError` naming the variable (the CLI prints it, exit 2) instead of a
traceback."""

from __future__ import annotations

import pytest

from engage_stream.cli import main
from engage_stream.config import Settings, SettingsError, _parse


def test_part_options_are_parsed_as_their_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGAGE_ROCKSDB_BLOCK_CACHE_BYTES", " 1048576 ")
    monkeypatch.setenv("ENGAGE_ROCKSDB_BLOOM_BITS_PER_KEY", "12.5")
    monkeypatch.setenv("ENGAGE_PRODUCER_COMPRESSION_TYPE", "lz4")
    s = Settings.from_env()
    assert s.rocksdb.block_cache_bytes == 1_048_576
    assert s.rocksdb.bloom_bits_per_key == 12.5
    assert s.producer.compression_type == "lz4"
    assert Settings.from_env(web_port=7001).web_port == 7001  # (flags win)


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("Yes", True), ("1", True), ("off", False), ("0", False)]
)
def test_a_bool_option_is_read_from_its_spelling(raw: str, value: bool) -> None:
    assert _parse("ENGAGE_X_Y", raw, bool) is value


def test_a_bool_option_refuses_other_words() -> None:
    with pytest.raises(SettingsError, match="ENGAGE_X_Y='maybe': expected one of 1, true"):
        _parse("ENGAGE_X_Y", "maybe", bool)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "ENGAGE_ROCKSDB_BLOCK_CACHE_BYTES",
            "64MB",
            "ENGAGE_ROCKSDB_BLOCK_CACHE_BYTES='64MB': expected an integer",
        ),
        ("ENGAGE_ROCKSDB_BLOOM_BITS_PER_KEY", "many", "expected a number"),
        ("ENGAGE_BATCH_SIZE", "lots", "ENGAGE_BATCH_SIZE='lots': Input should be a valid integer"),
        (
            "ENGAGE_PRODUCER_COMPRESSION_TYPE",
            "brotli",
            "ENGAGE_PRODUCER_\\*: producer compression_type 'brotli'",
        ),
    ],
)
def test_a_value_that_does_not_parse_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, message: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingsError, match=message):
        Settings.from_env()


def test_the_cli_prints_the_problem_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENGAGE_ROCKSDB_WRITE_BUFFER_BYTES", "big")
    assert main(["validate", "topologies"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "engage-stream: invalid setting: ENGAGE_ROCKSDB_WRITE_BUFFER_BYTES='big': expected an integer"
    )
