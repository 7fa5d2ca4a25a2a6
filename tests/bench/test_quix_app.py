"""The Quix Streams baseline's evaluation (bench/quix_app.py) as pure functions: its slice
must be the bench definitions it names, and its windows must decide as those say."""

from __future__ import annotations

from typing import Any

from bench import definition_set as ds
from bench.quix_app import (
    AUDIENCES,
    DAY_MS,
    DEFINITIONS,
    SUM_AUDIENCES,
    TRAITS,
    evaluate,
    event_time_ms,
    event_view,
)

T0 = 1_700_000_000_000


def _changes(profile: dict[str, Any], value: dict[str, Any], ts: int) -> dict[str, Any]:
    name, props = event_view(value)
    return {c["key"]: c["value"] for c in evaluate(profile, name, props, ts)}


def _page(name: str = "Home") -> dict[str, Any]:
    return {"type": "page", "name": name, "properties": {"path": "/"}}


def _track(event: str, **props: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "properties": props}


def test_the_slice_is_the_bench_definitions_of_the_same_keys() -> None:
    bench = {d.key: d for d in ds.audiences()}
    for a in AUDIENCES:
        b = bench[a.key]
        assert isinstance(b, ds.EventCount)
        assert (a.event, a.days, a.at_least) == (b.event, b.days, b.at_least)
        assert [(w.prop, w.op, w.value) for w in a.where] == [
            (w.prop, w.op, w.value) for w in b.where
        ]
    for s in SUM_AUDIENCES:
        b = bench[s.key]
        assert isinstance(b, ds.EventSum)
        assert (s.event, s.prop, s.days, s.at_least) == (b.event, b.prop, b.days, b.at_least)
    traits = {t.key: t for t in ds.computed_traits()}
    for t in TRAITS:
        b = traits[t.key]
        assert (t.kind, t.event, t.days, t.prop) == (b.kind, b.event, b.days, b.prop)
    assert DEFINITIONS == 15


def test_event_view_names_page_calls_page_viewed_with_page_name() -> None:
    assert event_view(_page("Pricing")) == (
        "Page Viewed",
        {"path": "/", "page_name": "Pricing"},
    )
    assert event_view(_track("Order Completed", revenue=5.0)) == (
        "Order Completed",
        {"revenue": 5.0},
    )
    assert event_view({"type": "identify", "traits": {"plan": "pro"}})[0] is None


def test_event_time_is_the_events_timestamp() -> None:
    value = {"timestamp": "2023-11-14T22:13:20.123Z"}
    assert event_time_ms(value, None, 5, 0) == T0 + 123
    assert event_time_ms({}, None, 5, 0) == 5


def test_count_audience_enters_at_the_nth_event_and_exits_when_its_window_slides() -> None:
    p: dict[str, Any] = {}
    for i in range(4):
        assert "pages_5_7d" not in _changes(p, _page(), T0 + i * 1000)
    assert _changes(p, _page(), T0 + 4000)["pages_5_7d"] is True
    # only the newest five timestamps are kept: enough to decide "≥ 5 within 7 d"
    _changes(p, _page(), T0 + 5000)
    assert len(p["w"]["pages_5_7d"]) == 5
    # seven days after the second page view, only four remain: an identify sees the exit
    later = T0 + 1000 + 7 * DAY_MS
    out = _changes(p, {"type": "identify", "traits": {}}, later)
    assert out["pages_5_7d"] is False
    assert out["page_views_7d"] == 4


def test_property_filters_select_the_events_that_count() -> None:
    p: dict[str, Any] = {}
    out = _changes(p, _track("Product Viewed", category="hats", price=250.0), T0)
    assert "browsed_shoes_14d" not in out
    assert "premium_viewer_2_30d" not in out
    out = _changes(p, _track("Product Viewed", category="shoes", price=250.0), T0 + 1)
    assert out["browsed_shoes_14d"] is True
    assert out["premium_viewer_2_30d"] is True  # two views priced > 200
    assert out["product_views_30d"] == 2
    assert "pricing_page_7d" not in _changes(p, _page("Home"), T0 + 2)
    assert _changes(p, _page("Pricing"), T0 + 3)["pricing_page_7d"] is True


def test_sums_and_counts_emit_only_when_their_value_changes() -> None:
    p: dict[str, Any] = {}
    out = _changes(p, _track("Order Completed", revenue=60.0), T0)
    assert out == {"revenue_90d": 60.0, "revenue_30d": 60.0, "orders_90d": 1}
    out = _changes(p, _track("Order Completed", revenue=310.5), T0 + DAY_MS)
    assert out == {
        "orders_2_90d": True,
        "big_order_90d": True,
        "revenue_100_30d": True,
        "revenue_90d": 370.5,
        "revenue_30d": 370.5,
        "orders_90d": 2,
    }
    assert _changes(p, _page(), T0 + 2 * DAY_MS) == {"page_views_7d": 1}
    # 30 days after the first order it leaves the 30-day sum, not the 90-day one; the
    # earlier page view has left its 7 days, this one takes its place: no change there
    out = _changes(p, _page(), T0 + 30 * DAY_MS)
    assert out == {"revenue_30d": 310.5}


def test_an_event_older_than_its_window_does_not_count() -> None:
    p: dict[str, Any] = {}
    _changes(p, _page(), T0 + 10 * DAY_MS)
    out = _changes(p, _track("Order Completed", revenue=500.0), T0)  # 10 days late
    assert "revenue_30d" in out and "revenue_100_30d" in out  # within 30 d of now
    out = _changes(p, _page(), T0 + 2 * DAY_MS)  # late too, and outside 7 d of now
    assert out == {}
    assert p["now"] == T0 + 10 * DAY_MS
