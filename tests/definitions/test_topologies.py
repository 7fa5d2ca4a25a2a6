"""Every file under topologies/ loads, and the set covers the seeds' use cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from engage_stream.definitions import canonical_body, definition_from_body, load_definitions
from engage_stream.definitions.loader import definition_files, parse_text
from engage_stream.definitions.models import (
    AudienceCondition,
    AudienceDefinition,
    ComputedTraitDefinition,
    EventCondition,
    TraitCondition,
)

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
FILES = definition_files(TOPOLOGIES)


@pytest.mark.parametrize("path", FILES, ids=[str(f.relative_to(TOPOLOGIES)) for f in FILES])
def test_each_file_validates(path: Path) -> None:
    """On its own (references to other files are checked with the whole directory)."""
    defs, problems = parse_text(path.read_text(encoding="utf-8"), str(path))
    assert not problems, "\n".join(map(str, problems))
    assert defs


def test_whole_directory_validates_with_cross_checks() -> None:
    defs = {d.key: d for d in load_definitions(TOPOLOGIES)}
    audiences = {k for k, d in defs.items() if isinstance(d, AudienceDefinition)}
    traits = {k for k, d in defs.items() if isinstance(d, ComputedTraitDefinition)}
    assert {
        "cart_abandoners",
        "big_spenders",
        "lapsed_visitors",
        "viewed_not_ordered",
        "newsletter_retargeting",
        "recent_product_viewers",
    } <= audiences
    assert {"total_revenue", "orders_count", "favorite_category", "last_utm_campaign"} <= traits
    assert {"most_frequent", "last", "unique_count", "counter", "sum"} <= {
        defs[k].type  # type: ignore[union-attr]
        for k in traits
    }
    destinations = {x.name for d in defs.values() for x in d.destinations}
    assert {"braze", "google_ads", "warehouse"} <= destinations


def test_use_case_shapes() -> None:
    defs = {d.key: d for d in load_definitions(TOPOLOGIES)}
    cart = defs["cart_abandoners"]
    assert isinstance(cart, AudienceDefinition)
    c0 = cart.conditions[0]
    assert isinstance(c0, EventCondition) and c0.then_not is not None
    big = defs["big_spenders"]
    assert isinstance(big, AudienceDefinition)
    t0 = big.conditions[0]
    assert isinstance(t0, TraitCondition) and t0.source == "computed"
    assert t0.trait == "total_revenue"
    lapsed = defs["lapsed_visitors"]
    assert isinstance(lapsed, AudienceDefinition)
    assert any(isinstance(c, EventCondition) and c.between for c in lapsed.conditions)
    assert any(isinstance(c, EventCondition) and not c.performed for c in lapsed.conditions)
    viewed = defs["viewed_not_ordered"]
    assert isinstance(viewed, AudienceDefinition)
    v0 = viewed.conditions[0]
    assert isinstance(v0, EventCondition) and v0.then_not is not None
    ref = v0.then_not.where[0].value_from
    assert ref is not None and ref.parent_property == "product_id"
    vip = defs["vip_customers"]
    assert isinstance(vip, AudienceDefinition)
    assert any(isinstance(c, AudienceCondition) for c in vip.conditions)


def test_demo_short_window_audience() -> None:
    """The demo's live phase needs an anonymous-friendly, single-condition audience with a
    window of at most 5 minutes (entries and exits within a couple of minutes)."""
    short = load_definitions(TOPOLOGIES / "audiences" / "recent_product_viewers.yaml")[0]
    assert isinstance(short, AudienceDefinition) and short.include_anonymous
    (c,) = short.conditions
    assert isinstance(c, EventCondition) and c.within is not None
    assert c.within.ms <= 5 * 60_000 and c.event == "Product Viewed"


def test_bodies_round_trip() -> None:
    for d in load_definitions(TOPOLOGIES):
        assert definition_from_body(canonical_body(d)) == d
