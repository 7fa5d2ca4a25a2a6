"""Per-partition journey counts, kept in the partition's own state (`j:<journey>\\0<name>`).

Like audience sizes (`profiles.sizes`): stored in the batch's transaction, mirrored on the
changelog, summed across partitions by the API. Names:

- `entered`, `completed`, `exited` — instances, ever (exited: by an exit step, exit event,
  exit-after, the 365-day limit or archiving);
- `active` — instances in progress now;
- `step:<step>` — instances in that step now (waiting in it; immediate steps are entered
  and left within one input, so they count 0 here);
- `reached:<step>` — times an instance entered the step, ever (immediate steps included);
- `requested`, `skipped:<reason>` — message requests made, and not made by reason
  (a subscription state or `no_address`).
"""

from __future__ import annotations

from collections.abc import Iterable

from engage_stream.journeys.machine import InstanceRecord, JourneyOutput, MessageSkipped
from engage_stream.state.keys import END, JOURNEY_COUNT, SEP
from engage_stream.state.kv import KV

Counts = dict[str, dict[str, int]]  # journey -> name -> count


def deltas(outputs: Iterable[JourneyOutput]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}

    def add(journey: str, name: str, d: int) -> None:
        out[journey, name] = out.get((journey, name), 0) + d

    for o in outputs:
        j = o.journey
        if o.type == "instance_entered":
            add(j, "entered", 1)
            add(j, "active", 1)
        elif o.type in ("instance_completed", "instance_exited"):
            add(j, "completed" if o.type == "instance_completed" else "exited", 1)
            add(j, "active", -1)
            if isinstance(o, InstanceRecord) and o.type == "instance_exited":
                add(j, f"exit:{o.reason}", 1)
        elif o.type == "step_entered":
            add(j, f"step:{o.step}", 1)
            add(j, f"reached:{o.step}", 1)
        elif o.type == "step_exited":
            add(j, f"step:{o.step}", -1)
        elif o.type == "message_request":
            add(j, "requested", 1)
        elif isinstance(o, MessageSkipped):
            add(j, f"skipped:{o.reason}", 1)
    return out


def apply(kv: KV, moves: dict[tuple[str, str], int]) -> None:
    for (journey, name), d in moves.items():
        if not d:
            continue
        k = JOURNEY_COUNT + journey.encode() + SEP + name.encode()
        n = int(kv.get(k) or b"0") + d
        if n:
            kv.put(k, str(n).encode())
        else:
            kv.delete(k)


def drop_except(kv: KV, journeys: set[str]) -> None:
    """Forget the counts of journeys no longer defined (a key re-created later starts
    from zero, as its instances do)."""
    for k, _ in list(kv.range(JOURNEY_COUNT, JOURNEY_COUNT + END)):
        if k[len(JOURNEY_COUNT) :].split(SEP, 1)[0].decode() not in journeys:
            kv.delete(k)


def read(kv: KV) -> Counts:
    out: Counts = {}
    for k, v in kv.range(JOURNEY_COUNT, JOURNEY_COUNT + END):
        journey, name = k[len(JOURNEY_COUNT) :].split(SEP, 1)
        out.setdefault(journey.decode(), {})[name.decode()] = int(v)
    return out


def add(into: Counts, more: Counts) -> Counts:
    """Counts of several partitions summed (the API across workers)."""
    for journey, names in more.items():
        mine = into.setdefault(journey, {})
        for name, n in names.items():
            mine[name] = mine.get(name, 0) + n
    return into
