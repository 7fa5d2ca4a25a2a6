"""`timestamps.iso_ms`: exact text for every instant, whatever it kept from earlier calls."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from engage_stream import timestamps
from engage_stream.timestamps import iso_ms

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _expected(ms: int) -> str:
    d = _EPOCH + timedelta(milliseconds=ms)  # (exact: integer milliseconds)
    return f"{d.year:04d}-{d:%m-%dT%H:%M:%S}.{d.microsecond // 1000:03d}Z"


def test_instants_of_every_era_read_as_datetime_writes_them() -> None:
    rng = random.Random(5)
    lo = int((datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds() * 1000)
    hi = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds() * 1000)
    for ms in [0, -1, 1, lo, hi, *(rng.randrange(lo, hi) for _ in range(3000))]:
        assert iso_ms(ms) == _expected(ms)
        assert iso_ms(ms) == _expected(ms), "the same instant again (kept whole)"


def test_more_instants_than_it_keeps_still_read_right() -> None:
    base = 1_800_000_000_000
    n = timestamps._MAX_RECENT * 2 + 7
    texts = [iso_ms(base + i) for i in range(n)]
    assert len(timestamps._RECENT) <= timestamps._MAX_RECENT
    assert texts == [_expected(base + i) for i in range(n)]
