"""Property and trait comparison semantics (reference §1.4–1.5), compiled to closures.

Why closures: filters run for every event on the hot path, so each `Op` + constant is
turned once, at engine construction, into a plain function; no pydantic object is touched
while evaluating.

Semantics chosen (and tested in tests/engine/test_operators.py):
- A missing value and JSON `null` are the same thing: only `not_exists`, `does_not_contain`
  (= NOT contains, so a missing value "does not contain") are true for it.
- `not_equals` / `none_of` are true only when the value exists and differs (`differs`).
- Arrays: a positive operator holds when any element matches (Segment's `$` on arrays);
  its negation (`not_equals`, `none_of`, `does_not_contain`) is the negation of that.
- Equality: same type → `==`; numbers compare numerically (`1 == 1.0`, `"5" == 5`);
  booleans equal their text (`true == "true"`, case-insensitive); strings are case-sensitive.
- Order operators compare numbers (numeric strings included); failing that, ISO-8601 dates.
- String operators are case-sensitive substring/prefix/suffix tests on the value's text
  (numbers and booleans have a text form; objects do not). An array holding objects is
  flattened to its JSON text (reference §1.1), so only string operators match it.
- Date operators need ISO-8601 with a zone (or a plain `yyyy-mm-dd`); duration operators
  are inclusive and relative to the evaluation time `now` (`duration_spans`: the instants
  at which they hold, for event filters).
- A dynamic reference (`value_from`) that is missing makes the comparison false.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from engage_stream.definitions.models import DURATION_OPS, Duration, Op, parse_date_ms
from engage_stream.engine.windows import INF, Spans, union

Path = tuple[str, ...]
StaticPred = Callable[[Any, int], bool]  # (value, now) -> bool
DynamicPred = Callable[[Any, Any], bool]  # (value, reference value) -> bool


# -- paths -------------------------------------------------------------------------------
def split_path(path: str) -> Path:
    """`a.b` → (a, b); `a\\.b` → (a.b,): `.` nests, a backslash-escaped dot is literal."""
    parts: list[str] = []
    buf: list[str] = []
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == "\\" and i + 1 < n and path[i + 1] == ".":
            buf.append(".")
            i += 2
            continue
        if c == ".":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    parts.append("".join(buf))
    return tuple(parts)


def get_path(obj: Any, path: Path) -> Any:
    """The value at `path` inside nested objects, or None (objects inside arrays are not
    addressable, as in Segment)."""
    for seg in path:
        if type(obj) is not dict:
            return None
        obj = obj.get(seg)
        if obj is None:
            return None
    return obj


# -- value coercions ---------------------------------------------------------------------
# Plain decimal notation, ASCII digits only: what a numeric string must spell. Python's own
# number syntax would also read "1_000", " 5 ", "1e3", "inf" and other scripts' digits.
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# orjson (profile state, output records) holds integers in this range; beyond it a numeric
# string is read as the float it spells
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def as_number(x: Any) -> int | float | None:
    """Finite numbers, and strings in plain decimal notation (`-12`, `3.50`: an int if they
    spell an integer); never booleans. Shared by the order operators and the numeric
    aggregates."""
    t = type(x)
    if t is int:
        return x  # type: ignore[no-any-return]
    if t is float:
        return x if math.isfinite(x) else None  # type: ignore[no-any-return]
    if t is str:
        if _DECIMAL.fullmatch(x) is None:
            return None
        if "." not in x and len(x) <= 21:
            n = int(x)
            if _INT_MIN <= n <= _INT_MAX:
                return n
        f = float(x)
        return f if math.isfinite(f) else None
    return None


def as_text(x: Any) -> str | None:
    """The text string operators test; an array holding objects is its JSON text."""
    t = type(x)
    if t is str:
        return x  # type: ignore[no-any-return]
    if t is bool:
        return "true" if x else "false"
    if t is int or t is float:
        return str(x)
    if t is list and _has_object(x):
        return orjson.dumps(x).decode()
    return None


def _has_object(x: list[Any]) -> bool:
    for e in x:  # noqa: SIM110 (hot path: no generator)
        if type(e) is dict:
            return True
    return False


@lru_cache(maxsize=4096)
def _date_str(s: str) -> int | None:
    return parse_date_ms(s)


def as_date_ms(x: Any) -> int | None:
    return _date_str(x) if type(x) is str else None


def equal(x: Any, v: Any) -> bool:
    """Scalar equality with the coercions documented above (no array handling)."""
    if x is None or v is None:
        return False
    tx, tv = type(x), type(v)
    if tx is tv:
        return bool(x == v)
    if tx is bool or tv is bool:
        xs, vs = as_text(x), as_text(v)
        return xs is not None and vs is not None and xs.lower() == vs.lower()
    xn, vn = as_number(x), as_number(v)
    return xn is not None and vn is not None and xn == vn


def _any(x: Any, pred: Callable[[Any], bool]) -> bool:
    if type(x) is list:
        return any(pred(e) for e in x)
    return pred(x)


def _order(x: Any, v: Any, cmp: Callable[[Any, Any], bool]) -> bool:
    vn = as_number(v)
    if vn is not None:
        xn = as_number(x)
        return xn is not None and cmp(xn, vn)
    vd = as_date_ms(v)
    if vd is not None:
        xd = as_date_ms(x)
        return xd is not None and cmp(xd, vd)
    return False


def _lt(a: Any, b: Any) -> bool:
    return bool(a < b)


def _gt(a: Any, b: Any) -> bool:
    return bool(a > b)


def _le(a: Any, b: Any) -> bool:
    return bool(a <= b)


def _ge(a: Any, b: Any) -> bool:
    return bool(a >= b)


_ORDER = {Op.less_than: _lt, Op.greater_than: _gt, Op.at_most: _le, Op.at_least: _ge}


def _text_test(x: Any, test: Callable[[str], bool]) -> bool:
    if type(x) is list and _has_object(x):  # flattened: one string (as_text)
        return test(as_text(x))  # type: ignore[arg-type]

    def one(e: Any) -> bool:
        s = as_text(e)
        return s is not None and test(s)

    return _any(x, one)


# -- binary semantics: (value, operand) -> bool ------------------------------------------
def _binary(op: Op) -> Callable[[Any, Any], bool]:
    """The operator as a function of the value and its operand (constant or reference)."""
    if op is Op.equals:
        return lambda x, v: _any(x, lambda e: equal(e, v))
    if op is Op.not_equals:
        return lambda x, v: x is not None and not _any(x, lambda e: equal(e, v))
    if op in _ORDER:
        cmp = _ORDER[op]
        return lambda x, v: _any(x, lambda e: _order(e, v, cmp))
    if op is Op.equals_any_of:
        return lambda x, vs: _any(x, lambda e: any(equal(e, v) for v in vs))
    if op is Op.none_of:
        return lambda x, vs: x is not None and not _any(x, lambda e: any(equal(e, v) for v in vs))
    if op is Op.contains:
        return lambda x, v: (s := as_text(v)) is not None and _text_test(x, lambda t: s in t)
    if op is Op.does_not_contain:
        return lambda x, v: (s := as_text(v)) is not None and not _text_test(x, lambda t: s in t)
    if op is Op.contains_any_of:

        def contains_any(x: Any, vs: Any) -> bool:
            subs = [s for s in (as_text(v) for v in vs) if s is not None]
            return _text_test(x, lambda t: any(s in t for s in subs))

        return contains_any
    if op is Op.starts_with:
        return lambda x, v: (
            (s := as_text(v)) is not None and _text_test(x, lambda t: t.startswith(s))
        )
    if op is Op.ends_with:
        return lambda x, v: (s := as_text(v)) is not None and _text_test(x, lambda t: t.endswith(s))
    if op is Op.before_date:
        return lambda x, v: (
            (vd := as_date_ms(v)) is not None
            and _any(x, lambda e: (d := as_date_ms(e)) is not None and d < vd)
        )
    if op is Op.after_date:
        return lambda x, v: (
            (vd := as_date_ms(v)) is not None
            and _any(x, lambda e: (d := as_date_ms(e)) is not None and d > vd)
        )
    raise ValueError(f"operator {op.value} has no binary form")


def _duration_span(op: Op, d: int, span: int) -> tuple[int, int]:
    """The instants `now` in [lo, hi) at which the operator holds for a date `d`: the one
    definition behind `_duration_holds`, `_duration_edges` and `duration_spans`."""
    if op is Op.within_last:  # now - span <= d <= now
        return d, d + span + 1
    if op is Op.within_next:  # now <= d <= now + span
        return d - span, d + 1
    if op is Op.before_last:  # d <= now - span
        return d + span, INF
    return -INF, d - span + 1  # after_next: d >= now + span


def _duration_holds(op: Op, d: int, span: int, now: int) -> bool:
    lo, hi = _duration_span(op, d, span)
    return lo <= now < hi


def _duration_edges(op: Op, d: int, span: int) -> tuple[int, ...]:
    """The instants at which `_duration_holds` flips for a date `d` (first instant of the
    new state)."""
    return tuple(e for e in _duration_span(op, d, span) if -INF < e < INF)


def duration_spans(op: Op, value: Duration, x: Any) -> Spans:
    """The instants `now` at which `op` holds for the value `x` (any element of an array)."""
    span = value.ms
    out: list[tuple[int, int]] = []
    for e in x if type(x) is list else (x,):
        d = as_date_ms(e)
        if d is not None:
            out.append(_duration_span(op, d, span))
    return union(out)


def compile_static(op: Op, value: Any) -> StaticPred:
    """`op` against a constant, as `pred(value, now)`."""
    if op is Op.exists:
        return lambda x, now: x is not None
    if op is Op.not_exists:
        return lambda x, now: x is None
    if op in DURATION_OPS:
        if not isinstance(value, Duration):
            raise ValueError(f"operator {op.value} needs a duration value, e.g. '7 days'")
        span = value.ms

        def duration(x: Any, now: int) -> bool:
            return _any(
                x, lambda e: (d := as_date_ms(e)) is not None and _duration_holds(op, d, span, now)
            )

        return duration
    if op in (Op.equals_any_of, Op.none_of, Op.contains_any_of):
        value = tuple(value) if isinstance(value, list) else (value,)
    fn = _binary(op)
    # Fast paths (hot: every event filter and trait condition), same answers as `fn`:
    # a value of the constant's own scalar type compares with `==` (see `equal`), and a
    # number against a numeric constant with the operator itself (see `_order`).
    tv = type(value)
    if op in (Op.equals, Op.not_equals) and tv in (str, int, float, bool):
        if op is Op.equals:
            return lambda x, now: x == value if type(x) is tv else fn(x, value)
        return lambda x, now: x != value if type(x) is tv else fn(x, value)
    if op in _ORDER:
        vn = as_number(value)
        if vn is not None:
            cmp = _ORDER[op]

            def order(x: Any, now: int) -> bool:
                t = type(x)
                if t is int or t is float:
                    return cmp(x, vn)
                return fn(x, value)

            return order
    return lambda x, now: fn(x, value)


def compile_dynamic(op: Op) -> DynamicPred:
    """`op` against a value only known at evaluation time (a trait or the parent event's
    property); a missing reference makes it false."""
    fn = _binary(op)
    if op in (Op.equals_any_of, Op.none_of, Op.contains_any_of):
        return lambda x, ref: ref is not None and fn(x, ref if type(ref) is list else (ref,))
    return lambda x, ref: ref is not None and fn(x, ref)


def duration_next_edge(op: Op, value: Any, x: Any, now: int) -> int | None:
    """The earliest instant > now at which a duration operator on value `x` can flip."""
    if op not in DURATION_OPS or x is None:
        return None
    span = value.ms
    best: int | None = None
    for e in x if type(x) is list else (x,):
        d = as_date_ms(e)
        if d is None:
            continue
        for edge in _duration_edges(op, d, span):
            if edge > now and (best is None or edge < best):
                best = edge
    return best
