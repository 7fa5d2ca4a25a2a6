"""What a chaos run is judged by: its change records (`engage.changes`) against a
baseline's — an uninterrupted run over the same input, or `replay` of the run's own input.

The outcome is each profile's final memberships and trait values (the last change per
profile and key; an audience's `false` and a trait's `null` are no value):
- **lost**: an input event that never reached the profiles stage, or a final value the
  baseline has and the run has none for;
- **divergent**: a final value that differs, or that only the run has;
- **duplicates**: one messageId with two different bodies within the run — a destination
  could not tell which is true;
- **resends**: byte-identical repeats (at-least-once delivery after a crash; a destination
  drops them by messageId) — counted, not failures;
- **records differing**: change records (messageIds, or their bodies) that one side has and
  the other has not — how a profile got to its final values, record by record;
- of those, **same-instant reversals**: pairs of one side's records that take a profile's
  value from x to y and back at one instant (same definition version, same `at`), which the
  other side netted. The profiles stage nets such pairs within a batch (README, boundary-
  instant rule), and a crashed worker's batches end elsewhere than a replay's; such a pair
  changes no outcome and is no failure, but is counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

_ABSENT = object()
_OUT = 0  # an audience's `false` and `null` alike: not a member


def _digest(body: bytes) -> int:
    """Bodies are kept as 64-bit digests: a long run has millions of change records."""
    return int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "big")


@dataclass
class Outputs:
    """One run's change records, fed in partition and offset order."""

    bodies: dict[str, int] = field(default_factory=dict)  # messageId -> its first body
    conflicts: dict[str, set[int]] = field(default_factory=dict)  # ... when it had others
    records: int = 0
    resends: int = 0
    final: dict[tuple[str, str], Any] = field(default_factory=dict)
    # messageId -> (instant, from, to) digests, of its first body: what netting looks at
    moves: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Iterable[bytes]) -> Outputs:
        out = cls()
        for v in values:
            out.add(v)
        return out

    def add(self, value: bytes) -> None:
        change = orjson.loads(value)
        mid, body = change["message_id"], _digest(value)
        self.records += 1
        first = self.bodies.get(mid)
        if first is None:
            self.bodies[mid] = body
            self.moves[mid] = _move(change)
        elif body == first or body in self.conflicts.get(mid, ()):
            self.resends += 1
        else:
            self.conflicts.setdefault(mid, {first}).add(body)
        key, value = (change["profile_id"], change["key"]), change["value"]
        if value is None or (value is False and change["kind"] == "audience"):
            # no membership, no value: the outcome of a profile that never had a change for
            # the key (entered and exited is, as an outcome, never entered)
            self.final.pop(key, None)
        else:
            self.final[key] = value

    def bodies_of(self, message_id: str) -> set[int]:
        return self.conflicts.get(message_id) or {self.bodies[message_id]}

    @property
    def duplicates(self) -> int:
        """messageIds with more than one body."""
        return len(self.conflicts)


def _state(v: Any, audience: bool) -> int:
    return _OUT if audience and v is not True else _digest(orjson.dumps(v)) | 1


def _move(change: dict[str, Any]) -> tuple[int, int, int]:
    instant = (change["profile_id"], change["key"], change.get("version"), change.get("at_ms"))
    audience = change["kind"] == "audience"
    return (
        _digest(orjson.dumps(instant)),
        _state(change.get("previous"), audience),
        _state(change["value"], audience),
    )


def _same_instant_reversals(ids: Iterable[str], side: Outputs) -> int:
    """How many of `ids` (one side's records the other has not) pair up as x→y, y→x at
    one instant (in any order: each pair is counted once its second half is seen)."""
    open_moves: dict[tuple[int, int, int], int] = {}  # (instant, from, to) -> unpaired
    paired = 0
    for mid in ids:
        instant, frm, to = side.moves[mid]
        back = (instant, to, frm)
        if open_moves.get(back):
            open_moves[back] -= 1
            paired += 2
        else:
            k = (instant, frm, to)
            open_moves[k] = open_moves.get(k, 0) + 1
    return paired


@dataclass(frozen=True)
class Comparison:
    lost: int
    divergent: int
    duplicates: int
    resends: int
    only_in_baseline: int  # change records (messageIds)
    only_in_run: int
    other_body: int
    same_instant: int = 0  # of the records differing: reversals the other side netted
    examples: tuple[str, ...] = ()

    @property
    def records_differing(self) -> int:
        return self.only_in_baseline + self.only_in_run + self.other_body

    @property
    def ok(self) -> bool:
        """The outcome is the baseline's: nothing lost, nothing divergent, no contradiction."""
        return self.lost == 0 and self.divergent == 0 and self.duplicates == 0

    @property
    def exact(self) -> bool:
        """... and so is every change record on the way there, but for same-instant
        reversals netted in one batch and not in another."""
        return self.ok and self.records_differing == self.same_instant


def compare(run: Outputs, baseline: Outputs, events_missing: int = 0) -> Comparison:
    """`events_missing`: input events the run's profiles stage never received (lost too)."""
    missing = baseline.final.keys() - run.final.keys()
    differing = [k for k in run.final if run.final[k] != baseline.final.get(k, _ABSENT)]
    only_base = baseline.bodies.keys() - run.bodies.keys()
    only_run = run.bodies.keys() - baseline.bodies.keys()
    other = [
        m
        for m in run.bodies.keys() & baseline.bodies.keys()
        if run.bodies_of(m) != baseline.bodies_of(m)
    ]
    examples = [f"final {k}: none vs {baseline.final[k]!r}" for k in sorted(missing)[:3]]
    examples += [
        f"final {k}: {run.final[k]!r} vs {baseline.final.get(k, 'none')!r}"
        for k in sorted(differing)[:3]
    ]
    examples += [f"record only in the baseline {m}" for m in sorted(only_base)[:3]]
    examples += [f"record only in the run {m}" for m in sorted(only_run)[:3]]
    examples += [f"record with another body {m}" for m in sorted(other)[:3]]
    return Comparison(
        lost=events_missing + len(missing),
        divergent=len(differing),
        duplicates=run.duplicates,
        resends=run.resends,
        only_in_baseline=len(only_base),
        only_in_run=len(only_run),
        other_body=len(other),
        same_instant=_same_instant_reversals(only_run, run)
        + _same_instant_reversals(only_base, baseline),
        examples=tuple(examples),
    )
