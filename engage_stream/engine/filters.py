"""Property filters (`where`) split into what can be decided when an event arrives and
what must wait until evaluation.

Why the split: a filter against a constant decides once, at ingest, whether an event is
kept at all, so state only ever holds qualifying events. A filter against a trait
(`value_from.trait`) or, in a funnel child, against the parent occurrence's property
(`value_from.parent_property`) changes its answer when the trait changes or depends on
which parent it is paired with; for those the event keeps just the property values the
filter needs (`vals`), and the comparison runs at evaluation time.

A duration operator (`within_last` ...) is relative to the evaluation time (reference
§1.5), so on an event property it decides neither once nor per trait: it is compiled
apart (`compile_timed_filters`) into the instants of the clock at which the event
qualifies, which the windows intersect with their own (windows.Window.spans).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engage_stream.definitions.models import DURATION_OPS, Op, PropertyFilter
from engage_stream.engine.operators import (
    DynamicPred,
    Path,
    compile_dynamic,
    compile_static,
    duration_spans,
    get_path,
    split_path,
)
from engage_stream.engine.windows import ALWAYS, Spans, intersect
from engage_stream.profiles.record import ProfileRecord

StaticMatch = Callable[[dict[str, Any]], bool]  # (properties) -> bool
TimedMatch = Callable[[dict[str, Any]], Spans]  # (properties) -> instants it holds at


def always(props: dict[str, Any]) -> bool:
    """The static match of no filters (callers may skip calling it)."""
    return True


def compile_static_filters(filters: Sequence[PropertyFilter]) -> StaticMatch:
    checks = [
        (split_path(f.property), compile_static(f.operator, f.value))
        for f in filters
        if f.value_from is None and f.operator not in DURATION_OPS
    ]
    if not checks:
        return always
    if len(checks) == 1 and len(checks[0][0]) == 1:
        key, pred = checks[0][0][0], checks[0][1]
        return lambda props: pred(props.get(key), 0)

    def match(props: dict[str, Any]) -> bool:
        for path, pred in checks:  # noqa: SIM110 (hot path: no generator)
            if not pred(get_path(props, path), 0):
                return False
        return True

    return match


def compile_timed_filters(filters: Sequence[PropertyFilter]) -> TimedMatch | None:
    """The relative-date filters, as the clock instants at which all of them hold (None
    when there are none)."""
    checks = [
        (split_path(f.property), f.operator, f.value)
        for f in filters
        if f.value_from is None and f.operator in DURATION_OPS
    ]
    if not checks:
        return None

    def spans(props: dict[str, Any]) -> Spans:
        out = ALWAYS
        for path, op, value in checks:
            out = intersect(out, duration_spans(op, value, get_path(props, path)))
            if not out:
                break
        return out

    return spans


def equality_filter(filters: Sequence[PropertyFilter]) -> tuple[str, str] | None:
    """A constant `equals` filter on a top-level property against a string, if there is
    one: an event passes the static filters only if that property is exactly that string
    (or a value the coercions may equal to it: a number, boolean or list — see
    index.EventListeners)."""
    for f in filters:
        if (
            f.value_from is None
            and f.operator is Op.equals
            and type(f.value) is str
            and len(split_path(f.property)) == 1
        ):
            return split_path(f.property)[0], f.value
    return None


def trait_value(profile: ProfileRecord, path: Path) -> Any:
    """A trait as conditions see it (audience, computed, then custom), nested by path."""
    v = profile.trait(path[0])
    return get_path(v, path[1:]) if len(path) > 1 and v is not None else v


@dataclass(frozen=True, slots=True)
class DynamicCheck:
    """`vals[val]` compared with a trait (`trait`) or the parent's `pvals[parent]`."""

    val: int
    pred: DynamicPred
    trait: Path | None
    parent: int | None


@dataclass(frozen=True, slots=True)
class DynamicFilters:
    extract: tuple[Path, ...]  # event properties kept with each stored event
    checks: tuple[DynamicCheck, ...]

    def values(self, props: dict[str, Any]) -> list[Any]:
        return [get_path(props, p) for p in self.extract]

    def trait_keys(self) -> set[str]:
        return {c.trait[0] for c in self.checks if c.trait is not None}

    def ok(self, vals: list[Any], profile: ProfileRecord, pvals: list[Any] | None = None) -> bool:
        for c in self.checks:
            if c.trait is not None:
                ref = trait_value(profile, c.trait)
            elif pvals is not None and c.parent is not None:
                ref = pvals[c.parent]
            else:
                raise ValueError("a parent-property filter is decided with a parent's values")
            if not c.pred(vals[c.val], ref):
                return False
        return True


def compile_dynamic_filters(
    filters: Sequence[PropertyFilter],
    parent_extract: list[Path] | None = None,
    parent_offset: int = 0,
) -> DynamicFilters | None:
    """The dynamic filters; parent-property references append to `parent_extract` (the
    values the parent occurrence keeps after its own, `parent_offset` of them)."""
    extract: list[Path] = []
    checks: list[DynamicCheck] = []
    for f in filters:
        ref = f.value_from
        if ref is None:
            continue
        path = split_path(f.property)
        if path not in extract:
            extract.append(path)
        pred = compile_dynamic(f.operator)
        if ref.trait is not None:
            checks.append(DynamicCheck(extract.index(path), pred, split_path(ref.trait), None))
        else:
            if ref.parent_property is None or parent_extract is None:
                raise ValueError("parent_property references are only allowed in funnel steps")
            ppath = split_path(ref.parent_property)
            if ppath not in parent_extract:
                parent_extract.append(ppath)
            parent = parent_offset + parent_extract.index(ppath)
            checks.append(DynamicCheck(extract.index(path), pred, None, parent))
    if not checks:
        return None
    return DynamicFilters(tuple(extract), tuple(checks))
