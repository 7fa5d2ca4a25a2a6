"""Drive the engine through the real `ProfileProcessor` over in-memory state.

Every call goes through dedup → history → traits → external ids → engine → wake-up
index, and the profile record is serialised with orjson between calls, so tests also
prove the engine's state is JSON-serialisable and survives a round trip.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from engage_stream.definitions.models import AudienceDefinition, ComputedTraitDefinition
from engage_stream.engine import Change, Engine, EngineSettings
from engage_stream.events import ProfileEvent
from engage_stream.profiles.processor import ProcessorSettings, ProfileProcessor
from engage_stream.profiles.record import ProfileRecord
from engage_stream.profiles.store import ProfileStore
from engage_stream.state.memory import MemoryKV

MIN = 60_000
H = 60 * MIN
DAY = 24 * H
T0 = 1_700_000_000_000 - 1_700_000_000_000 % DAY  # a UTC midnight, so hours line up


def exit_at(ts: int, window_ms: int) -> int:
    """When an event at `ts` leaves a computed trait's `within` of `window_ms`: exactly
    `ts + window` below a day, from a day on at the end of its grain (the longest divisor
    of an hour up to 0.1 % of the window) + the window (`windows.Window.grained`)."""
    if window_ms < DAY:
        return ts + window_ms
    g = _grain(window_ms)
    return (ts // g + 1) * g + window_ms


@functools.cache
def _grain(window_ms: int) -> int:
    return next(g for g in range(min(window_ms // 1000, H), 0, -1) if H % g == 0)


def audience(key: str = "aud", conditions: list[dict[str, Any]] | None = None, **kw: Any):
    return AudienceDefinition.model_validate({"key": key, "conditions": conditions, **kw})


def trait(key: str, type: str, event: str, **kw: Any) -> ComputedTraitDefinition:
    return ComputedTraitDefinition.model_validate({"key": key, "type": type, "event": event, **kw})


def event(
    name: str | None,
    ts: int,
    mid: str,
    props: Mapping[str, Any] | None = None,
    *,
    kind: str = "track",
    user: str | None = "u1",
    anon: str | None = None,
    traits: Mapping[str, Any] | None = None,
    profile: str | None = None,
    received: int | None = None,
) -> ProfileEvent:
    return ProfileEvent(
        message_id=mid,
        type=kind,
        timestamp=ts,
        received_at=ts if received is None else received,
        profile_id=profile or (f"user_id:{user}" if user else f"anonymous_id:{anon}"),
        event=name,
        user_id=user,
        anonymous_id=anon,
        properties=dict(props or {}),
        traits=dict(traits or {}),
    )


class Harness:
    def __init__(
        self,
        definitions: Sequence[AudienceDefinition | ComputedTraitDefinition],
        versions: Mapping[str, int] | None = None,
        applied_at: Mapping[str, int] | None = None,
        settings: EngineSettings | None = None,
        history_days: float = 400,
    ) -> None:
        self.settings = settings = settings or EngineSettings()
        self.engine = Engine(definitions, versions, applied_at, settings)
        self.proc = ProfileProcessor(
            self.engine,
            ProcessorSettings(history_ms=int(history_days * DAY), dedup_ms=DAY),
            self.engine.versions,
        )
        self.store = ProfileStore(MemoryKV())
        self.now = 0
        self.changes: list[Change] = []
        self._ids = itertools.count()

    # -- input ----------------------------------------------------------------------------
    def send(self, ev: ProfileEvent, now: int | None = None) -> list[Change]:
        self.now = max(self.now, ev.timestamp if now is None else now)
        out = self.proc.apply(self.store, ev, self.now).changes
        self.changes.extend(out)
        return out

    def track(
        self,
        name: str,
        ts: int,
        props: Mapping[str, Any] | None = None,
        *,
        now: int | None = None,
        mid: str | None = None,
        **kw: Any,
    ) -> list[Change]:
        return self.send(event(name, ts, mid or self._mid(), props, **kw), now)

    def identify(
        self, traits: Mapping[str, Any], ts: int, *, now: int | None = None, **kw: Any
    ) -> list[Change]:
        ev = event(
            None, ts, kw.pop("mid", None) or self._mid(), kind="identify", traits=traits, **kw
        )
        return self.send(ev, now)

    def tick(self, now: int) -> list[Change]:
        self.now = max(self.now, now)
        out = self.proc.advance(self.store, self.now).changes
        self.changes.extend(out)
        return out

    def redefine(
        self,
        definitions: Sequence[AudienceDefinition | ComputedTraitDefinition],
        versions: Mapping[str, int] | None = None,
        applied_at: Mapping[str, int] | None = None,
        now: int | None = None,
    ) -> list[Change]:
        """New definitions: swap the engine and backfill every profile (like the runtime)."""
        self.engine = Engine(definitions, versions, applied_at, self.settings)
        self.proc.set_engine(self.engine, self.engine.versions)
        if now is not None:
            self.now = max(self.now, now)
        out = self.proc.sweep(self.store, self.now, None, 1_000_000).changes
        self.changes.extend(out)
        return out

    def _mid(self) -> str:
        return f"m{next(self._ids)}"

    # -- reading --------------------------------------------------------------------------
    def record(self, pid: str = "user_id:u1") -> ProfileRecord:
        r = self.store.get(pid)
        assert r is not None, f"no profile {pid}"
        return r

    def member(self, key: str = "aud", pid: str = "user_id:u1") -> bool:
        r = self.store.get(pid)
        tv = r.audiences.get(key) if r is not None else None
        return tv is not None and tv.value is True

    def value(self, key: str, pid: str = "user_id:u1") -> Any:
        r = self.store.get(pid)
        tv = r.computed_traits.get(key) if r is not None else None
        return tv.value if tv is not None else None

    def wakeup(self, pid: str = "user_id:u1") -> int | None:
        return self.record(pid).next_wakeup


def replay(
    definitions: Sequence[AudienceDefinition | ComputedTraitDefinition],
    events: Sequence[ProfileEvent],
    ticks: bool,
    end: int,
) -> Harness:
    """Events in the given order, each at max(clock, its time), then the clock to `end`;
    `ticks`: a tick at each event's time first (as a live punctuator would)."""
    h = Harness(definitions)
    for ev in events:
        if ticks:
            h.tick(ev.timestamp)
        h.send(ev, now=max(h.now, ev.timestamp))
    h.tick(end)
    return h


def summary(changes: Sequence[Change]) -> list[tuple[str, Any, int, str]]:
    """(key, value, at, cause) per change: what most assertions compare."""
    return [(c.key, c.value, c.at, c.cause) for c in changes]


def final_state(h: Harness, pids: Sequence[str] = ("user_id:u1",)) -> dict[str, Any]:
    """Memberships and trait values per profile — what must not depend on arrival order."""
    out: dict[str, Any] = {}
    for pid in pids:
        r = h.store.get(pid)
        if r is None:
            continue
        out[pid] = (
            sorted(k for k, v in r.audiences.items() if v.value is True),
            {k: v.value for k, v in sorted(r.computed_traits.items())},
            r.next_wakeup,
        )
    return out
