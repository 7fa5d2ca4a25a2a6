"""Builders shared by the journey tests."""

from __future__ import annotations

from typing import Any

from engage_stream.engine.changes import Change
from engage_stream.events import ProfileEvent
from engage_stream.journeys.machine import JourneyMachine, JourneyOutput, JourneyProfile, Result
from engage_stream.journeys.models import JourneyDefinition

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_700_000_000_000


def journey(steps: list[dict[str, Any]], **kw: Any) -> JourneyDefinition:
    body: dict[str, Any] = {"kind": "journey", "key": "j", "entry": {"audience": "aud"}}
    body.update(kw)
    body["steps"] = steps
    return JourneyDefinition.model_validate(body)


def v2(steps: list[dict[str, Any]], **kw: Any) -> JourneyDefinition:
    entry = kw.pop(
        "entry", {"event": "Trial Started", "rule": "every_time", "unique_identifier": "trial_id"}
    )
    return journey(steps, entry=entry, **kw)


def profile(pid: str = "p1", **kw: Any) -> JourneyProfile:
    return JourneyProfile(pid, **kw)


def joined(pid: str = "p1", at: int = T0, key: str = "aud", value: Any = True) -> Change:
    return Change("audience", key, 1, pid, value, not value, at, f"event:m{at}")


def event(name: str, at: int, mid: str | None = None, **props: Any) -> ProfileEvent:
    return ProfileEvent(
        message_id=mid or f"{name}-{at}",
        type="track",
        timestamp=at,
        received_at=at,
        profile_id="p1",
        event=name,
        properties=props,
    )


def kinds(outputs: list[JourneyOutput]) -> list[tuple[str, str]]:
    return [(o.type, o.step) for o in outputs]


class Driver:
    """Feeds inputs in order, keeping the state, as the stage will."""

    def __init__(self, defn: JourneyDefinition, prof: JourneyProfile | None = None):
        self.m = JourneyMachine(defn)
        self.state: dict[str, Any] | None = None
        self.profile = prof or profile()
        self.outputs: list[JourneyOutput] = []
        self.last: Result | None = None

    def _keep(self, r: Result) -> Result:
        self.state, self.last = r.state, r
        self.outputs.extend(r.outputs)
        return r

    def change(self, c: Change) -> Result:
        self.profile = self.profile.with_change(c)
        return self._keep(self.m.on_change(self.state, self.profile, c))

    def event(self, e: ProfileEvent) -> Result:
        return self._keep(self.m.on_event(self.state, self.profile, e))

    def clock(self, now: int) -> Result:
        return self._keep(self.m.on_clock(self.state, self.profile, now))

    def wake(self) -> Result:
        """A clock tick at exactly the next wake-up."""
        assert self.last is not None and self.last.next_wakeup is not None
        return self.clock(self.last.next_wakeup)
