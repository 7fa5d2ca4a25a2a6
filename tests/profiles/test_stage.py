"""The profiles stage in process: records in, a transaction's effects and a result out.

Everything the worker does with `profile-events` records, over the in-memory partition
database (no Kafka, no producer): isolation of records it cannot process, timers of one
profile failing without stopping the others, re-sync to new identifiers, audience sizes,
the transaction's clock and backfill progress.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from engage_stream.config import Settings
from engage_stream.definitions.catalog import Catalog
from engage_stream.definitions.loader import parse_text
from engage_stream.definitions.models import AudienceDefinition
from engage_stream.engine.changes import Change
from engage_stream.engine.engine import Engine
from engage_stream.events import ProfileEvent
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.profiles import sizes
from engage_stream.profiles.accounts import Split
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.stage import (
    PROCESSING_FAILED,
    TICK_KEY,
    Engines,
    ProfileStage,
    StageResult,
)
from engage_stream.profiles.store import ProfileStore
from engage_stream.records import ORIGIN_HEADER, InputRecord
from engage_stream.state.memory import MemoryStore
from engage_stream.state.partition_store import StorageError
from engage_stream.state.transaction import Status, Transaction

T0 = 1_800_000_000_000
TOPIC = "engage.profile-events"


class Partition:
    """One in-memory partition database and the stage applied to it batch by batch."""

    def __init__(self, stage: ProfileStage) -> None:
        self.stage = stage
        self.db = MemoryStore()
        self.clock = 0
        self.sweep: Any = None

    def run(self, records: list[InputRecord]) -> StageResult:
        tx = Transaction(
            self.db, clock=self.clock, source_offset=self.db.source_offset, sweep=self.sweep
        )
        result = self.stage.apply(tx, records)
        tx.prepare()
        tx.commit(None)
        self.clock, self.sweep = tx.clock, tx.sweep
        return result

    def profile(self, user: str) -> ProfileRecord | None:
        return ProfileStore(Transaction(self.db)).get(f"user_id:{user}")


class Boom(Exception):
    pass


def _counted(pid: str, n: int, at: int) -> Change:
    return Change("computed_trait", "n", 1, pid, n, n - 1, at, f"n:{n}")


class FragileEngine:
    """Counts events per profile; raises on `Boom` events, or on the clock for profiles
    named in `fail_on_time`."""

    def __init__(self) -> None:
        self.fail_on_time: set[str] = set()

    def on_event(self, profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Any]:
        if event.event == "Boom":
            profile.engine["poisoned"] = True  # a half-done change that must not persist
            raise Boom(f"cannot evaluate {event.message_id}")
        if event.event == "Disk":
            raise StorageError("read failed")
        profile.engine["n"] = profile.engine.get("n", 0) + 1
        profile.next_wakeup = event.timestamp + 1000
        return [_counted(profile.profile_id, profile.engine["n"], now_ms)]

    def on_time(self, profile: ProfileRecord, now_ms: int) -> list[Any]:
        if profile.profile_id in self.fail_on_time:
            profile.engine["half"] = True  # changed, then failed: must not be seen again
            raise Boom("timer")
        profile.next_wakeup = None
        return [Change("computed_trait", "woke", 1, profile.profile_id, now_ms, None, now_ms, "t")]

    def recompute(
        self, profile: ProfileRecord, keys: set[str], history: Iterable[ProfileEvent], now: int
    ) -> list[Any]:
        return []

    def drop(self, profile: ProfileRecord, keys: set[str]) -> None:
        pass


def _fragile() -> tuple[Partition, FragileEngine]:
    stage = ProfileStage(Settings())
    engine = FragileEngine()
    stage.use(Catalog(), Engines(Split(), engine, Engine([]), {}, {}))  # type: ignore[arg-type]
    return Partition(stage), engine


def _event(offset: int, user: str, name: str, **kw: Any) -> InputRecord:
    pid = f"user_id:{user}"
    e = ProfileEvent(
        message_id=kw.pop("mid", f"m{offset}"),
        type=kw.pop("type", "track"),
        event=name,
        timestamp=T0 + offset,
        received_at=T0 + offset,
        profile_id=pid,
        user_id=user,
        **kw,
    )
    return _record(offset, pid.encode(), e.to_json(), T0 + offset)


def _record(offset: int, key: bytes, value: bytes | None, ts: int) -> InputRecord:
    return InputRecord(TOPIC, 0, offset, ts, key, value)


def test_a_record_that_fails_is_dead_lettered_and_the_rest_of_the_batch_applies() -> None:
    part, _ = _fragile()
    batch = [_event(0, "a", "Ok"), _event(1, "a", "Boom"), _event(2, "b", "Ok")]
    result = part.run(batch)
    dead = [r for r in result.outputs if r.topic == Settings().topics.dead_letter]
    assert len(dead) == 1 and result.failed == 1
    dl = DeadLetter.from_headers(dead[0].headers or [])
    assert (dl.reason, dl.topic, dl.partition, dl.offset) == (PROCESSING_FAILED, TOPIC, 0, 1)
    assert "Boom: cannot evaluate m1" in dl.detail
    assert dead[0].value == batch[1].value  # the record as it was, to re-produce once fixed
    assert [(c.profile_id, c.value) for c in result.changes] == [("user_id:a", 1), ("user_id:b", 1)]
    a = part.profile("a")
    assert a is not None and a.engine == {"n": 1}  # nothing of the failed event persisted
    assert a.metadata.event_count == 1
    b = part.profile("b")
    assert b is not None and b.engine == {"n": 1}
    assert part.db.source_offset == 2  # the batch, failed record included, is done


def test_a_dead_lettered_event_names_the_input_record_it_came_from() -> None:
    """#16.5: the profiles stage consumes internal records; its dead letters name the
    input record with the original bytes (ingest's origin header), and the internal
    record as `stage_record`."""
    part, _ = _fragile()
    boom = _event(1, "a", "Boom")
    origin = [(ORIGIN_HEADER, b"engage.track/3/4711")]
    result = part.run([_event(0, "a", "Ok"), dataclasses.replace(boom, headers=origin)])
    (dead,) = [r for r in result.outputs if r.topic == Settings().topics.dead_letter]
    dl = DeadLetter.from_headers(dead.headers or [])
    assert (dl.topic, dl.partition, dl.offset) == ("engage.track", 3, 4711)
    assert dl.stage_record == f"{TOPIC}/0/1"
    assert dead.value == boom.value
    # without the header (replay, records from before it), the record's own coordinates
    result = part.run([_event(2, "a", "Boom")])
    (dead,) = [r for r in result.outputs if r.topic == Settings().topics.dead_letter]
    dl = DeadLetter.from_headers(dead.headers or [])
    assert (dl.topic, dl.offset, dl.stage_record) == (TOPIC, 2, None)
    history = ProfileStore(Transaction(part.db)).history("user_id:a")
    assert [e.message_id for e in history] == ["m0"], "the failed event is not in history"


def test_many_failed_records_are_each_applied_once() -> None:
    """A poisoned record costs a rollback of its own effects, not a re-run of the batch."""
    part, engine = _fragile()
    calls = 0
    on_event = engine.on_event

    def counting(profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Any]:
        nonlocal calls
        calls += 1
        return on_event(profile, event, now_ms)

    engine.on_event = counting  # type: ignore[method-assign]
    batch = [_event(i, f"u{i % 7}", "Boom" if i % 3 == 0 else "Ok") for i in range(60)]
    result = part.run(batch)
    assert calls == 60 and result.failed == 20 and result.processed == 40


def test_a_storage_error_fails_the_batch_and_dead_letters_nothing() -> None:
    part, _ = _fragile()
    tx = Transaction(part.db)
    with pytest.raises(StorageError):
        part.stage.apply(tx, [_event(0, "a", "Ok"), _event(1, "a", "Disk")])
    tx.fail()
    assert tx.status is Status.FAILED and part.db.source_offset == -1 and len(part.db) == 0


def test_a_failed_record_is_not_seen_as_a_duplicate_when_re_produced() -> None:
    part, _ = _fragile()
    part.run([_event(0, "a", "Boom")])
    part.run([_event(1, "a", "Fixed", mid="m0")])
    a = part.profile("a")
    assert a is not None and a.engine == {"n": 1}, "the same messageId counts once it is fixed"


def test_a_profile_whose_timer_fails_does_not_stop_the_others() -> None:
    part, engine = _fragile()
    part.run([_event(0, "a", "Ok"), _event(1, "b", "Ok")])
    engine.fail_on_time.add("user_id:a")
    fired = part.run([_record(2, TICK_KEY, None, T0 + 5000)])
    assert [(c.profile_id, c.value) for c in fired.changes] == [("user_id:b", T0 + 5000)]
    a = part.profile("a")
    assert a is not None and a.next_wakeup == T0 + 1000, "still due: retried on the next tick"
    engine.fail_on_time.clear()
    fired = part.run([_record(3, TICK_KEY, None, T0 + 6000)])
    assert [(c.profile_id, c.value) for c in fired.changes] == [("user_id:a", T0 + 6000)]
    part.run([_event(4, "a", "Ok")])
    a = part.profile("a")
    assert a is not None and a.engine == {"n": 2}, "the failed timer's half-change is gone"


@pytest.mark.parametrize("cache_mb", [0.0, 8.0])
def test_a_failed_record_leaves_nothing_in_the_decoded_profiles(cache_mb: float) -> None:
    """The stage keeps profiles decoded between batches (`RecordCache`); a record that
    failed half-way, a rolled-back batch and a profile read but not stored all leave the
    next event the profile as stored — with the cache as without it."""
    stage = ProfileStage(Settings(record_cache_mb=cache_mb))
    engine = FragileEngine()
    stage.use(Catalog(), Engines(Split(), engine, Engine([]), {}, {}))  # type: ignore[arg-type]
    part = Partition(stage)
    part.run([_event(0, "a", "Ok"), _event(1, "b", "Ok")])
    part.run([_event(2, "a", "Boom"), _event(3, "b", "Ok")])  # a: dead-lettered, rolled back
    tx = Transaction(part.db, clock=part.clock, source_offset=part.db.source_offset)
    with pytest.raises(StorageError):  # the whole batch fails: b's third event is undone
        stage.apply(tx, [_event(4, "b", "Ok"), _event(5, "b", "Disk")])
    tx.fail()
    part.run([_event(6, "a", "Ok"), _event(7, "b", "Ok")])
    a, b = part.profile("a"), part.profile("b")
    assert a is not None and a.engine == {"n": 2}
    assert b is not None and b.engine == {"n": 3}


def test_records_at_or_below_the_applied_offset_are_skipped() -> None:
    part, _ = _fragile()
    part.run([_event(0, "a", "Ok"), _event(1, "a", "Ok")])
    again = part.run([_event(1, "a", "Ok"), _event(2, "a", "Ok")])
    assert (again.skipped, again.processed) == (1, 1)
    a = part.profile("a")
    assert a is not None and a.engine == {"n": 3}


def test_the_clock_and_backfill_progress_are_part_of_the_transaction() -> None:
    part, _ = _fragile()
    tx = Transaction(part.db)
    part.stage.apply(tx, [_record(5, TICK_KEY, None, T0 + 9)])
    assert tx.clock == T0 + 9 and tx.sweep.epoch == part.stage.epoch and tx.sweep.done
    tx.fail()  # a failed batch: the partition keeps what it had
    assert part.db.get(b"c:clock") is None and part.db.get(b"c:sweep") is None
    part.run([_record(5, TICK_KEY, None, T0 + 9)])  # a tick-only batch commits like any other
    assert part.db.get(b"c:clock") == str(T0 + 9).encode() and part.db.source_offset == 5


VIEWERS = """
kind: audience
key: viewers
conditions:
  - event: Product Viewed
    within: 7 days
destinations:
  - {name: braze}
"""


def _catalog(text: str) -> Catalog:
    defs, problems = parse_text(text, "v.yaml")
    assert not problems
    return Catalog.from_definitions(d for d, _ in defs)


def test_the_worker_path_re_sends_values_to_a_new_identifier() -> None:
    part = Partition(ProfileStage(Settings(), _catalog(VIEWERS)))
    identify = _event(1, "a", None, type="identify", traits={"email": "a@x.io"})  # type: ignore[arg-type]
    result = part.run([_event(0, "a", "Product Viewed"), identify])
    braze = [orjson.loads(r.value or b"") for r in result.outputs if r.topic == "engage.out.braze"]
    assert [(b["userId"], b["traits"]) for b in braze] == [
        ("a", {"viewers": True}),
        ("a", {"viewers": True, "email": "a@x.io"}),  # re-sent with the new identifier
    ]
    assert braze[0]["messageId"] != braze[1]["messageId"]


def test_deleted_memberships_leave_the_size() -> None:
    store = ProfileStore(MemoryStore().kv)
    store.kv.put(b"s:buyers", b"2")
    store.kv.put(b"s:fans", b"1")
    sizes.apply(store.kv, sizes.deltas([], ["buyers"]))
    assert sizes.read(store.kv) == {"buyers": 1, "fans": 1}
    sizes.apply(store.kv, sizes.deltas([], ["buyers"]))
    assert sizes.read(store.kv) == {"fans": 1}  # buyers: no member left, no counter


def _buyers(event: str) -> AudienceDefinition:
    return AudienceDefinition.model_validate({"key": "buyers", "conditions": [{"event": event}]})


def test_a_recreated_audience_counts_only_its_real_members() -> None:
    stage = ProfileStage(Settings())
    part = Partition(stage)
    stage.use(Catalog.from_definitions([_buyers("X")]))
    part.run([_event(0, "u1", "X"), _event(1, "u2", "X")])
    assert sizes.read(part.db.kv) == {"buyers": 2}

    stage.use(Catalog.from_definitions([]))  # deleted: the backfill drops it everywhere
    part.run([_record(2, TICK_KEY, None, T0 + 2)])
    assert sizes.read(part.db.kv) == {}

    recreated = Catalog.from_records(
        [
            (
                "buyers",
                2,
                0,
                {"kind": "audience", **_buyers("Y").model_dump(mode="json", exclude_defaults=True)},
            )
        ]
    )
    stage.use(recreated)  # re-created: version 2, counted from 0
    part.run([_event(3, "u1", "Y")])
    assert sizes.read(part.db.kv) == {"buyers": 1}


def _topics(result: StageResult) -> list[str]:
    return [r.topic for r in result.outputs if r.topic.startswith("engage.out.")]


def test_a_destination_added_to_an_audience_gets_its_current_members() -> None:
    stage = ProfileStage(Settings(), _catalog(VIEWERS.replace("braze", "crm")))
    part = Partition(stage)
    first = part.run([_event(0, "a", "Product Viewed"), _event(1, "b", "Other")])
    assert _topics(first) == ["engage.out.crm"]

    with_braze = _catalog(
        VIEWERS.replace("  - {name: braze}", "  - {name: crm}\n  - {name: braze}")
    )
    stage.use(with_braze)
    backfill = part.run([_record(2, TICK_KEY, None, T0 + 2)])
    braze = [
        orjson.loads(r.value or b"") for r in backfill.outputs if r.topic == "engage.out.braze"
    ]
    assert _topics(backfill) == ["engage.out.braze"], "nothing again to crm, nothing for b"
    assert [(b["userId"], b["traits"]) for b in braze] == [("a", {"viewers": True})]
    again = Partition(ProfileStage(Settings(), with_braze))
    again.db, again.clock, again.sweep = part.db, part.clock, part.sweep
    assert _topics(again.run([_record(3, TICK_KEY, None, T0 + 3)])) == [], "sent once"

    exit_ = part.run([_record(4, TICK_KEY, None, T0 + 8 * 86_400_000)])
    assert sorted(_topics(exit_)) == ["engage.out.braze", "engage.out.crm"]

    stage.use(_catalog(VIEWERS.replace("braze", "crm")))  # braze removed
    part.run([_record(5, TICK_KEY, None, T0 + 8 * 86_400_000 + 1)])
    back = part.run([_event(8 * 86_400_000 + 10, "a", "Product Viewed", mid="again")])
    assert _topics(back) == ["engage.out.crm"], "nothing further to a removed destination"


def test_the_source_an_event_came_through_is_on_the_profile() -> None:
    from engage_stream.stream.ingest_stage import _source_of

    assert _source_of([("engage.source_id", b"web"), ("x", b"y")]) == "web"
    assert _source_of([("x", b"y")]) is None
    part = Partition(ProfileStage(Settings(), _catalog(VIEWERS)))
    part.run(
        [_event(0, "a", "Product Viewed", source_id="web"), _event(1, "a", "X", source_id="ios")]
    )
    a = part.profile("a")
    assert a is not None
    assert (a.metadata.first_source_id, a.metadata.last_source_id) == ("web", "ios")
    assert {x.source_id for x in a.external_ids} == {"web"}


ORDERS = """
kind: computed_trait
key: orders_count
type: counter
event: Order Completed
---
kind: computed_trait
key: revenue
type: sum
event: Order Completed
property: revenue
"""


@pytest.mark.parametrize(
    ("revenue", "total"),
    [(2**64 - 1, float(2 * (2**64 - 1))), (1e308, None)],  # 1e308 > MAX_FLOAT_TERM: not summed
)
def test_huge_revenues_count_for_every_other_definition(revenue: Any, total: Any) -> None:
    """#16: the second of two u64-max / 1e308 revenues went to the DLQ as processing_failed
    and was lost for every definition (orders_count 1 after 2 orders)."""
    part = Partition(ProfileStage(Settings(), _catalog(ORDERS)))
    events = [_event(i, "a", "Order Completed", properties={"revenue": revenue}) for i in (1, 2)]
    result = part.run(events)
    assert result.failed == 0
    rec = part.profile("a")
    assert rec is not None
    assert rec.computed_traits["orders_count"].value == 2
    got = rec.computed_traits.get("revenue")
    assert (got.value if got is not None else None) == total


def _merge(offset: int, source: str, target: str) -> InputRecord:
    from engage_stream.profiles.control import MergeRequest

    req = MergeRequest(
        source=f"user_id:{source}", target=f"user_id:{target}", message_id=f"m{offset}", at=T0
    )
    return _record(offset, f"user_id:{source}".encode(), req.to_value(), T0 + offset)


@pytest.mark.parametrize("same_batch", [False, True])
def test_an_event_for_a_merged_away_profile_goes_on_to_its_survivor(same_batch: bool) -> None:
    """Whether the partition holds redirects is looked up once per batch; a merge in the
    batch itself counts too."""
    part, _ = _fragile()
    part.run([_event(1, "a", "Login"), _event(2, "b", "Login")])
    merge, late = _merge(3, "a", "b"), _event(4, "a", "Login")
    if same_batch:
        result = part.run([merge, late])
    else:
        part.run([merge])
        result = part.run([late])
    assert result.forwarded == 1 and result.processed == 0
    (sent,) = [  # (the merge's transfer of the state is a control record, \x00…)
        r
        for r in result.outputs
        if r.topic == Settings().topics.profile_events and r.value[:1] != b"\x00"
    ]
    assert sent.key == b"user_id:b" and orjson.loads(sent.value)["profile_id"] == "user_id:b"
    assert part.run([_event(5, "c", "Login")]).forwarded == 0


def test_an_events_history_entry_is_the_bytes_it_arrived_as() -> None:
    """Not written again: the record's own JSON (`from_json` of it is the event)."""
    part, _ = _fragile()
    rec = _event(1, "a", "Login", properties={"plan": "pro"})
    spaced = rec.value.replace(b",", b", ")  # still the same event, other bytes
    part.run([dataclasses.replace(rec, value=spaced)])
    tx = Transaction(part.db)
    ((_, stored),) = list(tx.range(b"h:", b"h;"))
    assert stored == spaced
    (event,) = ProfileStore(tx).history("user_id:a")
    assert event == ProfileEvent.from_json(rec.value)
