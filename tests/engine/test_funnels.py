"""Funnels (reference §1.3): then / then not, per parent occurrence, with parent refs."""

from __future__ import annotations

from typing import Any

from tests.engine.harness import DAY, MIN, T0, H, Harness, audience, summary


def abandoned(**child: Any) -> Harness:
    return Harness(
        [
            audience(
                "aud",
                [
                    {
                        "event": "Product Added",
                        "within": "7 days",
                        "then_not": {"event": "Order Completed", "within": "1 day", **child},
                    }
                ],
            )
        ]
    )


def test_then_not_qualifies_when_the_child_deadline_passes() -> None:
    h = abandoned()
    assert h.track("Product Added", T0) == [], "not known yet: the day is not over"
    assert h.wakeup() == T0 + DAY
    assert h.tick(T0 + DAY - 1) == []
    assert summary(h.tick(T0 + DAY)) == [("aud", True, T0 + DAY, f"timer:{T0 + DAY}")]
    assert h.wakeup() == T0 + 7 * DAY, "exits when the add leaves the 7-day window"
    assert summary(h.tick(T0 + 7 * DAY)) == [("aud", False, T0 + 7 * DAY, f"timer:{T0 + 7 * DAY}")]


def test_then_not_completed_in_time_never_qualifies() -> None:
    h = abandoned()
    h.track("Product Added", T0)
    h.track("Order Completed", T0 + H)
    assert h.tick(T0 + 3 * DAY) == []
    assert not h.member()


def test_completed_after_the_deadline_does_not_save_the_cart() -> None:
    h = abandoned()
    h.track("Product Added", T0)
    h.track("Order Completed", T0 + DAY + 1)
    assert h.member()


def test_added_completed_added_is_still_abandoned() -> None:
    h = abandoned()
    h.track("Product Added", T0)
    h.track("Order Completed", T0 + H)
    h.track("Product Added", T0 + 2 * H)
    assert h.tick(T0 + DAY + 2 * H - 1) == []
    assert [c.value for c in h.tick(T0 + DAY + 2 * H)] == [True]


def test_a_late_child_retracts_an_abandonment() -> None:
    h = abandoned()
    h.track("Product Added", T0)
    h.tick(T0 + 2 * DAY)
    assert h.member()
    out = h.track("Order Completed", T0 + H, now=T0 + 2 * DAY)
    assert summary(out) == [("aud", False, T0 + DAY, "event:m1")], (
        "at = max(event time, the time of the value it replaces)"
    )


def test_then_not_with_parent_property_reference() -> None:
    h = abandoned(
        where=[
            {
                "property": "product_id",
                "operator": "equals",
                "value_from": {"parent_property": "sku"},
            }
        ]
    )
    h.track("Product Added", T0, {"sku": "p1"})
    h.track("Order Completed", T0 + H, {"product_id": "p2"})  # a different product
    h.tick(T0 + DAY)
    assert h.member()
    h.track("Product Added", T0 + DAY + H, {"sku": "p3"})
    h.track("Order Completed", T0 + DAY + 2 * H, {"product_id": "p3"})
    h.tick(T0 + 7 * DAY + H)  # the first add left the window; the second was bought
    assert not h.member()


def test_then_qualifies_on_the_child_and_exits_with_the_parent() -> None:
    h = Harness(
        [
            audience(
                "aud",
                [
                    {
                        "event": "Product Viewed",
                        "within": "2 days",
                        "then": {
                            "event": "Product Added",
                            "within": "1 hour",
                            "where": [
                                {
                                    "property": "id",
                                    "operator": "=",
                                    "value_from": {"parent_property": "id"},
                                }
                            ],
                        },
                    }
                ],
            )
        ]
    )
    h.track("Product Viewed", T0, {"id": 1})
    assert h.track("Product Added", T0 + 10 * MIN, {"id": 2}) == [], "other product"
    assert h.track("Product Added", T0 + 2 * H, {"id": 1}) == [], "too late after the view"
    assert h.track("Product Added", T0 - MIN, {"id": 1}) == [], "before the view"
    assert [c.value for c in h.track("Product Added", T0 + 59 * MIN, {"id": 1})] == [True]
    assert h.wakeup() == T0 + 2 * DAY
    assert [c.value for c in h.tick(T0 + 2 * DAY)] == [False]


def test_then_with_count_counts_parent_occurrences() -> None:
    h = Harness(
        [
            audience(
                "aud",
                [
                    {
                        "event": "A",
                        "count": ">= 2",
                        "then": {"event": "B", "within": "1 hour"},
                    }
                ],
            )
        ]
    )
    h.track("A", T0)
    h.track("A", T0 + 10 * MIN)
    h.track("B", T0 + 20 * MIN)  # follows both
    assert h.member()


def test_funnel_child_filters_and_parent_filters() -> None:
    h = Harness(
        [
            audience(
                "aud",
                [
                    {
                        "event": "A",
                        "where": [{"property": "x", "operator": "=", "value": 1}],
                        "then": {
                            "event": "B",
                            "within": "1 hour",
                            "where": [{"property": "y", "operator": "=", "value": 2}],
                        },
                    }
                ],
            )
        ]
    )
    h.track("A", T0, {"x": 0})
    h.track("B", T0 + 1, {"y": 2})
    assert not h.member()
    h.track("A", T0 + 2, {"x": 1})
    h.track("B", T0 + 3, {"y": 3})
    assert not h.member()
    h.track("B", T0 + 4, {"y": 2})
    assert h.member()


def test_future_child_enables_the_parent_at_its_time() -> None:
    h = Harness([audience("aud", [{"event": "A", "then": {"event": "B", "within": "1 hour"}}])])
    h.track("A", T0)
    assert h.track("B", T0 + 30 * MIN, now=T0 + MIN) == []
    assert h.wakeup() == T0 + 30 * MIN
    assert [c.cause for c in h.tick(T0 + 30 * MIN)] == [f"timer:{T0 + 30 * MIN}"]
