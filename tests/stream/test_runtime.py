"""The profiles stage's isolation of records it cannot process, over a real RocksDB store.

Unit tests of `ProfileRuntime`'s batch logic: the checkpoint's producer is replaced by a
recorder (what reaches Kafka is covered by the broker tests); state, transactions and the
processor are the worker's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition

from engage_stream.config import Settings
from engage_stream.events import ProfileEvent
from engage_stream.ingest.dead_letter import DeadLetter
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.transaction import Transaction
from engage_stream.stream.emit import NoRecords
from engage_stream.stream.partitions import PartitionManager, PartitionState
from engage_stream.stream.producing import OutgoingRecord
from engage_stream.stream.runtime import PROCESSING_FAILED, TICK_KEY, ProfileRuntime

T0 = 1_800_000_000_000
TOPIC = "engage.profile-events"


class Recorder:
    """Stands in for the producer: keeps what a checkpoint sends, acknowledges it."""

    def __init__(self) -> None:
        self.sent: list[OutgoingRecord] = []

    async def send_many(self, records: list[OutgoingRecord]) -> dict[tuple[str, int], int]:
        self.sent.extend(records)
        return {(r.topic, r.partition or 0): len(self.sent) for r in records}


class LocalPartitions(PartitionManager):
    async def _recover(self, ps: PartitionState) -> None:
        ps.needs_catch_up = False


class Boom(Exception):
    pass


class FragileEngine:
    """Counts events per profile as a computed trait; raises on `Boom` events, or on the
    clock for profiles named in `fail_on_time`."""

    def __init__(self) -> None:
        self.fail_on_time: set[str] = set()

    def on_event(self, profile: ProfileRecord, event: ProfileEvent, now_ms: int) -> list[Any]:
        if event.event == "Boom":
            profile.engine["poisoned"] = True  # a half-done change that must not persist
            raise Boom(f"cannot evaluate {event.message_id}")
        profile.engine["n"] = profile.engine.get("n", 0) + 1
        profile.next_wakeup = event.timestamp + 1000
        return [("counted", profile.profile_id, profile.engine["n"])]

    def on_time(self, profile: ProfileRecord, now_ms: int) -> list[Any]:
        if profile.profile_id in self.fail_on_time:
            raise Boom("timer")
        profile.next_wakeup = None
        return [("woke", profile.profile_id, now_ms)]

    def recompute(
        self, profile: ProfileRecord, keys: set[str], history: Iterable[ProfileEvent], now: int
    ) -> list[Any]:
        return []

    def drop(self, profile: ProfileRecord, keys: set[str]) -> None:
        pass


class ReprRecords(NoRecords):
    def __call__(
        self, changes: list[Any], store: ProfileStore, profile: ProfileRecord | None = None
    ) -> list[OutgoingRecord]:
        return [OutgoingRecord("out", None, repr(c).encode()) for c in changes]


def _event(offset: int, user: str, name: str) -> ConsumerRecord:
    pid = f"user_id:{user}"
    e = ProfileEvent(
        message_id=f"m{offset}",
        type="track",
        event=name,
        timestamp=T0 + offset,
        received_at=T0 + offset,
        profile_id=pid,
        user_id=user,
    )
    return _record(offset, pid.encode(), e.to_json(), T0 + offset)


def _record(offset: int, key: bytes, value: bytes, ts: int) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, 0, offset, ts, 0, key, value, None, len(key), len(value), [])  # type: ignore[call-arg]


def _runtime(tmp_path: Path) -> tuple[ProfileRuntime, Recorder, FragileEngine]:
    settings = Settings(data_dir=tmp_path)
    sender = Recorder()
    rt = ProfileRuntime(settings, LocalPartitions(settings, sender))  # type: ignore[arg-type]
    engine = FragileEngine()
    rt.set_engine(engine, {}, ReprRecords())
    return rt, sender, engine


def _run(rt: ProfileRuntime, records: list[ConsumerRecord]) -> None:
    asyncio.run(rt.handle({TopicPartition(TOPIC, 0): records}))


def _profile(rt: ProfileRuntime, user: str) -> ProfileRecord | None:
    ps = rt.partitions.open[0]
    return ProfileStore(Transaction(ps.store)).get(f"user_id:{user}")


def test_a_record_that_fails_is_dead_lettered_and_the_rest_of_the_batch_applies(
    tmp_path: Path,
) -> None:
    rt, sender, _ = _runtime(tmp_path)
    batch = [_event(0, "a", "Ok"), _event(1, "a", "Boom"), _event(2, "b", "Ok")]
    _run(rt, batch)
    dead = [r for r in sender.sent if r.topic == rt.settings.topics.dead_letter]
    assert len(dead) == 1
    dl = DeadLetter.from_headers(dead[0].headers or [])
    assert (dl.reason, dl.topic, dl.partition, dl.offset) == (PROCESSING_FAILED, TOPIC, 0, 1)
    assert "Boom: cannot evaluate m1" in dl.detail
    assert dead[0].value == batch[1].value  # the record as it was, to re-produce once fixed
    outputs = [r.value for r in sender.sent if r.topic == "out"]
    assert outputs == [
        repr(("counted", "user_id:a", 1)).encode(),
        repr(("counted", "user_id:b", 1)).encode(),
    ]
    a = _profile(rt, "a")
    assert a is not None and a.engine == {"n": 1}  # nothing of the failed event persisted
    assert a.metadata.event_count == 1
    b = _profile(rt, "b")
    assert b is not None and b.engine == {"n": 1}
    assert rt.partitions.open[0].source_offset == 2  # the batch, failed record included, is done
    # the failed event is not in the profile's history either
    ps = rt.partitions.open[0]
    assert [e.message_id for e in ProfileStore(Transaction(ps.store)).history("user_id:a")] == [
        "m0"
    ]


def test_a_failed_record_is_not_seen_as_a_duplicate_when_re_produced(tmp_path: Path) -> None:
    rt, sender, _ = _runtime(tmp_path)
    _run(rt, [_event(0, "a", "Boom")])
    ok = ProfileEvent.from_json(_event(0, "a", "Fixed").value)
    _run(rt, [_record(1, b"user_id:a", ok.to_json(), T0 + 1)])
    a = _profile(rt, "a")
    assert a is not None and a.engine == {"n": 1}, "the same messageId counts once it is fixed"


def test_a_profile_whose_timer_fails_does_not_stop_the_others(tmp_path: Path) -> None:
    rt, sender, engine = _runtime(tmp_path)
    _run(rt, [_event(0, "a", "Ok"), _event(1, "b", "Ok")])
    engine.fail_on_time.add("user_id:a")
    sender.sent.clear()
    _run(rt, [_record(2, TICK_KEY, b"", T0 + 5000)])
    assert [r.value for r in sender.sent if r.topic == "out"] == [
        repr(("woke", "user_id:b", T0 + 5000)).encode()
    ]
    a = _profile(rt, "a")
    assert a is not None and a.next_wakeup == T0 + 1000, "still due: retried on the next tick"
    engine.fail_on_time.clear()
    sender.sent.clear()
    _run(rt, [_record(3, TICK_KEY, b"", T0 + 6000)])
    assert [r.value for r in sender.sent if r.topic == "out"] == [
        repr(("woke", "user_id:a", T0 + 6000)).encode()
    ]


VIEWERS = """
kind: audience
key: viewers
conditions:
  - event: Product Viewed
    within: 7 days
destinations:
  - {name: braze}
"""


def test_the_worker_path_re_sends_values_to_a_new_identifier(tmp_path: Path) -> None:
    from engage_stream.definitions.catalog import Catalog
    from engage_stream.definitions.loader import parse_text
    from engage_stream.engine import Engine
    from engage_stream.stream.emit import RecordBuilder

    defs, problems = parse_text(VIEWERS, "v.yaml")
    assert not problems
    catalog = Catalog.from_definitions(d for d, _ in defs)
    settings = Settings(data_dir=tmp_path)
    sender = Recorder()
    rt = ProfileRuntime(settings, LocalPartitions(settings, sender))  # type: ignore[arg-type]
    rt.set_engine(Engine(catalog.active()), catalog.versions(), RecordBuilder(catalog, settings))
    identify = ProfileEvent(
        message_id="i1",
        type="identify",
        timestamp=T0 + 1,
        received_at=T0 + 1,
        profile_id="user_id:a",
        user_id="a",
        traits={"email": "a@x.io"},
    )
    _run(
        rt, [_event(0, "a", "Product Viewed"), _record(1, b"user_id:a", identify.to_json(), T0 + 1)]
    )
    braze = [orjson.loads(r.value) for r in sender.sent if r.topic == "engage.out.braze"]
    assert [(b["userId"], b["traits"]) for b in braze] == [
        ("a", {"viewers": True}),
        ("a", {"viewers": True, "email": "a@x.io"}),  # re-sent with the new identifier
    ]
    assert braze[0]["messageId"] != braze[1]["messageId"]
