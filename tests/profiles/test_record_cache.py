"""Decoded profiles kept between events (`profiles.store.RecordCache`): a hit is exactly
what decoding the stored bytes gives, and anything that changed those bytes — or a profile
read and changed but never stored — is decoded again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engage_stream.profiles import store as store_module
from engage_stream.profiles.record import ProfileRecord, TraitValue
from engage_stream.profiles.store import ProfileStore, RecordCache
from engage_stream.state.partition_store import PartitionStore
from engage_stream.state.transaction import Transaction


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The profile ids `ProfileRecord.loads` decoded."""
    seen: list[str] = []
    loads = ProfileRecord.loads.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, data: bytes) -> ProfileRecord:
        record = loads(cls, data)
        seen.append(record.profile_id)
        return record

    monkeypatch.setattr(store_module.ProfileRecord, "loads", classmethod(counting))
    return seen


@pytest.fixture
def ps(tmp_path: Path) -> Any:
    p = PartitionStore(tmp_path / "p0")
    yield p
    p.close()


def _commit(tx: Transaction, offset: int) -> None:
    tx.prepare()
    tx.commit(offset)


def _store(ps: PartitionStore, cache: RecordCache) -> tuple[Transaction, ProfileStore]:
    tx = Transaction(ps)
    return tx, ProfileStore(tx, cache=cache)


def _put_new(store: ProfileStore, pid: str, plan: str) -> None:
    assert store.get(pid) is None
    record = ProfileRecord(profile_id=pid)
    record.traits["plan"] = TraitValue(plan, 1, "m1")
    store.put(record, None)


def test_a_profile_stored_in_one_batch_is_not_decoded_in_the_next(
    ps: PartitionStore, decodes: list[str]
) -> None:
    cache = RecordCache(2**20, verify=False)
    tx, store = _store(ps, cache)
    _put_new(store, "u1", "free")
    _commit(tx, 0)
    tx, store = _store(ps, cache)
    record = store.get("u1")
    assert record is not None and record.traits["plan"].value == "free"
    assert decodes == [] and (cache.hits, cache.misses) == (1, 0)
    record.traits["plan"] = TraitValue("pro", 2, "m2")
    store.put(record, None)
    _commit(tx, 1)
    again = ProfileStore(Transaction(ps), cache=cache).get("u1")
    assert again is record and again.traits["plan"].value == "pro"
    assert again == ProfileStore(Transaction(ps)).get("u1"), "the same as a decode"


def test_a_profile_read_and_changed_but_not_stored_is_decoded_again(
    ps: PartitionStore, decodes: list[str]
) -> None:
    cache = RecordCache(2**20)
    tx, store = _store(ps, cache)
    _put_new(store, "u1", "free")
    _commit(tx, 0)
    tx, store = _store(ps, cache)
    half = store.get("u1")
    assert half is not None
    half.traits["plan"] = TraitValue("broken", 9, "m9")  # an evaluation failed after this
    record = store.get("u1")
    assert record is not None and record is not half and record.traits["plan"].value == "free"
    assert decodes == ["u1"]


def test_bytes_rolled_back_underneath_are_decoded_again(
    ps: PartitionStore, decodes: list[str]
) -> None:
    """Without `forget_cached`: the bytes read are not the ones the cached copy was stored
    as, which alone makes it a miss (a failed batch, a recovery, another writer alike)."""
    cache = RecordCache(2**20)
    tx, store = _store(ps, cache)
    _put_new(store, "u1", "free")
    tx.savepoint()
    record = store.get("u1")
    assert record is not None
    record.traits["plan"] = TraitValue("pro", 2, "m2")
    store.put(record, None)
    tx.rollback()
    back = store.get("u1")
    assert back is not None and back.traits["plan"].value == "free"
    assert decodes == ["u1"] and cache.misses == 1
    _commit(tx, 0)
    tx, store = _store(ps, cache)  # a failed batch: its stored copy is not what is committed
    record = store.get("u1")
    assert record is not None
    record.traits["plan"] = TraitValue("team", 3, "m3")
    store.put(record, None)
    tx.fail()
    committed = ProfileStore(Transaction(ps), cache=cache).get("u1")
    assert committed is not None and committed.traits["plan"].value == "free"


def test_the_cache_keeps_the_most_recently_stored_within_its_bytes(ps: PartitionStore) -> None:
    probe = RecordCache(2**20)
    tx, store = _store(ps, probe)
    _put_new(store, "u0", "free")
    size = probe.size_bytes
    cache = RecordCache(3 * size)
    tx, store = _store(ps, cache)
    for i in range(6):
        _put_new(store, f"u{i + 1}", "free")
        assert cache.size_bytes <= 3 * size
    assert len(cache) == 3
    for i in (4, 5, 6):
        assert store.get(f"u{i}") is not None
    assert (cache.hits, cache.misses) == (3, 0)
    assert store.get("u1") is not None and cache.misses == 1
    assert len(cache) == 0 and cache.size_bytes == 0, "what is read is handed over"


def test_a_removed_profile_leaves_the_cache(ps: PartitionStore) -> None:
    cache = RecordCache(2**20)
    tx, store = _store(ps, cache)
    _put_new(store, "u1", "free")
    record = store.get("u1")
    assert record is not None
    store.put(record, None)
    store.remove(record)
    assert len(cache) == 0 and cache.size_bytes == 0 and store.get("u1") is None


def test_verify_catches_a_copy_changed_after_it_was_stored(ps: PartitionStore) -> None:
    cache = RecordCache(2**20, verify=True)
    tx, store = _store(ps, cache)
    _put_new(store, "u1", "free")
    record = store.get("u1")
    assert record is not None
    store.put(record, None)
    record.traits["plan"] = TraitValue("pro", 2, "m2")  # what no caller may do
    with pytest.raises(AssertionError, match="u1 differs from its bytes"):
        store.get("u1")
