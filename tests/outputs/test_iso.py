"""The one ISO-8601 formatter: the same text as `datetime.isoformat`, for every instant the
product can meet, and the same function behind every module that formats timestamps."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from engage_stream import sample_data
from engage_stream.api import profiles as profile_api
from engage_stream.outputs import records
from engage_stream.timestamps import iso_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = 86_400_000
LAST_ACCEPTED = 9_999_999_999_999  # 2286-11-20T17:46:39.999Z: ingest's upper bound


def datetime_iso(ms: int) -> str:
    """The reference: exact timedelta arithmetic (no float division), as Segment writes it."""
    text = (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def ms_of(*args: int) -> int:
    return (datetime(*args, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)


EDGES = [
    0,
    1,
    999,
    1000,
    59_999,
    3_599_999,
    DAY - 1,
    DAY,
    ms_of(2000, 2, 29, 23, 59, 59, 999_000),  # leap day of a leap century
    ms_of(2000, 3, 1),
    ms_of(2024, 2, 29, 12),
    ms_of(2100, 2, 28, 23, 59, 59, 999_000),  # 2100 is no leap year
    ms_of(2100, 3, 1),
    ms_of(2242, 3, 17, 1, 36, 23, 456_000),  # float `ms / 1000` loses this millisecond
    LAST_ACCEPTED,
    LAST_ACCEPTED + 1,
    -1,  # before the epoch: still exact, though ingest never stores it
    ms_of(1, 1, 1),
    ms_of(9999, 12, 31, 23, 59, 59, 999_000),
]


@pytest.mark.parametrize("ms", EDGES)
def test_edges_match_datetime(ms: int) -> None:
    assert iso_ms(ms) == datetime_iso(ms)


def test_known_values() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_735_689_600_123) == "2025-01-01T00:00:00.123Z"
    assert iso_ms(LAST_ACCEPTED) == "2286-11-20T17:46:39.999Z"


def test_every_millisecond_around_day_boundaries_and_many_random_instants() -> None:
    rng = random.Random(8)
    samples = [d * DAY + off for d in range(-3, 3) for off in range(-1500, 1500)]
    samples += [rng.randrange(0, LAST_ACCEPTED + 1) for _ in range(50_000)]
    # more days than the per-day cache holds, so it is cleared and refilled on the way
    samples += [rng.randrange(-DAY * 700_000, DAY * 2_900_000) for _ in range(10_000)]
    for ms in samples:
        assert iso_ms(ms) == datetime_iso(ms), ms


def test_every_module_formats_with_the_same_function() -> None:
    assert profile_api.iso is iso_ms
    assert records.iso_ms is iso_ms
    assert sample_data.iso is iso_ms
