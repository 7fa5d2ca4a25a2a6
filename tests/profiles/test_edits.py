"""Edits that cannot change a result recompute nothing (issue: renaming a 365-day audience
recomputed it and exited a member). Through `apply`'s plan, the catalog a worker builds
from the definitions topic, and the profiles stage."""

from __future__ import annotations

from typing import Any

import orjson

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog, definition_body
from engage_stream.definitions.loader import parse_text
from engage_stream.events import ProfileEvent
from engage_stream.profiles.stage import TICK_KEY, ProfileStage
from engage_stream.records import InputRecord
from engage_stream.state.memory import MemoryStore
from engage_stream.state.transaction import Sweep, Transaction
from engage_stream.stream.definitions_topic import DefinitionRecord, plan, record_key

D = 86_400_000
JAN1, APR20 = 1735689600000, 1745107200000
NOW = APR20 + 10 * D

TEXT = """
- kind: audience
  key: twice_year
  include_history: {days: 365}
  conditions:
    - event: E
      count: ">= 2"
  destinations: [{name: crm}]
- kind: computed_trait
  key: e_count
  type: counter
  event: E
  include_history: {days: 365}
"""


class Topic:
    """The definitions topic as `apply` leaves it, and the catalog a worker reads off it."""

    def __init__(self) -> None:
        self.current: dict[bytes, DefinitionRecord] = {}
        self.now = 1

    def apply(self, text: str) -> list[DefinitionRecord]:
        defs, problems = parse_text(text, "t.yaml")
        assert not problems
        self.now += 1
        p = plan(
            self.current,
            ((d.kind, d.key, definition_body(d)) for d, _ in defs),
            prune=False,
            now_ms=self.now,
        )
        for rec in p.publish:
            self.current[record_key(rec.kind, rec.key)] = rec
        return p.publish

    def catalog(self) -> Catalog:
        return Catalog.from_records(
            (r.key, r.version, r.created_at, r.body, r.evaluated_version)
            for r in self.current.values()
        )


class Partition:
    def __init__(self, settings: Settings) -> None:
        self.stage = ProfileStage(settings)
        self.db = MemoryStore()
        self.clock, self.sweep, self.offset = 0, Sweep(), 0

    def run(self, *records: tuple[bytes, bytes | None, int]) -> list[Any]:
        batch = []
        for key, value, ts in records:
            batch.append(InputRecord("pe", 0, self.offset, ts, key, value))
            self.offset += 1
        tx = Transaction(
            self.db, clock=self.clock, source_offset=self.db.source_offset, sweep=self.sweep
        )
        result = self.stage.apply(tx, batch)
        tx.prepare()
        tx.commit(None)
        self.clock, self.sweep = tx.clock, tx.sweep
        return [orjson.loads(r.value or b"") for r in result.outputs]

    def tick(self, at: int) -> list[Any]:
        return self.run((TICK_KEY, None, at))


def _e(mid: str, ts: int) -> tuple[bytes, bytes, int]:
    ev = ProfileEvent(
        message_id=mid,
        type="track",
        event="E",
        timestamp=ts,
        received_at=ts,
        profile_id="use_1",
        user_id="u1",
    )
    return b"use_1", ev.to_json(), NOW


def test_renaming_recomputes_nothing_and_a_real_edit_still_does() -> None:
    # 90 days of history kept, a 365-day lookback: what a recompute would get wrong
    topic, part = Topic(), Partition(Settings(history_days=90))
    topic.apply(TEXT)
    part.stage.use(topic.catalog())
    part.run(_e("e1", JAN1), _e("e2", APR20))

    text = TEXT.replace("key: twice_year", "key: twice_year\n  name: Twice a year")
    text = text.replace("key: e_count", "key: e_count\n  description: how many E")
    (renamed, described) = topic.apply(text)
    assert (renamed.version, renamed.evaluated_version) == (2, 1)
    assert (described.version, described.evaluated_version) == (2, 1)
    part.stage.use(topic.catalog())
    assert part.tick(NOW + 1000) == [], "no exit, no counter drop: nothing to recompute"

    text = text.replace("[{name: crm}]", "[{name: crm}, {name: ads}]")
    (more_dest,) = topic.apply(text)
    assert more_dest.evaluated_version == 1
    part.stage.use(topic.catalog())
    sent = part.tick(NOW + 2000)
    assert [(r.get("type"), r["integrations"]) for r in sent] == [
        ("identify", {"All": False, "ads": True})
    ], "the added destination gets the current member, nothing else moves"

    (edited,) = topic.apply(text.replace('">= 2"', '">= 3"'))
    assert edited.evaluated_version == edited.version == 4
    part.stage.use(topic.catalog())
    changes = [r for r in part.tick(NOW + 3000) if "kind" in r]
    assert [(c["key"], c["value"], c["version"]) for c in changes] == [("twice_year", False, 4)]
