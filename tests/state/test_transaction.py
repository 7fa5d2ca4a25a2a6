"""The partition store's atomic batches and the transaction's merged reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from engage_stream.state.memory import MemoryKV, MemoryStore
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.transaction import Transaction


@pytest.fixture
def store(tmp_path: Path) -> PartitionStore:
    s = PartitionStore(tmp_path / "p0")
    yield s
    s.close()


def test_meta_offsets_start_unset_and_persist(tmp_path: Path) -> None:
    s = PartitionStore(tmp_path / "p")
    assert (s.changelog_offset, s.source_offset) == (-1, -1)
    s.write({b"a": b"1"}, changelog_offset=7, source_offset=41)
    s.close()
    s = PartitionStore(tmp_path / "p")
    assert (s.changelog_offset, s.source_offset, s.get(b"a")) == (7, 41, b"1")
    s.close()


def test_nothing_reaches_rocksdb_before_the_batch(store: PartitionStore) -> None:
    tx = Transaction(store)
    tx.put(b"k", b"v")
    assert tx.get(b"k") == b"v"
    assert store.get(b"k") is None
    store.write(tx.writes, changelog_offset=0, source_offset=0)
    assert store.get(b"k") == b"v"


def test_writes_to_one_key_coalesce(store: PartitionStore) -> None:
    tx = Transaction(store)
    for i in range(10):
        tx.put(b"k", str(i).encode())
    tx.delete(b"gone")
    assert tx.writes == {b"k": b"9", b"gone": None}


@pytest.mark.parametrize("reverse", [False, True])
def test_range_merges_buffer_over_stored(store: PartitionStore, reverse: bool) -> None:
    store.write(
        {b"a1": b"s", b"a2": b"s", b"a4": b"s", b"b1": b"s"},
        changelog_offset=None,
        source_offset=None,
    )
    tx = Transaction(store)
    tx.put(b"a3", b"t")
    tx.put(b"a2", b"t")  # overrides stored
    tx.delete(b"a4")  # hides stored
    got = list(tx.range(b"a", b"b", reverse=reverse))
    want = [(b"a1", b"s"), (b"a2", b"t"), (b"a3", b"t")]
    assert got == (want[::-1] if reverse else want)


@pytest.mark.parametrize("reverse", [False, True])
def test_memory_kv_has_the_same_range_semantics(reverse: bool) -> None:
    kv = MemoryKV()
    for k in (b"a1", b"a2", b"a3", b"b1"):
        kv.put(k, b"v")
    kv.delete(b"a2")
    keys = [k for k, _ in kv.range(b"a", b"b", reverse=reverse)]
    assert keys == ([b"a3", b"a1"] if reverse else [b"a1", b"a3"])


def test_range_stays_right_as_writes_arrive_after_the_first_range(store: PartitionStore) -> None:
    """The sorted view is built on the first range read, then kept up to date."""
    store.write({b"a1": b"s", b"a5": b"s"}, changelog_offset=None, source_offset=None)
    tx = Transaction(store)
    tx.put(b"a3", b"t")
    assert [k for k, _ in tx.range(b"a", b"b")] == [b"a1", b"a3", b"a5"]
    tx.put(b"a2", b"t")
    tx.put(b"a3", b"u")  # existing key: value changes, position does not
    tx.delete(b"a5")
    tx.delete(b"a9")  # deleting a key nobody stored hides nothing
    tx.put(b"a0", b"t")
    assert list(tx.range(b"a", b"b")) == [
        (b"a0", b"t"),
        (b"a1", b"s"),
        (b"a2", b"t"),
        (b"a3", b"u"),
    ]
    assert [k for k, _ in tx.range(b"a", b"b", reverse=True)] == [b"a3", b"a2", b"a1", b"a0"]
    assert list(tx.range(b"a2", b"a3")) == [(b"a2", b"t")], "end is exclusive"
    assert tx.get(b"a5") is None and tx.get(b"a1") == b"s" and tx.get(b"zz") is None


@pytest.mark.parametrize("reverse", [False, True])
def test_range_matches_a_plain_model_under_random_edits(
    store: PartitionStore, reverse: bool
) -> None:
    import random

    rng = random.Random(11 + reverse)
    model: dict[bytes, bytes] = {}
    stored = {}
    for _ in range(200):
        k = b"k%03d" % rng.randrange(300)
        stored[k] = model[k] = b"s"
    store.write(stored, changelog_offset=None, source_offset=None)
    tx = Transaction(store)
    for step in range(600):
        k = b"k%03d" % rng.randrange(300)
        if rng.random() < 0.3:
            tx.delete(k)
            model.pop(k, None)
        else:
            tx.put(k, b"t%d" % step)
            model[k] = b"t%d" % step
        if step % 37 == 0:
            lo, hi = sorted(b"k%03d" % rng.randrange(310) for _ in range(2))
            want = sorted(((x, v) for x, v in model.items() if lo <= x < hi), reverse=reverse)
            assert list(tx.range(lo, hi, reverse=reverse)) == want


def test_partition_store_range_bounds(store: PartitionStore) -> None:
    store.write(
        {b"a": b"1", b"ab": b"2", b"b": b"3", b"b\x00": b"4", b"c": b"5"},
        changelog_offset=None,
        source_offset=None,
    )
    assert [k for k, _ in store.range(b"ab", b"b\x00")] == [b"ab", b"b"]
    assert [k for k, _ in store.range_reverse(b"ab", b"b\x00")] == [b"b", b"ab"]
    assert list(store.range(b"x", b"z")) == [] and list(store.range_reverse(b"x", b"z")) == []
    assert [k for k, _ in store.range_reverse(b"a", b"\xff")] == [b"c", b"b\x00", b"b", b"ab", b"a"]


def test_any_under_sees_stored_and_written_keys_but_not_deleted_ones() -> None:
    store = MemoryStore()
    store.write({b"r:a": b"x", b"s:z": b"1"}, changelog_offset=None, source_offset=None)
    tx = Transaction(store)
    assert tx.any_under(b"r:") and not tx.any_under(b"q:")
    tx.delete(b"r:a")
    assert not tx.any_under(b"r:"), "deleted in the transaction"
    tx.put(b"q:b", b"y")
    assert tx.any_under(b"q:")
    tx.delete(b"q:b")
    assert not tx.any_under(b"q:")
    assert tx._sorted is None, "a probe does not sort the writes (as `range` would)"
