"""Grained windows (`windows.Window.grained`): a computed trait's `within` of a day or more
lets an event leave at the end of its grain (≤ 0.1 % of the window, ≤ an hour, dividing
an hour) + the window, so the
entries that count and leave together are kept as one. Checked against a recount of the
raw events with exactly those exits (the "late-exit oracle"), against the native core,
for the bound on the state, and for states stored in the exact layout before."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any, get_args

import orjson
import pytest

from engage_stream.definitions.models import Between, Duration, History, TraitType
from engage_stream.engine import Engine
from engage_stream.engine.aggregates import order_key, value_key
from engage_stream.engine.windows import Window
from engage_stream.events import ProfileEvent
from engage_stream.profiles.record import ProfileRecord
from tests.engine.harness import DAY, MIN, T0, H, Harness, exit_at, trait
from tests.engine.test_oracle import NUMERIC, brute_trait

KINDS: tuple[str, ...] = get_args(TraitType)  # every trait type
VALUES = (1, 2, 3.5, 0.1, 7, -2, "5", "0.5", "x", "b", "B")


@pytest.mark.parametrize(
    ("days", "grain"),
    [(1, 80_000), (2, 150_000), (7, 10 * MIN), (30, 30 * MIN), (90, H), (365, H)],
)
def test_a_grained_exit_is_late_by_at_most_a_thousandth_of_the_window_never_early(
    days: int, grain: int
) -> None:
    rng = random.Random(days)
    for history in (None, History(days=days), History(days=1000)):
        w = Window.of(Duration(days=days), None, history, 0).grained()
        assert w.grain == grain and H % grain == 0
        for _ in range(500):
            ts = T0 + rng.randrange(-400 * DAY, 400 * DAY)
            late = w.leave(ts) - (ts + days * DAY)
            assert 0 < late <= min(days * DAY // 1000, H), "never early, at most 0.1 % late"
            assert w.leave(ts) == exit_at(ts, days * DAY)
            lookback_end = (ts // H + 1) * H + (history.ms if history else 10**15)
            assert w.leave(ts) <= lookback_end, "the lookback never cuts a grain short"


def test_short_between_and_lookback_cut_windows_stay_exact() -> None:
    hours = Window.of(Duration(hours=23), None, None, 0)
    assert hours.grained().grain == 0, "below a day: exact"
    between = Window.of(None, Between(start=Duration(days=1), end=Duration(days=3)), None, 0)
    assert between.grained().grain == 0, "an event enters late: its exits stay exact"
    cut = Window.of(Duration(days=2), None, History(days=1), 0)
    assert cut.grained().grain == 0, "the lookback cuts the window itself short"


def brute(kind: str, live: list[tuple[int, str, Any]], had_value: bool) -> Any:
    """`test_oracle.brute_trait`, and the types it leaves out."""
    if kind == "avg":
        nums = [NUMERIC.get(v, v) for _, _, v in live]
        nums = [v for v in nums if type(v) in (int, float)]
        if not nums:
            return None
        return (math.fsum(nums) if any(type(x) is float for x in nums) else sum(nums)) / len(nums)
    if kind in ("most_frequent", "unique_list"):
        counts = Counter(value_key(v) for _, _, v in live)
        if not counts:
            return None
        if kind == "unique_list":
            return sorted(counts, key=order_key)
        top = max(counts.values())
        return min((k for k, n in counts.items() if n == top), key=order_key)
    if kind == "first":  # (ties at one instant break on the value)
        return min(live, key=lambda x: (x[0], value_key(x[2])))[2] if live else None
    return brute_trait(kind, live, had_value)


def dense_events(rng: random.Random, window: int) -> list[tuple[int, str, Any]]:
    """Events crowded into few grains, on distinct instants."""
    g = window // 1000
    step = rng.choice((1000, max(1, g // 7), MIN))
    span = rng.choice((10 * g, 100 * g, 2 * window))
    times = sorted(rng.sample(range(0, span, step), min(rng.randrange(1, 40), span // step)))
    return [(T0 + x, f"e{i:02d}", rng.choice(VALUES)) for i, x in enumerate(times)]


@pytest.mark.parametrize("seed", range(80))
def test_grained_traits_match_a_late_exit_recount(seed: int) -> None:
    rng = random.Random(seed)
    kind = rng.choice(KINDS)
    days = rng.choice((1, 2, 7))
    window = days * DAY
    extra = {"min_frequency": 1} if kind == "most_frequent" else {}
    prop = {} if kind == "counter" else {"property": "v"}
    h = Harness([trait("t", kind, "E", within=f"{days} days", **prop, **extra)])
    values = dense_events(rng, window)
    arrival = list(values)
    rng.shuffle(arrival)
    for ts, mid, v in arrival:  # out of order, some late (the clock ahead of the event)
        h.track(
            "E", ts, {"v": v}, now=max(h.now, ts + rng.choice((0, 0, window // 1000, H))), mid=mid
        )
    numeric = kind in ("sum", "avg", "min", "max")
    qualifying = [x for x in values if not numeric or type(NUMERIC.get(x[2], x[2])) in (int, float)]
    instants = {h.now}
    for ts, _, _ in values:
        instants |= {ts + window - 1, ts + window, exit_at(ts, window) - 1, exit_at(ts, window)}
    for t in sorted(x for x in instants if x >= h.now):
        h.tick(t)
        live = [x for x in qualifying if x[0] <= t < exit_at(x[0], window)]
        expected = brute(kind, live, any(x[0] <= t for x in qualifying))
        assert h.value("t") == expected, f"{kind} within {days} d at +{(t - T0) / MIN:.1f} min"
    assert h.wakeup() is None


def test_a_busy_profiles_window_is_bounded_by_its_grains() -> None:
    """6,000 events in 90 days: an exact window would hold 6,000 entries, a grained one
    holds at most one per hour-long grain (and per distinct value)."""
    h = Harness(
        [
            trait("n", "counter", "E", within="90 days"),
            trait("top", "most_frequent", "E", property="p", within="90 days"),
        ],
        history_days=0.01,  # (the profile's own event history is not what is measured)
    )
    rng = random.Random(3)
    times = sorted(T0 + rng.randrange(0, 90 * DAY) for _ in range(6_000))
    for i, ts in enumerate(times):
        h.track("E", ts, {"p": "abc"[i % 3]}, now=ts, mid=f"m{i}")
    assert h.value("n") == 6_000
    counter, top = Engine.state(h.record(), "n"), Engine.state(h.record(), "top")
    assert len(counter[0]) <= 2_160 and sum(counter[4]) == 6_000
    assert len(top[0]) <= 3 * 2_160 and sum(top[4]) == 6_000
    assert top[2] == {"a": 2_000, "b": 2_000, "c": 2_000}
    assert len(counter[0]) < 0.4 * 6_000 and len(top[0]) < 0.8 * 6_000


@pytest.mark.parametrize("engine", ["python", "native"])
def test_a_state_stored_in_the_exact_layout_carries_on_grained(engine: str) -> None:
    """A window stored before grains (one entry per event, no counts) is read as entries
    of one event each; they leave at their grain's end like any other."""
    defs = [trait("n", "counter", "E", within="1 day", include_anonymous=True)]
    if engine == "native":
        pytest.importorskip("engage_stream_core", reason="native core not built (make setup)")
        from engage_stream.engine.native import NativeEngine

        eng: Any = NativeEngine(defs)
    else:
        eng = Engine(defs)
    rec = ProfileRecord(profile_id="anonymous_id:p")
    rec.engine["n"] = orjson.dumps([[T0, T0 + H], None, 2, 2, T0]).decode()
    ev = ProfileEvent(
        message_id="m3",
        type="track",
        timestamp=T0 + 2 * H,
        received_at=T0 + 2 * H,
        profile_id=rec.profile_id,
        event="E",
        properties={},
        anonymous_id="p",
    )
    assert [c.value for c in eng.on_event(rec, ev, T0 + 2 * H)] == [3]
    assert Engine.state(rec, "n") == [[T0, T0 + H, T0 + 2 * H], None, 3, 3, [1, 1, 1], T0]
    assert [c.value for c in eng.on_time(rec, exit_at(T0, DAY))] == [2]


@pytest.mark.parametrize("seed", range(150))
def test_the_native_core_folds_grains_as_the_python_engine_does(seed: int) -> None:
    pytest.importorskip("engage_stream_core", reason="native core not built (make setup)")
    from tests.engine.test_differential import Case, run_case

    rng = random.Random(seed)
    days = rng.choice((1, 2, 7))
    defs = [
        trait(f"t_{kind}", kind, "E", within=f"{days} days", include_anonymous=True, **prop)
        for kind in rng.sample(KINDS, 4)
        for prop in [{} if kind == "counter" else {"property": "v"}]
    ]
    steps: list[tuple[Any, ...]] = []
    values = dense_events(rng, days * DAY)
    arrival = list(values)
    rng.shuffle(arrival)
    now = T0
    for ts, mid, v in arrival:
        now = max(now, ts + rng.choice((0, 0, days * DAY // 1000, H)))
        ev = ProfileEvent(
            message_id=mid,
            type="track",
            timestamp=ts,
            received_at=now,
            profile_id="anonymous_id:p",
            event="E",
            properties={"v": v},
            anonymous_id="p",
        )
        steps.append(("event", ev, now))
        if rng.random() < 0.3:
            now += rng.choice((MIN, days * DAY // 1000, days * DAY))
            steps.append(("tick", "anonymous_id:p", now))
    for ts, _, _ in sorted(values):
        if exit_at(ts, days * DAY) > now:
            now = exit_at(ts, days * DAY)
            steps.append(("tick", "anonymous_id:p", now))
    run = run_case(Case([defs], steps))
    assert run.divergence is None, run.divergence
    assert run.native_defs == len(defs)


def test_a_last_keeps_the_newest_of_equal_values_in_one_grain() -> None:
    """`[1]` and `[1.0]` are equal to Python, not to the core: a last never folds (its
    staircase keeps the newest alone), so both engines keep the newest as sent."""
    h = Harness([trait("l", "last", "E", property="v", within="1 day")])
    h.track("E", T0, {"v": [1]})
    h.track("E", T0 + 1000, {"v": [1.0]})
    kept = Engine.state(h.record(), "l")
    assert kept[0] == [T0 + 1000] and kept[1] == [[1.0]] and type(kept[1][0][0]) is float
    pytest.importorskip("engage_stream_core", reason="native core not built (make setup)")
    from tests.engine.test_differential import Case, run_case

    defs = [trait("l", "last", "E", property="v", within="1 day", include_anonymous=True)]
    steps: list[tuple[Any, ...]] = [
        (
            "event",
            ProfileEvent(
                message_id=f"m{i}",
                type="track",
                timestamp=T0 + i * 1000,
                received_at=T0 + i * 1000,
                profile_id="anonymous_id:p",
                event="E",
                properties={"v": v},
                anonymous_id="p",
            ),
            T0 + i * 1000,
        )
        for i, v in enumerate(([1], [1.0], {"a": 1, "b": 2}, {"b": 2, "a": 1}))
    ]
    steps.append(("tick", "anonymous_id:p", exit_at(T0, DAY)))
    run = run_case(Case([defs], steps))
    assert run.divergence is None, run.divergence
