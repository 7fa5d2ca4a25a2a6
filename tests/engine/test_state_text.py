"""The two spellings of a definition's state: the Python engine's JSON, the core's compact
text for computed-trait windows (native/src/compact.rs), and `state_text.decode` of both."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engage_stream.engine import Engine
from engage_stream.engine.state_text import _DIGITS, MARK, CompactStateError, decode
from engage_stream.profiles.record import ProfileRecord
from tests.engine.harness import event, trait

DAY = 86_400_000
NOW = 1_790_000_000_000  # (event times as they are: 13 digits)
TYPES = [
    ("counter", {}),
    ("sum", {"property": "v"}),
    ("avg", {"property": "v"}),
    ("min", {"property": "v"}),
    ("max", {"property": "v"}),
    ("first", {"property": "sku"}),
    ("last", {"property": "v"}),
    ("most_frequent", {"property": "sku", "min_frequency": 1}),
    ("unique_list", {"property": "sku"}),
    ("unique_count", {"property": "sku"}),
]


def _vlq(out: list[str], v: int) -> None:
    """The core's digits, written here to craft texts the core would not (extremes)."""
    while True:
        low, v = v & 31, v >> 5
        if not v:
            out.append(_DIGITS[low])
            return
        out.append(_DIGITS[low | 32])


def _signed(out: list[str], v: int) -> None:
    _vlq(out, (v << 1) ^ (v >> 63))  # zigzag (v is within 64 bits)


def _orders(n: int) -> list[Any]:
    skus = ["shoe", "hat", "sock"]
    return [
        event("Order", NOW + i * 3_600_000, f"m{i}", {"v": i % 7 + 0.5, "sku": skus[i % 3]})
        for i in range(n)
    ]


def test_json_states_decode_as_json() -> None:
    assert decode("[[1,2],null,2,2]") == [[1, 2], None, 2, 2]
    assert decode("17") == 17


@pytest.mark.parametrize(("type_", "extra"), TYPES)
def test_the_core_writes_windows_compactly_and_they_decode_to_the_python_state(
    type_: str, extra: dict[str, Any]
) -> None:
    """Per trait type: the core's text is the compact one, decodes to exactly the state the
    Python engine keeps, and is a third shorter or more where the window keeps many entries."""
    native = pytest.importorskip("engage_stream.engine.native")
    if native.core is None:
        pytest.skip("native core not built (make setup)")
    defs = [trait("t", type_, "Order", within="30 days", include_anonymous=True, **extra)]
    engines = {"python": Engine(defs), "native": native.NativeEngine(defs)}
    texts = {}
    for name, engine in engines.items():
        rec = ProfileRecord(profile_id="user_id:u1")
        for ev in _orders(200):
            engine.on_event(rec, ev, ev.timestamp)
            rec = ProfileRecord.loads(rec.dumps())
        texts[name] = rec.engine["t"]
    assert texts["native"].startswith(MARK)
    assert decode(texts["native"]) == orjson.loads(texts["python"])
    entries = len(orjson.loads(texts["python"])[0])
    assert len(texts["native"]) * (1.5 if entries >= 50 else 1) < len(texts["python"]), texts


def test_extreme_times_and_every_slot_layout_decode() -> None:
    times = [-(2**63), -5, 0, 7, 2**63 - 1]
    counts = [1, 2, 1, 40, 1]  # (a grained window's: the slot flag + 3)
    for slot, tail in [(0, []), (1, [None]), (2, [-3])] + [
        (s + 3, [counts, *tail]) for s, tail in ((0, []), (1, [None]), (2, [-3]))
    ]:
        out = [MARK]
        _vlq(out, len(times))
        prev = 0
        for t in times:
            delta = (t - prev + 2**63) % 2**64 - 2**63  # (the core's i64 arithmetic)
            _signed(out, delta)
            prev = t
        _vlq(out, 2)  # k
        _vlq(out, slot)
        if slot % 3 == 2:
            _signed(out, -3)
        for m in counts if slot >= 3 else []:
            _vlq(out, m - 1)
        _vlq(out, 1)  # a table of values and one index per entry
        for i in (0, 1, 0, 0, 1):
            _vlq(out, i)
        text = "".join(out) + '[["a","b"],{"a":3,"b":2}]'
        assert decode(text) == [times, ["a", "b", "a", "a", "b"], {"a": 3, "b": 2}, 2, *tail]


def test_a_damaged_compact_text_is_a_clear_error() -> None:
    with pytest.raises(CompactStateError, match="cut short"):
        decode(MARK + "D")  # three entries announced, none there
    with pytest.raises(CompactStateError, match="'!'"):
        decode(MARK + "!")
    with pytest.raises(CompactStateError, match="first slot 6"):
        decode(MARK + "BAAG")
    with pytest.raises(CompactStateError, match="do not match"):
        decode(MARK + "BAAABB" + '[["a"],null]')  # entry 0: index 1, past the table


def test_the_core_refuses_a_damaged_compact_text_naming_the_definition() -> None:
    native = pytest.importorskip("engage_stream.engine.native")
    if native.core is None:
        pytest.skip("native core not built (make setup)")
    engine = native.NativeEngine([trait("t", "counter", "Order", within="7 days")])
    rec = ProfileRecord(profile_id="user_id:u1")
    first, second = _orders(2)
    engine.on_event(rec, first, first.timestamp)
    rec.engine["t"] = rec.engine["t"][:3]
    with pytest.raises(ValueError, match="state of position 0: compact state"):
        engine.on_event(rec, second, second.timestamp)
