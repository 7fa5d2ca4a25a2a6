"""Epoch milliseconds as ISO-8601 UTC text, the one formatter every output uses.

Integer arithmetic, not `datetime.fromtimestamp(ms / 1000)`: the float division loses the
last millisecond for about 3 % of instants after 2242 (ingest accepts event times up to
2286), and a timestamp must read the same in the Profile API, the output records and the
sample data. The date part costs a `datetime` once per day, not once per call: outputs
format one timestamp per change. And the changes one event causes share its instant, so
the instants formatted last are kept whole too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000
_DAYS: dict[int, str] = {}  # day number → "YYYY-MM-DDT"
_MAX_DAYS = 4096  # then start over: bounds memory, not correctness
_RECENT: dict[int, str] = {}  # ms → the whole text, for the instants formatted lately
_MAX_RECENT = 4096


def iso_ms(ms: int) -> str:
    """Epoch ms → `2025-01-31T12:00:00.000Z`, exact for every instant of years 1 to 9999."""
    text = _RECENT.get(ms)
    if text is None:
        if len(_RECENT) >= _MAX_RECENT:
            _RECENT.clear()
        text = _RECENT[ms] = _format(ms)
    return text


def _format(ms: int) -> str:
    day, rem = divmod(ms, _DAY_MS)
    date = _DAYS.get(day)
    if date is None:
        if len(_DAYS) >= _MAX_DAYS:
            _DAYS.clear()
        d = _EPOCH + timedelta(days=day)
        date = _DAYS[day] = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T"
    s, milli = divmod(rem, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{date}{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"
