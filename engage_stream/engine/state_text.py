"""A definition's stored state text, in either of its two spellings, as the data it holds.

The Python engine writes JSON. The native core writes a computed trait's window in a
compact text (`native/src/compact.rs` has the layout and why): times as zigzag deltas in
base64-VLQ digits, repeated string values as indices into a table, the rest JSON. A
deployment can switch engines on running state, so the reference reads both; `decode`
gives the same list the JSON spelling of that window holds (a grained window's with its
counts, `aggregates.CompiledTrait._evaluate_grained`).
"""

from __future__ import annotations

from typing import Any

import orjson

MARK = "~"
_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {c: i for i, c in enumerate(_DIGITS)}
_HALF, _SPAN = 2**63, 2**64


class CompactStateError(ValueError):
    """A compact text that is not one the core writes (cut short, a foreign character, a
    slot out of range): the state is damaged, not a value to guess at."""


def decode(text: str) -> Any:
    """The state a stored text holds (JSON or the compact text)."""
    if text[:1] != MARK:
        return orjson.loads(text)
    return _Reader(text).window()


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = len(MARK)

    def number(self) -> int:
        v = shift = 0
        text, value = self.text, _VALUE
        while True:
            if self.pos >= len(text):
                raise CompactStateError("compact state cut short")
            d = value.get(text[self.pos])
            if d is None:
                raise CompactStateError(f"compact state: {text[self.pos]!r} at {self.pos}")
            self.pos += 1
            v |= (d & 31) << shift
            if not d & 32:
                return v
            shift += 5

    def signed(self) -> int:
        z = self.number()
        return (z >> 1) ^ -(z & 1)

    def window(self) -> list[Any]:
        n = self.number()
        times, t = [], 0
        for _ in range(n):
            t = (t + self.signed() + _HALF) % _SPAN - _HALF  # (the core's i64 arithmetic)
            times.append(t)
        k = self.number()
        slot = self.number()
        if slot > 5:
            raise CompactStateError(f"compact state: first slot {slot}")
        first = self.signed() if slot % 3 == 2 else None
        counts = [self.number() + 1 for _ in range(n)] if slot >= 3 else None
        mode = self.number()
        at = [self.number() for _ in range(n)] if mode == 1 else []
        listed, total = orjson.loads(self.text[self.pos :])
        if mode == 0 and listed is None:
            values = None
        elif mode == 1 and type(listed) is list and all(i < len(listed) for i in at):
            values = [listed[i] for i in at]
        elif mode == 2 and type(listed) is list and len(listed) == n:
            values = listed
        else:
            raise CompactStateError("compact state: the values do not match their mode")
        grained = [counts] if counts is not None else []
        return [times, values, total, k, *grained] + ([first] if slot % 3 else [])
