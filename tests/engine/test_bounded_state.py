"""Per-event work and state do not grow with a profile's history, only with its window."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from engage_stream.engine import Engine, aggregates, state_text
from engage_stream.engine import engine as engine_module
from engage_stream.engine.windows import Window
from engage_stream.profiles.record import ExternalId, ProfileRecord
from tests.engine.harness import DAY, MIN, T0, H, audience, event, trait


def stream(engine: Engine, n: int, step: int, name: str = "E") -> Iterator[ProfileRecord]:
    p = ProfileRecord("user_id:u1", external_ids=[ExternalId("user_id", "u1")])
    for i in range(n):
        ts = T0 + i * step
        props: dict[str, Any] = {"sku": f"s{i % 7}", "v": i % 13, "cat": f"c{i % 5}"}
        engine.on_event(p, event(name, ts, f"m{i}", props), ts)
        if p.next_wakeup is not None and p.next_wakeup <= ts:
            raise AssertionError("wake-up not in the future")
        yield p


def test_count_condition_keeps_at_most_count_plus_one_events() -> None:
    engine = Engine([audience("a", [{"event": "E", "within": "30 days", "count": ">= 3"}])])
    sizes = {len(Engine.state(p, "a")[0]) for p in stream(engine, 5000, 5 * MIN)}
    assert max(sizes) <= 4, "however many events fall in the window"


def test_not_performed_keeps_one_event() -> None:
    engine = Engine([audience("a", [{"event": "E", "performed": False, "within": "90 days"}])])
    assert {len(Engine.state(p, "a")[0]) for p in stream(engine, 3000, MIN)} == {1}


@pytest.mark.parametrize(
    "definition",
    [
        audience(
            "a",
            [
                {
                    "event": "E",
                    "within": "2 days",
                    "then_not": {
                        "event": "E",
                        "within": "1 hour",
                        "where": [
                            {
                                "property": "sku",
                                "operator": "=",
                                "value_from": {"parent_property": "sku"},
                            }
                        ],
                    },
                }
            ],
        ),
        audience(
            "a",
            [
                {
                    "event": "E",
                    "within": "2 days",
                    "where": [{"property": "v", "operator": ">", "value_from": {"trait": "t"}}],
                }
            ],
        ),
        trait("a", "sum", "E", property="v", within="2 days"),
        trait("a", "unique_list", "E", property="cat", include_history={"days": 2}),
    ],
    ids=["funnel", "trait-ref", "sum-2d", "unique-lookback-2d"],
)
def test_state_is_bounded_by_the_window(definition: Any) -> None:
    engine = Engine([definition])
    sizes = [len(orjson.dumps(p.engine)) for p in stream(engine, 24 * 20, H)]  # 20 days, hourly
    # after the window filled up (2 days), the state stops growing
    assert max(sizes[24 * 3 :]) <= max(sizes[: 24 * 3]) * 1.1


def test_per_event_work_does_not_grow_with_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count window-edge computations (the inner loop of conditions and aggregates whose
    lookback cuts the window: `Window.leave`) and the state decoded and encoded per event
    (windows that leave at `ts + b` are cut by bisection, without `leave`): the 5,000th
    event costs what the 100th did."""
    calls = 0
    leave = Window.leave

    def counting(self: Window, ts: int) -> int:
        nonlocal calls
        calls += 1
        return leave(self, ts)

    class CountingJson:
        @staticmethod
        def loads(s: str) -> Any:
            nonlocal calls
            calls += len(s)
            return orjson.loads(s)

        @staticmethod
        def dumps(o: Any) -> bytes:
            nonlocal calls
            b = orjson.dumps(o)
            calls += len(b)
            return b

    monkeypatch.setattr(Window, "leave", counting)
    for module in (engine_module, aggregates, state_text):  # (state_text: every decode)
        monkeypatch.setattr(module, "orjson", CountingJson)
    engine = Engine(
        [
            audience("a", [{"event": "E", "within": "1 day", "count": ">= 5"}]),
            audience("b", [{"event": "E", "performed": False, "within": "7 days"}]),
            audience(  # the 1-day lookback cuts the 2-day window: `leave` per entry
                "c", [{"event": "E", "within": "2 days"}], include_history={"days": 1}
            ),
            trait("n", "counter", "E", include_history={"days": 1}),
            trait("l", "last", "E", property="v", within="30 days"),
            trait("m", "max", "E", property="v", within="2 days", include_history={"days": 1}),
        ]
    )
    per_event: list[int] = []
    for _ in stream(engine, 5200, 10 * MIN):  # 36 days: every window full long before the end
        per_event.append(calls)
        calls = 0
    early, late = per_event[200:300], per_event[5100:5200]
    assert min(early) > 0
    assert max(late) <= max(early) * 1.05
    assert sum(late) <= sum(early) * 1.05


def test_capped_state_matches_history_size_independence_in_bytes() -> None:
    engine = Engine([audience("a", [{"event": "E", "within": "365 days"}])])
    sizes = [len(orjson.dumps(p.engine)) for p in stream(engine, 2000, DAY // 10)]
    assert max(sizes) == min(sizes[2:])


@pytest.mark.parametrize("type_", ["counter", "unique_list", "max"])
def test_session_window_keeps_the_latest_sessions_only(type_: str) -> None:
    """One event every 40 minutes for a 30-minute session: each event is its own session;
    the state never holds more than the current one and the one still kept for late
    events, however long the history."""
    prop = {} if type_ == "counter" else {"property": "v"}
    engine = Engine([trait("s", type_, "E", session="30 minutes", **prop)])
    sizes = {len(Engine.state(p, "s")[0]) for p in stream(engine, 3000, 40 * MIN)}
    assert max(sizes) <= 2
