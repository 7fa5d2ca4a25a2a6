"""The bench definition set — 50 audiences and 20 computed traits — described once, as data.

Why one neutral description: the DuckDB baseline and the streaming engine must compute the
same set. `baseline_duckdb` renders it to SQL; `to_engine()` renders it to the engine's
definition format, which `python -m bench.definition_set --write-yaml` writes to
bench/definitions/*.yaml. Where the engine's language cannot say exactly what the SQL says,
`to_engine()` uses the closest form and its docstring lists each difference.

With journeys (`python -m bench.definition_set --write-yaml` also writes
bench/definitions_journeys/): the four example journeys (topologies/journeys/*.journey) read
two audiences and one trait the set above does not define — `cart_abandoners`,
`lapsed_visitors` (the conditions of topologies/audiences/, without their destinations) and
`order_completed_count` (abandoned_cart's split) — so `journey_audiences()` /
`journey_traits()` add them, and `catalog(journeys=…)` builds the worker's catalog with or
without the journeys over the same definitions (a with/without ratio then prices the
journeys alone). They are not part of the DuckDB baseline's SQL.

Semantics (what the SQL computes):
- Events as the worker sees them: page calls are `Page Viewed` with `page_name`; the
  profile is `user_id:<userId>`, else `anonymous_id:<anonymousId>`.
- "within W days": event time in (now − W days, now]. History is 90 days, so "ever" = 90 d.
- Traits: the latest identify value by event time.
- Funnel `A then not B`: performed A within W days, and no B at or after the last such A.
- `most_frequent`: the value with the highest count, ties broken by the smallest value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Op = Literal[">=", ">", "<", "<=", "=", "!="]


@dataclass(frozen=True)
class Where:
    """A filter on one event property (or `page_name`)."""

    prop: str
    op: Op
    value: str | float


@dataclass(frozen=True)
class EventCount:
    key: str
    event: str
    days: int
    at_least: int = 1
    where: tuple[Where, ...] = ()
    kind: str = field(default="count", init=False)


@dataclass(frozen=True)
class EventSum:
    key: str
    event: str
    prop: str
    days: int
    at_least: float
    kind: str = field(default="sum", init=False)


@dataclass(frozen=True)
class TraitIs:
    key: str
    trait: str
    op: Op
    value: str | float
    kind: str = field(default="trait", init=False)


@dataclass(frozen=True)
class Funnel:
    """Performed `first` within `days`, and not `then` since the last `first`."""

    key: str
    first: str
    then: str
    days: int
    kind: str = field(default="funnel", init=False)


@dataclass(frozen=True)
class Inactive:
    """Identified (has trait `email`) and no event at all within `days`."""

    key: str
    days: int
    kind: str = field(default="inactive", init=False)


@dataclass(frozen=True)
class Combine:
    """Nested audience references: `all` of / `any` of the audiences, and `none` of."""

    key: str
    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    kind: str = field(default="combine", init=False)


@dataclass(frozen=True)
class Lapsed:
    """Performed `event` between `recent` and `old` days ago, and not within `recent` days."""

    key: str
    event: str
    recent: int
    old: int
    kind: str = field(default="lapsed", init=False)


Audience = EventCount | EventSum | TraitIs | Funnel | Inactive | Combine | Lapsed

TraitKind = Literal[
    "count", "sum", "avg", "min", "max", "last", "first", "most_frequent", "unique_count"
]


@dataclass(frozen=True)
class ComputedTrait:
    key: str
    kind: TraitKind
    event: str
    days: int
    prop: str | None = None


PV, VIEW, ADD, ORDER, GROUP = (
    "Page Viewed",
    "Product Viewed",
    "Product Added",
    "Order Completed",
    "group",
)
CATEGORIES = ["shoes", "shirts", "hats", "bags", "jackets", "socks", "watches", "belts"]


def audiences() -> list[Audience]:
    a: list[Audience] = [
        # counts in windows (16)
        EventCount("pages_1_1d", PV, 1),
        EventCount("pages_5_7d", PV, 7, 5),
        EventCount("pages_20_30d", PV, 30, 20),
        EventCount("pages_50_90d", PV, 90, 50),
        EventCount("viewed_1_7d", VIEW, 7),
        EventCount("viewed_3_7d", VIEW, 7, 3),
        EventCount("viewed_10_30d", VIEW, 30, 10),
        EventCount("viewed_1_90d", VIEW, 90),
        EventCount("added_1_1d", ADD, 1),
        EventCount("added_1_7d", ADD, 7),
        EventCount("added_3_30d", ADD, 30, 3),
        EventCount("orders_1_7d", ORDER, 7),
        EventCount("orders_1_30d", ORDER, 30),
        EventCount("orders_2_90d", ORDER, 90, 2),
        EventCount("orders_5_90d", ORDER, 90, 5),
        EventCount("account_member_90d", GROUP, 90),
    ]
    # property filters (14)
    a += [
        EventCount(f"browsed_{c}_14d", VIEW, 14, 1, (Where("category", "=", c),))
        for c in CATEGORIES
    ]
    a += [
        EventCount("pricing_page_7d", PV, 7, 1, (Where("page_name", "=", "Pricing"),)),
        EventCount("checkout_page_2_30d", PV, 30, 2, (Where("page_name", "=", "Checkout"),)),
        EventCount("blog_reader_3_30d", PV, 30, 3, (Where("page_name", "=", "Blog"),)),
        EventCount("premium_viewer_2_30d", VIEW, 30, 2, (Where("price", ">", 200),)),
        EventCount("acme_fan_3_90d", VIEW, 90, 3, (Where("brand", "=", "Acme"),)),
        EventCount("big_order_90d", ORDER, 90, 1, (Where("revenue", ">", 300),)),
    ]
    # sums (3)
    a += [
        EventSum("revenue_100_30d", ORDER, "revenue", 30, 100),
        EventSum("revenue_500_90d", ORDER, "revenue", 90, 500),
        EventSum("revenue_1000_90d", ORDER, "revenue", 90, 1000),
    ]
    # traits (7)
    a += [
        TraitIs("plan_free", "plan", "=", "free"),
        TraitIs("plan_pro", "plan", "=", "pro"),
        TraitIs("plan_enterprise", "plan", "=", "enterprise"),
        TraitIs("country_us", "country", "=", "US"),
        TraitIs("country_de", "country", "=", "DE"),
        TraitIs("age_under_30", "age", "<", 30),
        TraitIs("age_60_plus", "age", ">=", 60),
    ]
    # funnels and inactivity (4)
    a += [
        Funnel("cart_abandoned_1d", ADD, ORDER, 1),
        Funnel("cart_abandoned_7d", ADD, ORDER, 7),
        Funnel("viewed_not_added_7d", VIEW, ADD, 7),
        Inactive("inactive_identified_30d", 30),
    ]
    # nested audience references (6)
    a += [
        Combine("high_value_pro", all=("revenue_500_90d", "plan_pro")),
        Combine("enterprise_us", all=("plan_enterprise", "country_us")),
        Combine("lapsed_buyer", all=("orders_2_90d",), none=("orders_1_30d",)),
        Combine("engaged_not_buying", all=("pages_5_7d",), none=("orders_1_30d",)),
        Combine("shoe_or_bag_browser", any=("browsed_shoes_14d", "browsed_bags_14d")),
        Combine("young_cart_abandoner", all=("age_under_30", "cart_abandoned_7d")),
    ]
    return a


def computed_traits() -> list[ComputedTrait]:
    return [
        ComputedTrait("orders_90d", "count", ORDER, 90),
        ComputedTrait("orders_30d", "count", ORDER, 30),
        ComputedTrait("page_views_7d", "count", PV, 7),
        ComputedTrait("page_views_30d", "count", PV, 30),
        ComputedTrait("product_views_30d", "count", VIEW, 30),
        ComputedTrait("products_added_30d", "count", ADD, 30),
        ComputedTrait("revenue_90d", "sum", ORDER, 90, "revenue"),
        ComputedTrait("revenue_30d", "sum", ORDER, 30, "revenue"),
        ComputedTrait("avg_order_value_90d", "avg", ORDER, 90, "revenue"),
        ComputedTrait("max_order_value_90d", "max", ORDER, 90, "revenue"),
        ComputedTrait("min_price_viewed_30d", "min", VIEW, 30, "price"),
        ComputedTrait("last_viewed_category", "last", VIEW, 90, "category"),
        ComputedTrait("last_viewed_product", "last", VIEW, 90, "product_id"),
        ComputedTrait("first_page_90d", "first", PV, 90, "page_name"),
        ComputedTrait("top_category_30d", "most_frequent", VIEW, 30, "category"),
        ComputedTrait("top_page_90d", "most_frequent", PV, 90, "page_name"),
        ComputedTrait("top_brand_90d", "most_frequent", VIEW, 90, "brand"),
        ComputedTrait("unique_products_viewed_30d", "unique_count", VIEW, 30, "product_id"),
        ComputedTrait("unique_categories_90d", "unique_count", VIEW, 90, "category"),
        ComputedTrait("last_order_revenue", "last", ORDER, 90, "revenue"),
    ]


def journey_audiences() -> list[Audience]:
    """The audiences the example journeys enter from or wait on (topologies/audiences/:
    `cart_abandoners` = Product Added within 7 days, then not Order Completed within 1 day
    — exactly the bench funnel form with FUNNEL_SPAN[7]; `lapsed_visitors`)."""
    return [
        Funnel("cart_abandoners", ADD, ORDER, 7),
        Lapsed("lapsed_visitors", PV, 30, 90),
    ]


def journey_traits() -> list[ComputedTrait]:
    """abandoned_cart's split reads `order_completed_count` (topologies/ leave it to a
    custom trait nobody sets; here the count the split means, so both branches are taken)."""
    return [ComputedTrait("order_completed_count", "count", ORDER, 90)]


def describe(d: Audience | ComputedTrait) -> str:
    """One line of plain English per definition (README, reports)."""

    def where(ws: tuple[Where, ...]) -> str:
        return "".join(f" where {w.prop} {w.op} {w.value!r}" for w in ws)

    if isinstance(d, EventCount):
        return f"performed {d.event!r}{where(d.where)} at least {d.at_least}× within {d.days} d"
    if isinstance(d, EventSum):
        return f"sum of {d.event!r}.{d.prop} ≥ {d.at_least:g} within {d.days} d"
    if isinstance(d, TraitIs):
        return f"trait {d.trait} {d.op} {d.value!r}"
    if isinstance(d, Funnel):
        return f"performed {d.first!r} within {d.days} d and no {d.then!r} since"
    if isinstance(d, Inactive):
        return f"has an email trait and no event within {d.days} d"
    if isinstance(d, Lapsed):
        return f"performed {d.event!r} {d.recent}–{d.old} d ago and not within {d.recent} d"
    if isinstance(d, Combine):
        parts = []
        if d.all:
            parts.append("in all of " + ", ".join(d.all))
        if d.any:
            parts.append("in any of " + ", ".join(d.any))
        if d.none:
            parts.append("in none of " + ", ".join(d.none))
        return "; ".join(parts)
    prop = f".{d.prop}" if d.prop else ""
    return f"{d.kind} of {d.event!r}{prop} within {d.days} d"


# -- the engine's definition format ------------------------------------------------------
_OPS = {
    ">=": "at_least",
    ">": "greater_than",
    "<": "less_than",
    "<=": "at_most",
    "=": "equals",
    "!=": "not_equals",
}
_TRAIT_TYPES = {"count": "counter"}
# Every event name the bench workload's track/page calls produce (identify and group calls
# have no event name in the engine).
EVENT_NAMES = (PV, VIEW, ADD, ORDER)
# The engine's funnel child window ("then not B within span after each A"): the closest
# expressible form of "no B since the last A" (see to_engine()).
FUNNEL_SPAN = {1: "1 hour", 7: "1 day"}
_SUM_TRAIT = {30: "revenue_30d", 90: "revenue_90d"}


def _days(d: int) -> str:
    return f"{d} day" if d == 1 else f"{d} days"


def _filter(w: Where) -> dict[str, object]:
    return {"property": w.prop, "operator": _OPS[w.op], "value": w.value}


def _conditions(a: Audience) -> list[dict[str, object]]:
    if isinstance(a, EventCount):
        row: dict[str, object] = {"event": a.event, "within": _days(a.days)}
        if a.at_least != 1:
            row["count"] = f">= {a.at_least}"
        if a.where:
            row["where"] = [_filter(w) for w in a.where]
        return [row]
    if isinstance(a, EventSum):  # the computed trait of the same sum, compared
        return [
            {
                "trait": _SUM_TRAIT[a.days],
                "source": "computed",
                "operator": "at_least",
                "value": a.at_least,
            }
        ]
    if isinstance(a, TraitIs):
        return [{"trait": a.trait, "source": "custom", "operator": _OPS[a.op], "value": a.value}]
    if isinstance(a, Funnel):
        return [
            {
                "event": a.first,
                "within": _days(a.days),
                "then_not": {"event": a.then, "within": FUNNEL_SPAN[a.days]},
            }
        ]
    if isinstance(a, Inactive):
        rows: list[dict[str, object]] = [
            {"trait": "email", "source": "custom", "operator": "exists"}
        ]
        rows += [{"event": e, "performed": False, "within": _days(a.days)} for e in EVENT_NAMES]
        return rows
    if isinstance(a, Lapsed):
        return [
            {"event": a.event, "between": [_days(a.recent), _days(a.old)]},
            {"event": a.event, "performed": False, "within": _days(a.recent)},
        ]
    if isinstance(a, Combine):
        rows = [{"audience": k} for k in a.all]
        if a.any:
            group = [
                {"audience": k} if i == 0 else {"join": "or", "audience": k}
                for i, k in enumerate(a.any)
            ]
            rows.append({"group": group})
        rows += [{"audience": k, "member": False} for k in a.none]
        return rows
    raise TypeError(f"unknown audience kind {a!r}")


def to_engine(
    audience_list: list[Audience] | None = None, trait_list: list[ComputedTrait] | None = None
) -> list[dict[str, object]]:
    """The set in the engine's definition format (what bench/definitions/*.yaml hold; with
    `journey_audiences()` / `journey_traits()`, bench/definitions_journeys/*.yaml).

    Everything includes anonymous profiles (as the SQL does) and the 90-day lookback.
    Where the engine's language differs from the SQL, the closest form is used:
    - `sum … ≥ x` audiences compare the computed trait of the same sum (`revenue_30d` /
      `revenue_90d`), which is how Segment expresses them;
    - funnels are `A within W days, then_not B within FUNNEL_SPAN[W]` (the engine checks
      "no B within a span after each A", not "no B since the last A");
    - `inactive_identified_30d` is `email exists` and not performed any of the workload's
      event names within 30 days (identify / group calls have no event name);
    - `account_member_90d` names the event `group`, which no engine event carries (group
      calls have no event name), so it never has members in the engine.
    """
    out: list[dict[str, object]] = []
    for t in computed_traits() if trait_list is None else trait_list:
        d: dict[str, object] = {
            "kind": "computed_trait",
            "key": t.key,
            "include_anonymous": True,
            "type": _TRAIT_TYPES.get(t.kind, t.kind),
            "event": t.event,
            "within": _days(t.days),
        }
        if t.prop:
            d["property"] = t.prop
        if t.kind == "most_frequent":
            d["min_frequency"] = 1
        out.append(d)
    for a in audiences() if audience_list is None else audience_list:
        out.append(
            {
                "kind": "audience",
                "key": a.key,
                "include_anonymous": True,
                "conditions": _conditions(a),
            }
        )
    return out


def write_yaml(folder: Path, defs: list[dict[str, object]] | None = None) -> list[Path]:
    """bench/definitions/{computed_traits,audiences}.yaml from `to_engine()` (or `defs`)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    defs = to_engine() if defs is None else defs
    files = {
        "computed_traits.yaml": [d for d in defs if d["kind"] == "computed_trait"],
        "audiences.yaml": [d for d in defs if d["kind"] == "audience"],
    }
    head = "# Generated by `python -m bench.definition_set --write-yaml`; do not edit.\n"
    written = []
    for name, docs in files.items():
        path = folder / name
        path.write_text(head + yaml.safe_dump(docs, sort_keys=False, allow_unicode=True))
        written.append(path)
    return written


# -- with journeys ---------------------------------------------------------------------------
HERE = Path(__file__).resolve().parent
DEFINITIONS_DIR = HERE / "definitions"
JOURNEY_DEFINITIONS_DIR = HERE / "definitions_journeys"  # journey_audiences + journey_traits
JOURNEYS_DIR = HERE.parent / "topologies" / "journeys"  # the four example journeys, as is


def definition_dirs(journeys: bool) -> list[Path]:
    """The folders of YAML definitions a bench run evaluates (`journeys`: with the extras
    the example journeys read)."""
    return [DEFINITIONS_DIR, JOURNEY_DEFINITIONS_DIR] if journeys else [DEFINITIONS_DIR]


def load_set(journey_extras: bool) -> list[Any]:
    """The bench definitions, parsed (and the journeys' audiences and trait if asked)."""
    from engage_stream.definitions import load_definitions

    out: list[Any] = []
    for folder in definition_dirs(journey_extras):
        out.extend(load_definitions(folder))
    return out


def load_journeys() -> list[Any]:
    """topologies/journeys/*.journey, validated (the journeys the bench runs)."""
    from engage_stream.journeys.loading import load_journeys as load

    return load(JOURNEYS_DIR)


def catalog(journeys: bool, journey_extras: bool = True) -> Any:
    """The profiles stage's catalog: the bench set (+ the journeys' audiences and trait
    when `journey_extras`), with the four example journeys or without them. Every
    definition at version 1 created at 0, every journey published at 0 (as replay)."""
    from engage_stream.definitions.catalog import Catalog
    from engage_stream.journeys.catalog import JourneyCatalog

    cat = Catalog.from_definitions(load_set(journey_extras))
    if journeys:
        cat.journeys = JourneyCatalog.from_definitions(load_journeys())
    return cat


if __name__ == "__main__":
    import sys

    if "--write-yaml" in sys.argv[1:]:
        for f in write_yaml(DEFINITIONS_DIR):
            print(f"wrote {f}")
        extras = to_engine(journey_audiences(), journey_traits())
        for f in write_yaml(JOURNEY_DEFINITIONS_DIR, extras):
            print(f"wrote {f}")
        sys.exit(0)
    for a in audiences():
        print(f"audience        {a.key:28s} {a.kind:9s} {describe(a)}")
    for t in computed_traits():
        print(f"computed_trait  {t.key:28s} {t.kind:13s} {describe(t)}")
    for a in journey_audiences():
        print(f"audience (j)    {a.key:28s} {a.kind:9s} {describe(a)}")
    for t in journey_traits():
        print(f"computed_trait (j) {t.key:25s} {t.kind:13s} {describe(t)}")
