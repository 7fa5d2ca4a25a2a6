"""The Quix Streams peer baseline (#14): a slice of the bench definition set as a Quix app.

Why this exists: the naive Faust baselines bracket the worker's framework cost, but nobody
would build Engage on them. Quix Streams (librdkafka via confluent-kafka, RocksDB state) is
what a Python team would actually pick for "per-user counts in time windows", so the worker
should be ahead of it per definition evaluated although it does far more per event.

The app is what a Quix user would write: one `StreamingDataFrame` over the bench's input
topics (`concat`: one state per user across types, time-aligned by Quix), event time from
the event's `timestamp` (`timestamp_extractor`), one stateful `apply` that keeps the user's
windows in Quix's RocksDB `State` (changelogged, Quix's defaults: at-least-once, a
checkpoint every 5 s), and an output record on a topic whenever a membership or a trait
value changes. No timers: a window exit is seen at the user's next event (the worker's
timers emit it when it is due) — less work than the worker, not more.

The slice (15 of the 70 definitions in bench/definitions/, same keys, same semantics:
event time in (now − W days, now], page calls are `Page Viewed` with `page_name`; now =
the newest event time seen for the user):

- count-in-window audiences: `pages_5_7d` (Page Viewed ≥ 5 in 7 d), `viewed_3_7d` (Product
  Viewed ≥ 3 in 7 d), `viewed_10_30d`, `added_3_30d` (Product Added ≥ 3 in 30 d),
  `orders_2_90d` (Order Completed ≥ 2 in 90 d), with property filters: `browsed_shoes_14d`
  (category = shoes), `pricing_page_7d` (page_name = Pricing), `premium_viewer_2_30d`
  (price > 200, ≥ 2 in 30 d), `big_order_90d` (revenue > 300);
- a sum audience: `revenue_100_30d` (sum of Order Completed.revenue ≥ 100 in 30 d);
- computed traits: `orders_90d`, `page_views_7d`, `product_views_30d` (counts),
  `revenue_90d`, `revenue_30d` (sums).

Every definition is evaluated on every event (windows slide with the user's clock, so an
event of any type can end a membership). Count audiences keep only the newest N
timestamps (N = the threshold: enough to decide "≥ N in W"), traits one entry per event
in their window — as the worker keeps them.

Only the standard library and quixstreams: it runs in its own venv (bench/.venv-quix,
made by bench/baseline_quix.py). Progress goes to a status file the harness polls, in the
format of bench/baseline_faust.py's.

    bench/.venv-quix/bin/python bench/quix_app.py --broker HOST:PORT --topics a,b \\
        --group G --output OUT --expect N --status FILE --state-dir DIR
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import time
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

DAY_MS = 86_400_000
PAGE = "Page Viewed"


class Where(NamedTuple):
    """A filter on one event property (or `page_name`)."""

    prop: str
    op: str  # "=" or ">"
    value: str | float


class CountAudience(NamedTuple):
    key: str
    event: str
    days: int
    at_least: int
    where: tuple[Where, ...] = ()


class SumAudience(NamedTuple):
    key: str
    event: str
    prop: str
    days: int
    at_least: float


class WindowTrait(NamedTuple):
    key: str
    kind: str  # "count" or "sum"
    event: str
    days: int
    prop: str | None = None


AUDIENCES: tuple[CountAudience, ...] = (
    CountAudience("pages_5_7d", PAGE, 7, 5),
    CountAudience("viewed_3_7d", "Product Viewed", 7, 3),
    CountAudience("viewed_10_30d", "Product Viewed", 30, 10),
    CountAudience("added_3_30d", "Product Added", 30, 3),
    CountAudience("orders_2_90d", "Order Completed", 90, 2),
    CountAudience("browsed_shoes_14d", "Product Viewed", 14, 1, (Where("category", "=", "shoes"),)),
    CountAudience("pricing_page_7d", PAGE, 7, 1, (Where("page_name", "=", "Pricing"),)),
    CountAudience("premium_viewer_2_30d", "Product Viewed", 30, 2, (Where("price", ">", 200),)),
    CountAudience("big_order_90d", "Order Completed", 90, 1, (Where("revenue", ">", 300),)),
)
SUM_AUDIENCES: tuple[SumAudience, ...] = (
    SumAudience("revenue_100_30d", "Order Completed", "revenue", 30, 100),
)
TRAITS: tuple[WindowTrait, ...] = (
    WindowTrait("orders_90d", "count", "Order Completed", 90),
    WindowTrait("page_views_7d", "count", PAGE, 7),
    WindowTrait("product_views_30d", "count", "Product Viewed", 30),
    WindowTrait("revenue_90d", "sum", "Order Completed", 90, "revenue"),
    WindowTrait("revenue_30d", "sum", "Order Completed", 30, "revenue"),
)
DEFINITIONS = len(AUDIENCES) + len(SUM_AUDIENCES) + len(TRAITS)

_ts = itemgetter(0)


def event_time_ms(value: Any, headers: Any, timestamp: int, timestamp_type: int) -> int:
    """Quix's timestamp extractor: the event's own time, not the record's append time."""
    ts = value.get("timestamp") if isinstance(value, dict) else None
    if not ts:
        return timestamp
    return int(datetime.fromisoformat(ts).timestamp() * 1000)


def event_view(value: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(event name, properties) as the definitions read them: page calls are `Page
    Viewed` with the page's name as `page_name`; identify and group calls have no name."""
    kind = value.get("type")
    props = value.get("properties") or {}
    if kind == "track":
        return value.get("event"), props
    if kind == "page":
        return PAGE, {**props, "page_name": value.get("name")}
    return None, props


def _holds(where: tuple[Where, ...], props: dict[str, Any]) -> bool:
    for w in where:
        v = props.get(w.prop)
        if w.op == "=":
            if v != w.value:
                return False
        elif not (isinstance(v, int | float) and v > w.value):
            return False
    return True


def evaluate(
    profile: dict[str, Any], name: str | None, props: dict[str, Any], ts: int
) -> list[dict[str, Any]]:
    """One event against every definition of the slice; updates `profile` (the user's
    state: `now`, windows `w`, current values `v`) and returns the changes to emit."""
    now = max(profile.get("now", ts), ts)
    profile["now"] = now
    windows: dict[str, list[Any]] = profile.setdefault("w", {})
    values: dict[str, Any] = profile.setdefault("v", {})
    out: list[dict[str, Any]] = []
    for a in AUDIENCES:
        lo = now - a.days * DAY_MS
        entries = windows.get(a.key) or []
        if name == a.event and ts > lo and _holds(a.where, props):
            bisect.insort(entries, ts)
            del entries[: -a.at_least]  # the newest N decide "≥ N within W"
        del entries[: bisect.bisect_right(entries, lo)]
        _keep(windows, a.key, entries)
        _change(out, values, "audience", a.key, len(entries) >= a.at_least, False, now)
    for s in SUM_AUDIENCES:
        total = _window_sum(windows, s.key, s.event, s.prop, s.days, name, props, ts, now)
        _change(out, values, "audience", s.key, total >= s.at_least, False, now)
    for t in TRAITS:
        if t.kind == "count":
            lo = now - t.days * DAY_MS
            entries = windows.get(t.key) or []
            if name == t.event and ts > lo:
                bisect.insort(entries, ts)
            del entries[: bisect.bisect_right(entries, lo)]
            _keep(windows, t.key, entries)
            _change(out, values, "trait", t.key, len(entries), 0, now)
        else:
            assert t.prop is not None
            total = _window_sum(windows, t.key, t.event, t.prop, t.days, name, props, ts, now)
            _change(out, values, "trait", t.key, total, 0.0, now)
    return out


def _window_sum(
    windows: dict[str, list[Any]],
    key: str,
    event: str,
    prop: str,
    days: int,
    name: str | None,
    props: dict[str, Any],
    ts: int,
    now: int,
) -> float:
    lo = now - days * DAY_MS
    entries = windows.get(key) or []
    if name == event and ts > lo:
        amount = props.get(prop)
        if isinstance(amount, int | float):
            bisect.insort(entries, [ts, amount], key=_ts)
    del entries[: bisect.bisect_right(entries, lo, key=_ts)]
    _keep(windows, key, entries)
    return round(sum(e[1] for e in entries), 2)


def _keep(windows: dict[str, list[Any]], key: str, entries: list[Any]) -> None:
    if entries:
        windows[key] = entries
    else:
        windows.pop(key, None)


def _change(
    out: list[dict[str, Any]],
    values: dict[str, Any],
    kind: str,
    key: str,
    value: Any,
    default: Any,
    at: int,
) -> None:
    """Emit when the value differs from the last emitted one; defaults are not stored."""
    if values.get(key, default) == value:
        return
    if value == default:
        values.pop(key, None)
    else:
        values[key] = value
    out.append({"type": kind, "key": key, "value": value, "at": at})


class Status:
    """Progress for the harness (bench/baseline_faust.py's format), written atomically."""

    def __init__(self, path: Path, expect: int) -> None:
        self.path = path
        self.expect = expect
        self.count = 0
        self.first: float | None = None
        self.cpu_first: float | None = None
        self.count_first = 0
        self.steady: dict[str, float] = {}  # when 10 % and 90 % of `expect` were processed
        self._marks = [(0.1 * expect, "t10"), (0.9 * expect, "t90")]
        self._written = 0.0

    def seen(self, *_: Any) -> None:
        self.count += 1
        if self.first is None:  # the clock starts at the first processed event
            self.first, self.cpu_first = time.time(), time.process_time()
            self.count_first = self.count
        if self._marks and self.count >= self._marks[0][0]:
            self.steady[self._marks.pop(0)[1]] = time.time()
        if self.count >= self.expect or time.monotonic() - self._written > 0.5:
            self.write()

    def write(self) -> None:
        self._written = time.monotonic()
        data = {
            "count": self.count,
            "first": self.first,
            "count_first": self.count_first,
            "cpu_first": self.cpu_first,
            "last": time.time(),
            "cpu_last": time.process_time(),
            "done": self.count >= self.expect,
            **self.steady,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)


def main(argv: list[str] | None = None) -> int:
    from quixstreams import Application, State
    from quixstreams.models import TopicConfig

    p = argparse.ArgumentParser(prog="quix_app.py", description=__doc__.split("\n")[0])
    p.add_argument("--broker", required=True)
    p.add_argument("--topics", required=True, help="comma-separated input topics")
    p.add_argument("--group", required=True)
    p.add_argument("--output", required=True, help="topic for membership / trait changes")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--status", type=Path, required=True)
    p.add_argument("--state-dir", required=True)
    args = p.parse_args(argv)
    status = Status(args.status, args.expect)

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        on_message_processed=status.seen,
        loglevel="WARNING",
    )
    inputs = [
        app.topic(t, value_deserializer="json", timestamp_extractor=event_time_ms)
        for t in args.topics.split(",")
    ]
    output = app.topic(
        args.output,
        value_serializer="json",
        config=TopicConfig(num_partitions=args.partitions, replication_factor=1),
    )

    def on_event(
        value: dict[str, Any], key: bytes, timestamp: int, headers: Any, state: State
    ) -> list[dict[str, Any]]:
        profile = state.get("profile") or {}
        name, props = event_view(value)
        changes = evaluate(profile, name, props, timestamp)
        state.set("profile", profile)
        return changes

    sdf = app.dataframe(inputs[0])
    for topic in inputs[1:]:
        sdf = sdf.concat(app.dataframe(topic))
    sdf = sdf.apply(on_event, stateful=True, metadata=True, expand=True)
    sdf.to_topic(output)
    app.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
