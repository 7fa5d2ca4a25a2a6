"""Batch baseline: recompute the whole bench definition set with DuckDB over the same events.

Why: the alternative to an incremental engine is a warehouse-style full recompute on a
schedule. One full recompute of all 50 audiences and 20 computed traits costs R seconds;
our worker spends c µs per event keeping them fresh — so one recompute costs as much as
R / c events processed incrementally, and a recompute every T seconds only keeps up with
the stream's freshness at T-second staleness. The SQL is rendered from
`bench.definition_set` (the one place the set is described), so it stays the same set the
engine will run; its member counts also serve as a batch oracle for the engine later.

    python -m bench.baseline_duckdb FILE.jsonl --now-ms END_MS [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.definition_set import (
    Audience,
    Combine,
    ComputedTrait,
    EventCount,
    EventSum,
    Funnel,
    Inactive,
    TraitIs,
    Where,
    audiences,
    computed_traits,
)
from engage_stream.config import DAY_MS

# Typed columns the definitions may filter on; everything else stays in the JSON.
PROPERTY_COLUMNS: dict[str, tuple[str, str]] = {
    "category": ("VARCHAR", "properties->>'category'"),
    "product_id": ("VARCHAR", "properties->>'product_id'"),
    "brand": ("VARCHAR", "properties->>'brand'"),
    "price": ("DOUBLE", "TRY_CAST(properties->>'price' AS DOUBLE)"),
    "revenue": ("DOUBLE", "TRY_CAST(properties->>'revenue' AS DOUBLE)"),
    "page_name": ("VARCHAR", "name"),
}
TRAIT_COLUMNS: dict[str, str] = {
    "plan": "traits->>'plan'",
    "country": "traits->>'country'",
    "age": "TRY_CAST(traits->>'age' AS DOUBLE)",
    "email": "traits->>'email'",
}


def load_sql(path: Path) -> str:
    cols = ",\n  ".join(f"{expr} AS {name}" for name, (_, expr) in PROPERTY_COLUMNS.items())
    tcols = ",\n  ".join(f"{expr} AS t_{name}" for name, expr in TRAIT_COLUMNS.items())
    return f"""
CREATE OR REPLACE TABLE ev AS
SELECT
  CASE WHEN userId IS NOT NULL THEN 'user_id:' || userId
       ELSE 'anonymous_id:' || anonymousId END AS profile_id,
  epoch_ms("timestamp") AS ts,
  CASE type WHEN 'page' THEN 'Page Viewed' WHEN 'screen' THEN 'Screen Viewed'
            WHEN 'track' THEN event ELSE type END AS event,
  type,
  {cols},
  {tcols}
FROM read_json('{path}', format = 'newline_delimited', columns = {{
  'type': 'VARCHAR', 'event': 'VARCHAR', 'userId': 'VARCHAR', 'anonymousId': 'VARCHAR',
  'timestamp': 'TIMESTAMPTZ', 'name': 'VARCHAR', 'properties': 'JSON', 'traits': 'JSON'
}})"""


def _lit(v: str | float) -> str:
    return "'" + v.replace("'", "''") + "'" if isinstance(v, str) else repr(v)


def _where(ws: tuple[Where, ...]) -> str:
    return "".join(f" AND {w.prop} {w.op} {_lit(w.value)}" for w in ws)


def _window(days: int, now: int) -> str:
    return f"ts > {now - days * DAY_MS} AND ts <= {now}"


def traits_sql(now: int) -> str:
    """Latest value of each trait by event time (identify calls)."""
    cols = ",\n  ".join(
        f"arg_max(t_{n}, ts) FILTER (WHERE t_{n} IS NOT NULL) AS {n}" for n in TRAIT_COLUMNS
    )
    return f"""CREATE OR REPLACE TABLE profile_traits AS
SELECT profile_id,
  {cols}
FROM ev WHERE type = 'identify' AND ts <= {now} GROUP BY profile_id"""


def audience_sql(a: Audience, now: int) -> str:
    """SELECT profile_id of the members, for one audience."""
    if isinstance(a, EventCount):
        return (
            f"SELECT profile_id FROM ev WHERE event = {_lit(a.event)} AND "
            f"{_window(a.days, now)}{_where(a.where)} GROUP BY profile_id "
            f"HAVING count(*) >= {a.at_least}"
        )
    if isinstance(a, EventSum):
        return (
            f"SELECT profile_id FROM ev WHERE event = {_lit(a.event)} AND "
            f"{_window(a.days, now)} GROUP BY profile_id HAVING sum({a.prop}) >= {a.at_least}"
        )
    if isinstance(a, TraitIs):
        return f"SELECT profile_id FROM profile_traits WHERE {a.trait} {a.op} {_lit(a.value)}"
    if isinstance(a, Funnel):
        last_a = f"max(ts) FILTER (WHERE event = {_lit(a.first)} AND {_window(a.days, now)})"
        last_b = f"max(ts) FILTER (WHERE event = {_lit(a.then)} AND ts <= {now})"
        return (
            f"SELECT profile_id FROM ev WHERE ts <= {now} GROUP BY profile_id "
            f"HAVING {last_a} IS NOT NULL AND coalesce({last_b}, -1) < {last_a}"
        )
    if isinstance(a, Inactive):
        return (
            "SELECT profile_id FROM profile_traits WHERE email IS NOT NULL EXCEPT "
            f"SELECT profile_id FROM ev WHERE {_window(a.days, now)}"
        )
    if isinstance(a, Combine):
        parts: list[str] = []
        if a.all:
            parts.append(" INTERSECT ".join(f"SELECT profile_id FROM a_{k}" for k in a.all))
        if a.any:
            union = " UNION ".join(f"SELECT profile_id FROM a_{k}" for k in a.any)
            parts.append(f"SELECT profile_id FROM ({union})")
        sql = " INTERSECT ".join(f"({p})" for p in parts)
        for k in a.none:
            sql = f"({sql}) EXCEPT SELECT profile_id FROM a_{k}"
        return sql
    raise TypeError(f"unknown audience kind {a!r}")


def trait_sql(t: ComputedTrait, now: int) -> str:
    """SELECT profile_id, value for one computed trait."""
    base = f"FROM ev WHERE event = {_lit(t.event)} AND {_window(t.days, now)}"
    col = t.prop
    agg = {
        "count": "count(*)",
        "sum": f"sum({col})",
        "avg": f"avg({col})",
        "min": f"min({col})",
        "max": f"max({col})",
        "last": f"arg_max({col}, ts)",
        "first": f"arg_min({col}, ts)",
        "unique_count": f"count(DISTINCT {col})",
    }.get(t.kind)
    if agg is not None:
        nonnull = f" AND {col} IS NOT NULL" if col and t.kind != "count" else ""
        return f"SELECT profile_id, {agg} AS value {base}{nonnull} GROUP BY profile_id"
    if t.kind == "most_frequent":
        return (
            f"SELECT profile_id, v AS value FROM (SELECT profile_id, {col} AS v, count(*) AS n "
            f"{base} AND {col} IS NOT NULL GROUP BY ALL) "
            "QUALIFY row_number() OVER (PARTITION BY profile_id ORDER BY n DESC, v ASC) = 1"
        )
    raise ValueError(f"unknown trait kind {t.kind}")


def statements(now: int) -> list[tuple[str, str]]:
    """(name, SQL) for one full recompute, in dependency order."""
    out = [("profile_traits", traits_sql(now))]
    for a in audiences():
        out.append((f"a_{a.key}", f"CREATE OR REPLACE TABLE a_{a.key} AS {audience_sql(a, now)}"))
    for t in computed_traits():
        out.append((f"t_{t.key}", f"CREATE OR REPLACE TABLE t_{t.key} AS {trait_sql(t, now)}"))
    return out


@dataclass
class DuckResult:
    events: int
    profiles: int
    threads: int
    load_s: float
    recompute_s: float
    recompute_1thread_s: float | None
    audience_members: dict[str, int] = field(default_factory=dict)
    trait_profiles: dict[str, int] = field(default_factory=dict)


def run(
    path: Path, now_ms: int, threads: int | None = None, one_thread_too: bool = True
) -> DuckResult:
    """Load the JSON lines, then time one full recompute (and again on one thread)."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        if threads:
            con.execute(f"SET threads = {threads}")
        used = int(con.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]
        t0 = time.perf_counter()
        con.execute(load_sql(path))
        load_s = time.perf_counter() - t0
        n, profiles = con.execute("SELECT count(*), count(DISTINCT profile_id) FROM ev").fetchone()  # type: ignore[misc]
        stmts = statements(now_ms)

        def recompute() -> float:
            t = time.perf_counter()
            for _, sql in stmts:
                con.execute(sql)
            return time.perf_counter() - t

        recompute()  # warm-up: first-run plan and allocator costs are not the steady cost
        secs = recompute()
        one = None
        if one_thread_too and used > 1:
            con.execute("SET threads = 1")
            one = recompute()
            con.execute(f"SET threads = {used}")
        members = {
            a.key: int(con.execute(f"SELECT count(*) FROM a_{a.key}").fetchone()[0])  # type: ignore[index]
            for a in audiences()
        }
        traits = {
            t.key: int(con.execute(f"SELECT count(*) FROM t_{t.key}").fetchone()[0])  # type: ignore[index]
            for t in computed_traits()
        }
    finally:
        con.close()
    return DuckResult(
        events=int(n),
        profiles=int(profiles),
        threads=used,
        load_s=round(load_s, 3),
        recompute_s=round(secs, 3),
        recompute_1thread_s=round(one, 3) if one is not None else None,
        audience_members=members,
        trait_profiles=traits,
    )


def as_dict(r: DuckResult) -> dict[str, Any]:
    return asdict(r)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_duckdb")
    p.add_argument("file", type=Path)
    p.add_argument("--now-ms", type=int, required=True, help="the workload's end_ms")
    p.add_argument("--threads", type=int)
    p.add_argument("--print-sql", action="store_true")
    args = p.parse_args(argv)
    if args.print_sql:
        print(load_sql(args.file) + ";")
        for _, sql in statements(args.now_ms):
            print(sql + ";")
        return 0
    r = run(args.file, args.now_ms, args.threads)
    print(
        f"{r.events:,} events, {r.profiles:,} profiles: load {r.load_s:.2f}s, full recompute "
        f"of {len(r.audience_members)} audiences + {len(r.trait_profiles)} traits "
        f"{r.recompute_s:.3f}s on {r.threads} threads"
        + (f", {r.recompute_1thread_s:.3f}s on 1" if r.recompute_1thread_s else "")
    )
    for k, v in r.audience_members.items():
        print(f"  audience {k:28s} {v:>9,}")
    for k, v in r.trait_profiles.items():
        print(f"  trait    {k:28s} {v:>9,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
