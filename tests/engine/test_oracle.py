"""Randomised checks against a brute-force oracle that recounts the raw events at each
instant: capped counts, window edges and aggregates must agree at every sampled time,
whatever the arrival order."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from tests.engine.harness import DAY, MIN, T0, H, Harness, audience, trait

OPS = [">=", ">", "=", "!=", "<=", "<"]


def in_window(ts: int, t: int, cond: dict[str, Any]) -> bool:
    if "within" in cond:
        return t - cond["_ms"] < ts <= t
    start, end = cond["_between"]
    return t - end <= ts <= t - start


def holds(n: int, op: str, v: int) -> bool:
    return {
        ">=": n >= v,
        ">": n > v,
        "=": n == v,
        "!=": n != v,
        "<=": n <= v,
        "<": n < v,
    }[op]


@pytest.mark.parametrize("seed", range(40))
def test_count_conditions_match_a_recount(seed: int) -> None:
    rng = random.Random(seed)
    op, v = rng.choice(OPS), rng.randrange(0, 4)
    if rng.random() < 0.5:
        hours = rng.randrange(1, 30)
        cond: dict[str, Any] = {"within": f"{hours} hours", "_ms": hours * H}
    else:
        s, e = sorted(rng.sample(range(1, 30), 2))
        cond = {"between": [f"{s} hours", f"{e} hours"], "_between": (s * H, e * H)}
    performed = rng.random() < 0.8
    row = {k: x for k, x in cond.items() if not k.startswith("_")}
    h = Harness(
        [audience("aud", [{"event": "E", "count": f"{op} {v}", "performed": performed, **row}])]
    )
    times = sorted(T0 + rng.randrange(0, 48 * 60) * MIN for _ in range(rng.randrange(0, 12)))
    arrival = list(times)
    rng.shuffle(arrival)
    h.track("Start", T0)
    for i, ts in enumerate(arrival):
        h.track("E", ts, now=max(h.now, ts), mid=f"e{i}")
    t = h.now
    while t < T0 + 4 * DAY:
        h.tick(t)
        n = sum(1 for ts in times if in_window(ts, t, cond))
        expected = holds(n, op, v) is performed
        assert h.member() is expected, f"at +{(t - T0) / H:.2f} h: {n} events, {op} {v}"
        t += rng.choice([MIN, 17 * MIN, H, 3 * H])


NUMERIC = {"5": 5, "0.5": 0.5}  # numeric strings aggregate as numbers


def brute_trait(kind: str, values: list[tuple[int, str, Any]], had_value: bool) -> Any:
    """`had_value`: some qualifying event counted at some instant up to now (counters,
    sums and unique counts are 0 from then on)."""
    nums = [NUMERIC.get(v, v) for _, _, v in values]
    nums = [v for v in nums if type(v) in (int, float)]
    zero = 0 if had_value else None
    if kind == "counter":
        return len(values) or zero
    if kind == "sum":
        return (
            (math.fsum(nums) if any(type(x) is float for x in nums) else sum(nums))
            if nums
            else zero
        )
    if kind == "min":
        return min(nums) if nums else None
    if kind == "max":
        return max(nums) if nums else None
    if kind == "first":
        return min(values)[2] if values else None
    if kind == "last":
        return max(values)[2] if values else None
    if kind == "unique_count":
        return len({str(v) for _, _, v in values}) or zero
    raise AssertionError(kind)


@pytest.mark.parametrize("seed", range(40))
def test_computed_traits_match_a_recount(seed: int) -> None:
    rng = random.Random(seed)
    kind = rng.choice(["counter", "sum", "min", "max", "first", "last", "unique_count"])
    choice = rng.random()
    if choice < 0.4:
        hours = rng.randrange(1, 30)
        window: dict[str, Any] = {"within": f"{hours} hours"}

        def counts(ts: int, t: int) -> bool:
            return t - hours * H < ts <= t

        start = 0
    elif choice < 0.7:
        s, e = sorted(rng.sample(range(1, 30), 2))
        window = {"between": [f"{s} hours", f"{e} hours"]}

        def counts(ts: int, t: int) -> bool:
            return t - e * H <= ts <= t - s * H

        start = s * H
    else:
        days = rng.randrange(1, 3)
        window = {"include_history": {"days": days}}

        def counts(ts: int, t: int) -> bool:  # hour-precise lookback
            return ts <= t < (ts // H + 1) * H + days * DAY

        start = 0

    prop = {} if kind == "counter" else {"property": "v"}
    h = Harness([trait("t", kind, "E", **prop, **window)])
    values: list[tuple[int, str, Any]] = []
    for i in range(rng.randrange(0, 14)):
        ts = T0 + rng.randrange(0, 48 * 60) * MIN
        values.append((ts, f"e{i:02d}", rng.choice([1, 2, 3.5, 0.1, 7, -2, "5", "0.5", "x"])))
    arrival = list(values)
    rng.shuffle(arrival)
    for ts, mid, v in arrival:
        h.track("E", ts, {"v": v}, now=max(h.now, ts), mid=mid)
    t = max(h.now, T0)
    while t < T0 + 5 * DAY:
        h.tick(t)
        live = [x for x in values if counts(x[0], t)]
        qualifying = [x for x in values if kind in ("counter", "first", "last") or x[2] != "x"]
        had_value = any(x[0] + start <= t for x in qualifying)
        expected = brute_trait(kind, [x for x in live if x in qualifying], had_value)
        assert h.value("t") == expected, f"{kind} {window} at +{(t - T0) / H:.2f} h"
        t += rng.choice([MIN, 17 * MIN, H, 3 * H])


@pytest.mark.parametrize("seed", range(40))
def test_funnels_match_a_recount(seed: int) -> None:
    rng = random.Random(seed)
    must = rng.random() < 0.5
    span = rng.randrange(1, 12) * H
    window = rng.choice([None, rng.randrange(2, 40) * H])
    op, v = rng.choice(OPS[:2] + OPS[4:]), rng.randrange(0, 3)
    row: dict[str, Any] = {
        "event": "A",
        "count": f"{op} {v}",
        ("then" if must else "then_not"): {"event": "B", "within": f"{span // H} hours"},
    }
    if window is not None:
        row["within"] = f"{window // H} hours"
    h = Harness([audience("aud", [row], include_history=False)], applied_at={"aud": 0})
    events = [
        (rng.choice("AB"), T0 + rng.randrange(0, 48 * 60) * MIN)
        for _ in range(rng.randrange(0, 12))
    ]
    arrival = list(enumerate(events))
    rng.shuffle(arrival)
    h.track("Start", T0)
    for i, (name, ts) in arrival:
        h.track(name, ts, now=max(h.now, ts), mid=f"e{i}")
    parents = [ts for name, ts in events if name == "A"]
    children = [ts for name, ts in events if name == "B"]

    def qualifies(tp: int, t: int) -> bool:
        if tp > t or (window is not None and tp <= t - window):
            return False
        if must:
            return any(tp < tc <= min(tp + span, t) for tc in children)
        return t >= tp + span and not any(tp < tc <= tp + span for tc in children)

    t = h.now
    while t < T0 + 4 * DAY:
        h.tick(t)
        n = sum(1 for tp in parents if qualifies(tp, t))
        assert h.member() is holds(n, op, v), f"at +{(t - T0) / H:.2f} h: {n} parents {op} {v}"
        t += rng.choice([MIN, 17 * MIN, H, 3 * H])
