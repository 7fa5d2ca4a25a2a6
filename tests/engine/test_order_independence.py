"""Out-of-order and late events give the same final memberships and traits as in-order
input (state is keyed by event time, not arrival), and the same input gives the same
output, message ids included."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engage_stream.events import ProfileEvent
from tests.engine.harness import (
    DAY,
    MIN,
    T0,
    H,
    Harness,
    audience,
    event,
    final_state,
    replay,
    trait,
)

END = T0 + 9 * DAY
PIDS = ("user_id:u1", "user_id:u2")


def definitions() -> list[Any]:
    sku_ref = {"property": "sku", "operator": "=", "value_from": {"parent_property": "sku"}}
    return [
        audience("logins", [{"event": "Login", "count": ">= 2", "within": "2 days"}]),
        audience("no_purchase", [{"event": "Purchase", "performed": False, "within": "3 days"}]),
        audience("lapsed", [{"event": "Login", "between": ["1 day", "3 days"]}]),
        audience(
            "abandoned",
            [
                {
                    "event": "Added",
                    "within": "5 days",
                    "then_not": {"event": "Purchase", "within": "1 day", "where": [sku_ref]},
                }
            ],
        ),
        audience(
            "viewed_then_added",
            [
                {
                    "event": "View",
                    "then": {"event": "Added", "within": "6 hours", "where": [sku_ref]},
                }
            ],
            include_history={"days": 4},
        ),
        audience(
            "mixed",
            [
                {"trait": "plan", "operator": "=", "value": "pro"},
                {"audience": "logins", "join": "and"},
                {"audience": "no_purchase", "member": False, "join": "or"},
            ],
        ),
        audience("spender", [{"trait": "spend", "operator": ">=", "value": 20}]),
        audience(
            "over_budget",
            [
                {
                    "event": "Purchase",
                    "within": "4 days",
                    "where": [
                        {"property": "total", "operator": ">", "value_from": {"trait": "budget"}}
                    ],
                }
            ],
        ),
        audience(
            "not_group",
            [
                {
                    "group": [
                        {"event": "View", "within": "1 day"},
                        {"event": "Login", "join": "or"},
                    ],
                    "negate": True,
                }
            ],
        ),
        trait("spend", "sum", "Purchase", property="total", within="4 days"),
        trait("logins_2d", "counter", "Login", include_history={"days": 2}),
        trait("fav", "most_frequent", "View", property="category", min_frequency=1),
        trait("first_cat", "first", "View", property="category", within="3 days"),
        trait("last_cat", "last", "View", property="category"),
        trait("cats", "unique_list", "View", property="category", include_history={"days": 3}),
        trait("n_cats", "unique_count", "View", property="category", within="2 days"),
        trait("avg_total", "avg", "Purchase", property="total"),
        trait("min_total", "min", "Purchase", property="total", between=["1 hour", "3 days"]),
        trait("max_total", "max", "Purchase", property="total", within="2 days"),
    ]


def workload(seed: int, n: int = 70) -> list[ProfileEvent]:
    rng = random.Random(seed)
    out: list[ProfileEvent] = []
    for i in range(n):
        user = rng.choice(["u1", "u2"])
        ts = T0 + rng.randrange(0, 6 * DAY // MIN) * MIN
        mid = f"s{seed}-{i}"
        if rng.random() < 0.12:
            traits = {"plan": rng.choice(["pro", "free"]), "budget": rng.choice([5, 15, 40])}
            out.append(event(None, ts, mid, kind="identify", user=user, traits=traits))
            continue
        name = rng.choice(["Login", "Purchase", "Added", "View"])
        props = {
            "sku": rng.choice(["a", "b"]),
            "total": rng.choice([3, 7.5, 12, 0.1, "n/a"]),
            "category": rng.choice(["shoes", "hats", "bags"]),
        }
        out.append(event(name, ts, mid, props, user=user))
    return out


def run(events: list[ProfileEvent], ticks: bool) -> Harness:
    return replay(definitions(), events, ticks, END)


@pytest.mark.parametrize("seed", range(25))
def test_shuffled_arrival_gives_the_same_final_state(seed: int) -> None:
    events = workload(seed)
    in_order = run(sorted(events, key=lambda e: (e.timestamp, e.message_id)), ticks=True)
    shuffled = list(events)
    random.Random(seed + 1000).shuffle(shuffled)
    late = run(shuffled, ticks=False)
    assert final_state(late, PIDS) == final_state(in_order, PIDS)


def test_the_same_input_gives_the_same_changes_and_message_ids() -> None:
    events = workload(7)
    a = run(events, ticks=True)
    b = run(events, ticks=True)
    assert a.changes and [c.message_id for c in a.changes] == [c.message_id for c in b.changes]
    assert a.changes == b.changes


def test_tick_frequency_does_not_change_the_output() -> None:
    """Boundaries fire at their own instants whether ticks come every hour or never: each
    profile gets the same changes in the same order (only the interleaving between
    profiles differs)."""
    events = sorted(workload(3), key=lambda e: (e.timestamp, e.message_id))
    coarse = run(events, ticks=False)
    fine = Harness(definitions())
    for ev in events:
        fine.tick(ev.timestamp)
        fine.send(ev)
    for t in range(T0, END + 1, H):
        fine.tick(t)
    fine.tick(END)
    for pid in PIDS:
        mine = [c for c in fine.changes if c.profile_id == pid]
        assert mine and mine == [c for c in coarse.changes if c.profile_id == pid]
