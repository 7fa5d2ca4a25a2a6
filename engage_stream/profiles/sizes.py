"""Per-partition audience sizes, kept in the partition's own state (`s:<audience>`).

The sizes are state like any other: stored in the batch's transaction, mirrored on the
changelog, rebuilt after a restart. A count is exactly the partition's profiles holding
the membership: it moves with every change, and with every membership a deletion takes
off a profile (`Outcome.left`), so a deleted audience leaves no counter behind once the
deletion has reached every profile, and a re-created one counts only its real members.
"""

from __future__ import annotations

from collections.abc import Iterable

from engage_stream.engine.changes import Change
from engage_stream.state.keys import END, SIZE
from engage_stream.state.kv import KV


def member_delta(change: Change) -> int:
    if change.kind != "audience":
        return 0
    if change.value is True and change.previous is not True:
        return 1
    if change.value is not True and change.previous is True:
        return -1
    return 0


def deltas(changes: Iterable[Change], left: Iterable[str] = ()) -> dict[str, int]:
    """Member count moves: entries and exits in `changes`, plus memberships `left` behind
    by deleted definitions."""
    out: dict[str, int] = {}
    for ch in changes:
        d = member_delta(ch)
        if d:
            out[ch.key] = out.get(ch.key, 0) + d
    for key in left:
        out[key] = out.get(key, 0) - 1
    return out


def apply(kv: KV, moves: dict[str, int]) -> None:
    for key, d in moves.items():
        if not d:
            continue
        k = SIZE + key.encode()
        n = int(kv.get(k) or b"0") + d
        if n:
            kv.put(k, str(n).encode())
        else:
            kv.delete(k)  # no members left: a deleted audience leaves no counter behind


def read(kv: KV) -> dict[str, int]:
    return {k[len(SIZE) :].decode(): int(v) for k, v in kv.range(SIZE, SIZE + END)}
