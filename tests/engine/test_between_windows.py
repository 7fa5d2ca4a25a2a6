"""`between` windows (reference §1.2): the work per event stays flat however many events
wait in the window, and every flip is at the instant a brute-force recount puts it,
with and without the lookback cutting the window short."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from engage_stream.definitions import load_definitions
from engage_stream.engine import Engine
from engage_stream.profiles.record import ExternalId, ProfileRecord
from tests.engine.harness import DAY, MIN, T0, H, Harness, audience, event

ENGINE_DIR = str(Path(__file__).parents[2] / "engage_stream" / "engine")
TOPOLOGIES = Path(__file__).parents[2] / "topologies"


def lines_per_event(
    engine: Engine, old: list[int], n: int, step: int, measured: set[int]
) -> list[int]:
    """Python lines the engine runs for each of `n` events `step` apart (live clock),
    after events at `old` (0 for those not `measured`: tracing is slow)."""
    p = ProfileRecord("user_id:u1", external_ids=[ExternalId("user_id", "u1")])
    for i, ts in enumerate(old):
        engine.on_event(p, event("Page Viewed", ts, f"old{i}"), ts)
    count = 0

    def tracer(frame: FrameType, why: str, arg: Any) -> Any:
        nonlocal count
        if not frame.f_code.co_filename.startswith(ENGINE_DIR):
            return None
        if why == "line":
            count += 1
        return tracer

    out: list[int] = []
    for i in range(n):
        ts = T0 + i * step
        if i not in measured:
            engine.on_event(p, event("Page Viewed", ts, f"m{i}"), ts)
            out.append(0)
            continue
        count = 0
        sys.settrace(tracer)
        try:
            engine.on_event(p, event("Page Viewed", ts, f"m{i}"), ts)
        finally:
            sys.settrace(None)
        out.append(count)
    return out


@pytest.mark.parametrize(
    "definitions",
    [
        [audience("a", [{"event": "Page Viewed", "between": ["30 days", "90 days"]}])],
        [audience("a", [{"event": "Page Viewed", "between": ["30 days", "60 days"]}])],
        [
            audience(
                "a", [{"event": "Page Viewed", "between": ["30 days", "60 days"], "count": "= 3"}]
            )
        ],
        [
            audience(
                "a",
                [{"event": "Page Viewed", "between": ["30 days", "60 days"], "performed": False}],
            )
        ],
        load_definitions(TOPOLOGIES / "audiences" / "lapsed_visitors.yaml"),
    ],
    ids=["lookback-cut", "linear", "exactly-3", "not-performed", "lapsed_visitors"],
)
def test_work_per_event_does_not_grow_with_the_events_waiting_in_the_window(
    definitions: list[Any],
) -> None:
    """Page views every 10 minutes for 19 days, after 3 views 40 days before (counting
    all along): the new ones all wait to enter the window, 2,800 of them by the end, and
    the 2,800th event runs the lines the 300th did (counted, not timed)."""
    old = [T0 - 40 * DAY + i * H for i in range(3)]
    measured = {*range(200, 300), *range(2700, 2800)}
    per_event = lines_per_event(Engine(definitions), old, 2800, 10 * MIN, measured)
    early, late = per_event[200:300], per_event[2700:2800]
    assert sum(late) <= sum(early) * 1.1, (sum(early), sum(late))


def _brute_timeline(
    times: list[int], start: int, end: int, lookback: int | None, op: str, v: int, performed: bool
) -> tuple[list[int], Any]:
    def counts(ts: int, t: int) -> bool:
        if lookback is not None and t >= (ts // H + 1) * H + lookback:
            return False
        return t - end <= ts <= t - start

    def member(t: int) -> bool:
        n = sum(1 for ts in times if counts(ts, t))
        r = {">=": n >= v, ">": n > v, "=": n == v, "!=": n != v, "<=": n <= v, "<": n < v}[op]
        return r is performed

    edges = {ts + start for ts in times} | {ts + end + 1 for ts in times}
    if lookback is not None:
        edges |= {(ts // H + 1) * H + lookback for ts in times}
    return sorted(edges), member


@pytest.mark.parametrize("seed", range(60))
def test_between_flips_where_a_recount_flips(seed: int) -> None:
    """Every change comes out at the exact instant the recount changes, dense windows
    included (more events than `EDGE_WALK` waiting), whatever the arrival order."""
    rng = random.Random(seed)
    op, v = rng.choice([">=", ">", "=", "!=", "<=", "<"]), rng.randrange(0, 5)
    s, e = sorted(rng.sample(range(1, 48), 2))
    clamp = rng.random() < 0.5  # a lookback shorter than the window's end cuts it short
    days = rng.randrange(1, 2 + e // 24) if clamp else None
    performed = rng.random() < 0.8
    row = {"event": "E", "between": [f"{s} hours", f"{e} hours"], "count": f"{op} {v}"}
    history = {"days": days} if days is not None else {"days": 90}
    h = Harness([audience("aud", [{**row, "performed": performed}], include_history=history)])
    n = rng.choice([0, 5, 30, 200])
    spread = rng.choice([6, 48, 96]) * 60
    times = sorted(T0 + rng.randrange(0, spread) * MIN for _ in range(n))
    arrival = list(enumerate(times))
    rng.shuffle(arrival)
    start = T0 - 1
    h.track("Start", start)
    for i, ts in arrival:  # all stored ahead of their time; then one tick runs the clock
        h.track("E", ts, now=start, mid=f"e{i}")
    h.tick(T0 + 10 * DAY)
    edges, member = _brute_timeline(
        times, s * H, e * H, days * DAY if days is not None else None, op, v, performed
    )
    expected: list[tuple[int, bool]] = []
    current = False
    for t in [start, *edges]:
        if member(t) != current:
            current = not current
            expected.append((t, current))
    assert [(c.at, c.value) for c in h.changes] == expected
    assert h.wakeup() is None
