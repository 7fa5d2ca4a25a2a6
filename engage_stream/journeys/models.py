"""Journey definitions (`kind: journey`): the YAML contract of the journey state machine.

Two flavours, told apart by the shape of `entry` (reference §4):
- classic / v1: `entry: {audience: <key>, use_historical_data: bool}` — a profile enters
  when it joins the audience;
- event-triggered / v2: `entry: {event: <name>, where: [...], audience: <key>?, rule:
  once|every_time, unique_identifier: <property>}`.

Steps form a graph: each step has a `key`, and names the step(s) that follow it (`next`,
`if_true` / `if_false`, a branch's `next`, a `goto` target). A missing `next` ends that
path (the instance *completes* once no path is left); `exit` ends the whole instance
(*exited*). The first step in `steps` is where an instance starts. The graph must be
acyclic — the one loop allowed is a hold-until branch's `loop_back`, which stays in its
own step — so every instance moves only forward and the machine's immediate steps always
terminate.

Limits are the reference's (§4, §8); models forbid unknown fields, so typos are errors
with a location, as in definitions/models.py whose filter and condition models are
reused here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from engage_stream.definitions.models import (
    KEY_PATTERN,
    AudienceCondition,
    Duration,
    PropertyFilter,
    TraitCondition,
    _Row,
    _Strict,
)

MIN_WAIT_MS = 5 * 60_000  # reference §4.2: delay / hold 5 minutes ..
MAX_WAIT_MS = 182 * 86_400_000  # .. 182 days
MAX_INSTANCE_MS = 365 * 86_400_000  # an in-progress instance lives at most 365 days
MAX_CONCURRENT_INSTANCES = 25  # per profile (across journeys)
MAX_VERSIONS = 25  # of one journey (reference §4.1)
MAX_HOLD_BRANCHES = 9
MAX_HOLD_LOOPS = 100
MAX_EXIT_EVENTS = 10
MAX_RANDOM_BRANCHES = 5
MAX_DATA_SPLIT_BRANCHES = 9
MAX_STEPS_V1 = 100
MAX_STEPS_V2 = 50
MAX_NAME = 73
STEP_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


MIN_WAIT_ENV = "ENGAGE_JOURNEY_MIN_WAIT_MS"


def min_wait_ms() -> int:
    """The shortest wait or hold accepted: 5 minutes, as Segment; `ENGAGE_JOURNEY_MIN_WAIT_MS`
    lowers it for demos and tests that watch a delay pass in seconds (`duration: {minutes:
    0.25}`). Read at validation time, so the worker validating a published body needs it
    too."""
    raw = os.environ.get(MIN_WAIT_ENV)
    return int(raw) if raw and raw.isdigit() else MIN_WAIT_MS


def _wait_range(d: Duration) -> Duration:
    low = min_wait_ms()
    if not low <= d.ms <= MAX_WAIT_MS:
        shortest = "5 minutes" if low == MIN_WAIT_MS else f"{low} ms ({MIN_WAIT_ENV})"
        raise ValueError(f"out of range: between {shortest} and 182 days")
    return d


WaitDuration = Annotated[Duration, Field(description="5 minutes .. 182 days")]


def _filters_constant(filters: list[PropertyFilter]) -> list[PropertyFilter]:
    """Journey filters compare with constants: there is no parent event to refer to, and a
    trait reference would make an event's match change after it was taken."""
    for f in filters:
        if f.value_from is not None:
            raise ValueError("journey event filters compare with constants (no value_from)")
    return filters


# -- conditions ---------------------------------------------------------------------------
class ContextCondition(_Row):
    """v2 "with journey context": the journey context holds `context_event` (an event name
    or hold-until alias) whose properties match `where` (empty: the event is present)."""

    context_event: str = Field(min_length=1)
    where: list[PropertyFilter] = Field(default_factory=list)

    _constant = field_validator("where")(_filters_constant)


def field_tag(*names: str) -> Callable[[Any], str | None]:
    """A union's tag: the first of `names` present as a field (models keyed by a field,
    as the audience builder's condition rows are)."""

    def tag(data: Any) -> str | None:
        if hasattr(data, "model_dump"):
            data = data.model_dump()
        if isinstance(data, dict):
            for name in names:
                if name in data:
                    return name
        return None

    return tag


JourneyCondition = Annotated[
    Annotated[TraitCondition, Tag("trait")]
    | Annotated[AudienceCondition, Tag("audience")]
    | Annotated[ContextCondition, Tag("context_event")],
    Discriminator(
        field_tag("trait", "audience", "context_event"),
        custom_error_type="condition_kind",
        custom_error_message="a journey condition needs one of: trait, audience, context_event",
    ),
]
Conditions = Annotated[list[JourneyCondition], Field(min_length=1, max_length=50)]


# -- steps --------------------------------------------------------------------------------
class _Step(_Strict):
    key: str = Field(pattern=STEP_KEY_PATTERN, description="unique in the journey; snake_case")
    name: str = Field("", max_length=MAX_NAME)

    @property
    def display_name(self) -> str:
        return self.name or self.key

    def successors(self) -> list[str]:
        """Every step this one can lead to (the graph edges checked for cycles)."""
        return []


class _Linear(_Step):
    next: str | None = Field(None, description="the following step; absent: the path ends")

    def successors(self) -> list[str]:
        return [self.next] if self.next else []


class WaitStep(_Linear):
    """Wait for a fixed duration, evaluated at exactly `entered + duration`."""

    type: Literal["wait"] = "wait"
    duration: WaitDuration

    _range = field_validator("duration")(_wait_range)


class WaitUntilStep(_Linear):
    """Wait until `condition` (traits / audience memberships) holds; re-checked on every
    change of the profile. Optional `max_wait`, then `timeout_next`."""

    type: Literal["wait_until"] = "wait_until"
    condition: Conditions
    max_wait: WaitDuration | None = None
    timeout_next: str | None = None

    @field_validator("max_wait")
    @classmethod
    def _range(cls, d: Duration | None) -> Duration | None:
        return None if d is None else _wait_range(d)

    @model_validator(mode="after")
    def _timeout(self) -> WaitUntilStep:
        if self.timeout_next is not None and self.max_wait is None:
            raise ValueError("timeout_next needs max_wait")
        return self

    def successors(self) -> list[str]:
        return [s for s in (self.next, self.timeout_next) if s]


class HoldBranch(_Strict):
    """One event that releases a hold-until step. `loop_back`: stay in the step, restart
    its timer and refresh the journey context (at most 100 times per instance, then the
    branch continues to `next`)."""

    name: str = Field(min_length=1, max_length=MAX_NAME)
    event: str = Field(min_length=1)
    where: list[PropertyFilter] = Field(default_factory=list)
    loop_back: bool = False
    next: str | None = None

    _constant = field_validator("where")(_filters_constant)


class HoldUntilStep(_Step):
    """Hold until one of the branch events, or `max_hold` elapses → `timeout_next`."""

    type: Literal["hold_until"] = "hold_until"
    branches: list[HoldBranch] = Field(min_length=1, max_length=MAX_HOLD_BRANCHES)
    max_hold: WaitDuration
    timeout_next: str | None = None

    _range = field_validator("max_hold")(_wait_range)

    @model_validator(mode="after")
    def _unique_names(self) -> HoldUntilStep:
        _unique([b.name for b in self.branches], "branch name")
        return self

    def successors(self) -> list[str]:
        return [s for s in (*(b.next for b in self.branches), self.timeout_next) if s]


class SplitStep(_Step):
    """True/false split, evaluated once when the profile reaches it."""

    type: Literal["split"] = "split"
    condition: Conditions
    if_true: str | None = None
    if_false: str | None = None

    def successors(self) -> list[str]:
        return [s for s in (self.if_true, self.if_false) if s]


class ConditionBranch(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    condition: Conditions
    next: str | None = None


class MultiSplitStep(_Step):
    """v1 multi-branch split: the profile continues down *every* branch that matches."""

    type: Literal["multi_split"] = "multi_split"
    branches: list[ConditionBranch] = Field(min_length=2, max_length=MAX_DATA_SPLIT_BRANCHES)

    @model_validator(mode="after")
    def _unique_names(self) -> MultiSplitStep:
        _unique([b.name for b in self.branches], "branch name")
        return self

    def successors(self) -> list[str]:
        return [b.next for b in self.branches if b.next]


class DataSplitStep(_Step):
    """v2 data split: branches in order, the first match wins, else `everyone_else`."""

    type: Literal["data_split"] = "data_split"
    branches: list[ConditionBranch] = Field(min_length=1, max_length=MAX_DATA_SPLIT_BRANCHES)
    everyone_else: str | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> DataSplitStep:
        _unique([b.name for b in self.branches], "branch name")
        return self

    def successors(self) -> list[str]:
        return [s for s in (*(b.next for b in self.branches), self.everyone_else) if s]


class RandomBranch(_Strict):
    """`next` absent: a holdout (control group) — the path ends with no action."""

    name: str = Field(min_length=1, max_length=MAX_NAME)
    percent: int = Field(ge=1, le=100)
    next: str | None = None


class RandomSplitStep(_Step):
    """Up to 5 branches by percentage, deterministic per profile, journey and step.
    `same_on_reentry` (default: yes in v1, no in v2, reference §4.1/§4.2): a re-entering
    profile gets the branch it got before."""

    type: Literal["random_split"] = "random_split"
    branches: list[RandomBranch] = Field(min_length=2, max_length=MAX_RANDOM_BRANCHES)
    same_on_reentry: bool | None = None

    @model_validator(mode="after")
    def _weights(self) -> RandomSplitStep:
        _unique([b.name for b in self.branches], "branch name")
        total = sum(b.percent for b in self.branches)
        if total != 100:
            raise ValueError(f"branch percentages must add up to 100, not {total}")
        return self

    def successors(self) -> list[str]:
        return [b.next for b in self.branches if b.next]


class GotoStep(_Step):
    """Connect to an existing step (a path join; never back to an earlier step)."""

    type: Literal["goto"] = "goto"
    target: str

    def successors(self) -> list[str]:
        return [self.target]


class SendToDestinationStep(_Linear):
    """v1: Identify / `Audience Entered` Track with the `j_o_<journey>__<step>_<suffix>` key;
    v2: a Track named `event` (default: the step name) with journey_context and
    journey_metadata. `traits`: profile traits copied into the payload."""

    type: Literal["send_to_destination"] = "send_to_destination"
    destinations: list[str] = Field(min_length=1, max_length=5)
    identify: bool = True
    track: bool = False
    event: str | None = Field(None, max_length=MAX_NAME)
    traits: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("destinations")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        import re

        for name in v:
            if not re.match(r"^[a-z0-9][a-z0-9_.-]{0,99}$", name):
                raise ValueError(f"{name!r} is not a valid destination name")
        return v


class SendMessageStep(_Linear):
    """Request an email / SMS (a connector sends it). Only to contact vectors whose
    subscription state allows it (reference §5): `subscription: subscribed` (default), or
    for email `all` (every state, unsubscribed included)."""

    type: Literal["send_message"] = "send_message"
    channel: Literal["email", "sms"]
    template: str = Field(min_length=1)
    group: str | None = Field(None, max_length=75, description="subscription group")
    subscription: Literal["subscribed", "all"] = "subscribed"
    to: str | None = Field(None, description="trait holding the address; default email/phone")
    variables: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _all_only_email(self) -> SendMessageStep:
        if self.subscription == "all" and self.channel != "email":
            raise ValueError("subscription: all is only available for email")
        return self


class ExitStep(_Step):
    """End the instance here (exited, not completed)."""

    type: Literal["exit"] = "exit"


Step = Annotated[
    WaitStep
    | WaitUntilStep
    | HoldUntilStep
    | SplitStep
    | MultiSplitStep
    | DataSplitStep
    | RandomSplitStep
    | GotoStep
    | SendToDestinationStep
    | SendMessageStep
    | ExitStep,
    Field(discriminator="type"),
]
STEP_TYPES = frozenset(
    {
        "wait",
        "wait_until",
        "hold_until",
        "split",
        "multi_split",
        "data_split",
        "random_split",
        "goto",
        "send_to_destination",
        "send_message",
        "exit",
    }
)


# -- entry, exit, re-entry -----------------------------------------------------------------
class AudienceEntry(_Strict):
    """v1: enter on joining `audience`. `use_historical_data`: profiles already members when
    the journey is published enter too (else only those joining afterwards)."""

    audience: str = Field(pattern=KEY_PATTERN)
    use_historical_data: bool = False


class EventEntry(_Strict):
    """v2: enter on `event` matching `where`, if a member of `audience` at that moment.
    `every_time`: one instance per distinct `unique_identifier` value; `once`: one ever."""

    event: str = Field(min_length=1)
    where: list[PropertyFilter] = Field(default_factory=list)
    audience: str | None = Field(None, pattern=KEY_PATTERN)
    rule: Literal["once", "every_time"] = "every_time"
    unique_identifier: str | None = Field(None, min_length=1, max_length=500)

    _constant = field_validator("where")(_filters_constant)

    @model_validator(mode="after")
    def _identifier(self) -> EventEntry:
        if self.rule == "every_time" and not self.unique_identifier:
            raise ValueError("rule every_time needs unique_identifier (an event property)")
        if self.rule == "once" and self.unique_identifier:
            raise ValueError("unique_identifier only applies to rule every_time")
        return self


Entry = Annotated[
    Annotated[EventEntry, Tag("event")] | Annotated[AudienceEntry, Tag("audience")],
    Discriminator(
        field_tag("event", "audience"),
        custom_error_type="entry_kind",
        custom_error_message="entry needs `audience` (classic) or `event` (event-triggered)",
    ),
]


class ExitEvent(_Strict):
    """An event that ends the instance immediately, even during a wait or hold.
    `match_identifier`: only the instance whose unique identifier the event carries."""

    event: str = Field(min_length=1)
    where: list[PropertyFilter] = Field(default_factory=list)
    match_identifier: bool = False

    _constant = field_validator("where")(_filters_constant)


class ExitDestination(_Strict):
    """The optional destination send made when an exit event ends an instance."""

    destinations: list[str] = Field(min_length=1, max_length=5)
    event: str = Field("Journey Exited", max_length=MAX_NAME)


class ExitSettings(_Strict):
    after: Duration | None = Field(None, description="exit N days after entering")
    events: list[ExitEvent] = Field(default_factory=list, max_length=MAX_EXIT_EVENTS)
    send: ExitDestination | None = None

    @field_validator("after")
    @classmethod
    def _after(cls, d: Duration | None) -> Duration | None:
        if d is not None and d.ms > MAX_INSTANCE_MS:
            raise ValueError("out of range: at most 365 days")
        return d


class Reentry(_Strict):
    """When a profile that left may enter again: `never` (default), `every_time`
    (immediately), or `after` a duration counted from the exit (reference §4.1). For
    event-triggered journeys `entry.rule` decides instead."""

    mode: Literal["never", "every_time", "after"] = "never"
    after: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data in ("never", "every_time", "once"):
                return {"mode": "never" if data == "once" else data}
            return {"mode": "after", "after": data}
        if isinstance(data, dict) and "after" in data and "mode" not in data:
            return {**data, "mode": "after"}
        return data

    @model_validator(mode="after")
    def _needs_after(self) -> Reentry:
        if (self.mode == "after") != (self.after is not None):
            raise ValueError("mode after needs `after` (a duration), and only it")
        return self


# -- the journey ---------------------------------------------------------------------------
class JourneyDefinition(_Strict):
    kind: Literal["journey"] = "journey"
    key: str = Field(pattern=KEY_PATTERN, description="immutable; snake_case")
    name: str = Field("", max_length=MAX_NAME)
    description: str = ""
    status: Literal["live", "paused", "archived"] = Field(
        "live",
        description="live: profiles enter; paused: no new entries (those who qualify "
        "meanwhile are not queued), running instances go on; archived: every instance ends",
    )
    on_new_version: Literal["drain", "archive"] = Field(
        "drain",
        description="what publishing this version does to instances of the previous one: "
        "drain (they finish on it; a profile enters this version once it has left) or "
        "archive (they end)",
    )
    entry: Entry
    exit: ExitSettings = Field(default_factory=ExitSettings)
    reentry: Reentry = Field(default_factory=Reentry)
    max_instances: int = Field(MAX_CONCURRENT_INSTANCES, ge=1, le=MAX_CONCURRENT_INSTANCES)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS_V1)

    @property
    def display_name(self) -> str:
        return self.name or self.key

    @property
    def event_triggered(self) -> bool:
        return isinstance(self.entry, EventEntry)

    @property
    def journey_id(self) -> str:
        return "jou_" + hashlib.blake2b(self.key.encode(), digest_size=8).hexdigest()

    @model_validator(mode="after")
    def _graph(self) -> JourneyDefinition:
        v2 = self.event_triggered
        if v2 and len(self.steps) > MAX_STEPS_V2:
            raise ValueError(f"an event-triggered journey has at most {MAX_STEPS_V2} steps")
        keys = [s.key for s in self.steps]
        _unique(keys, "step key")
        known = set(keys)
        for s in self.steps:
            for target in s.successors():
                if target not in known:
                    raise ValueError(f"step {s.key}: no step with key '{target}'")
            if isinstance(s, MultiSplitStep) and v2:
                raise ValueError(
                    f"step {s.key}: multi_split is for classic journeys; use data_split"
                )
            if not v2 and _uses_context(s):
                raise ValueError(
                    f"step {s.key}: journey context conditions need an event-triggered journey"
                )
        if not v2 and self.exit.events:
            # classic journeys exit by time only (reference §4.1); exit events are v2
            raise ValueError("exit.events need an event-triggered journey")
        if any(e.match_identifier for e in self.exit.events) and not _has_identifier(self):
            raise ValueError("match_identifier needs entry.rule every_time")
        if self.exit.send is not None and not self.exit.events:
            raise ValueError("exit.send is made when an exit event ends an instance: add events")
        if v2 and self.reentry.mode != "never":
            raise ValueError("event-triggered journeys re-enter by entry.rule, not reentry")
        _acyclic(self.steps)
        reachable = _reachable(self.steps)
        for s in self.steps:
            if s.key not in reachable:
                raise ValueError(f"step {s.key} cannot be reached from the first step")
        return self


def _has_identifier(j: JourneyDefinition) -> bool:
    return isinstance(j.entry, EventEntry) and j.entry.unique_identifier is not None


def _uses_context(s: Any) -> bool:
    conds: list[Any] = []
    if isinstance(s, WaitUntilStep | SplitStep):
        conds = list(s.condition)
    elif isinstance(s, MultiSplitStep | DataSplitStep):
        conds = [c for b in s.branches for c in b.condition]
    return any(isinstance(c, ContextCondition) for c in conds)


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} '{n}'")
        seen.add(n)


def _acyclic(steps: list[Any]) -> None:
    """Depth-first search; a back edge is a loop (only hold-until loop_back may loop, and
    that is not an edge)."""
    edges = {s.key: s.successors() for s in steps}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    for root in edges:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            succ = edges.get(node, [])
            if i < len(succ):
                stack[-1] = (node, i + 1)
                nxt = succ[i]
                if state.get(nxt) == 1:
                    raise ValueError(
                        f"steps loop back: {node} leads to {nxt}, which leads back to "
                        f"{node} (only a hold_until branch may loop_back)"
                    )
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                stack.pop()


def _reachable(steps: list[Any]) -> set[str]:
    edges = {s.key: s.successors() for s in steps}
    seen = {steps[0].key}
    todo = [steps[0].key]
    while todo:
        for n in edges.get(todo.pop(), []):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def step_key(journey_key: str, step: str, event_triggered: bool) -> str:
    """The destination key of a send step: stable for an unchanged journey and step key
    (so a new version keeps it), `j_o_<journey>__<step>_<suffix>` in v1 (reference §4.1),
    `<journey>__<step>_<suffix>` in v2 (≤ 31 characters there, reference §4.2)."""
    suffix = hashlib.blake2b(f"{journey_key}\x00{step}".encode(), digest_size=3).hexdigest()
    if event_triggered:
        return f"{journey_key[:12]}__{step[:11]}_{suffix[:5]}"
    return f"j_o_{journey_key}__{step}_{suffix}"
