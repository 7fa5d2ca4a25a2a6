"""The journey state machine: (journey, profile's journey state, one input) → (new state,
outputs, next wake-up). Pure and deterministic: no I/O, no wall clock, no randomness —
the same inputs give the same outputs, byte for byte, with the same ids.

Inputs: an audience / trait `Change` of the profile (`on_change`), a `ProfileEvent`
(`on_event`), or a clock instant (`on_clock`). Each call takes a `JourneyProfile`, the
profile as it is after that input (traits, memberships, identifiers, subscription
states) — what splits, wait-until conditions, recipients and payload traits read.

Time, as the engine does it (engine/engine.py): the state keeps every pending instant
(a wait's end, a hold's maximum, an instance's exit-after or 365-day limit, a re-entry
time); `next_wakeup` is their minimum and the caller must call again at (or after) it.
Every call first fires the instants that are due, in time order, each evaluated at its
own instant — outputs carry that instant and `cause = timer:<ms>` — so outputs do not
depend on when or how often the clock ticks. The input itself is then taken at
`max(input time, last instant processed)`: time never goes backwards for an instance.

State (plain JSON, one value per profile and journey; `new_state()` is the empty one):

    {"clock": ms | null,          last instant processed
     "entries": int,              instances ever started (ordinal of the next one - 1)
     "ended_at": ms | null,       when the last instance ended (v1 re-entry)
     "reentry_at": ms | null,     v1 `reentry.after`: when to re-check membership
     "instances": [{"id", "n", "uid", "entered", "expires", "ctx", "sent",
                    "tokens": [{"step", "since", "due", "loops"}]}]}

An instance has one token per step it is waiting in (a multi-split can put it in several);
`ctx` is the v2 journey context (event properties by event name / alias), `sent` the
send steps already sent (a path join reaching one again sends once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from engage_stream.definitions.models import (
    AudienceCondition,
    PropertyFilter,
    TraitCondition,
)
from engage_stream.engine.changes import Change
from engage_stream.engine.operators import compile_dynamic, compile_static, get_path, split_path
from engage_stream.events import ProfileEvent
from engage_stream.journeys.models import (
    MAX_HOLD_LOOPS,
    MAX_INSTANCE_MS,
    AudienceEntry,
    ContextCondition,
    DataSplitStep,
    EventEntry,
    ExitStep,
    GotoStep,
    HoldUntilStep,
    JourneyDefinition,
    MultiSplitStep,
    RandomSplitStep,
    SendMessageStep,
    SendToDestinationStep,
    SplitStep,
    WaitStep,
    WaitUntilStep,
    step_key,
)
from engage_stream.journeys.subscriptions import allowed, state_of
from engage_stream.messaging.templates import render, trait_value
from engage_stream.timestamps import iso_ms

STATE_VERSION = 1


def new_state() -> dict[str, Any]:
    return {
        "v": STATE_VERSION,
        "clock": None,
        "entries": 0,
        "ended_at": None,
        "reentry_at": None,
        "instances": [],
    }


# -- the profile as the machine sees it ------------------------------------------------------
@dataclass(frozen=True)
class JourneyProfile:
    """A read-only snapshot of the profile after the input. `traits`: what a trait
    condition sees (audience and computed keys shadow custom traits, as
    ProfileRecord.trait does); `subscriptions`: subscriptions.py's shape."""

    profile_id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    audiences: Mapping[str, bool] = field(default_factory=dict)
    external_ids: tuple[tuple[str, str], ...] = ()
    subscriptions: Mapping[str, Any] = field(default_factory=dict)
    user_id: str | None = None

    @classmethod
    def from_record(cls, record: Any, subscriptions: Mapping[str, Any]) -> JourneyProfile:
        """From a `profiles.record.ProfileRecord` (duck-typed: no import of the stage)."""
        traits: dict[str, Any] = {k: v.value for k, v in record.traits.items()}
        traits.update({k: v.value for k, v in record.computed_traits.items()})
        traits.update({k: v.value for k, v in record.audiences.items()})
        ids = tuple((x.type, x.id) for x in record.external_ids)
        user_id = next((i for t, i in ids if t == "user_id"), None)
        return cls(
            record.profile_id,
            traits,
            {k: v.value is True for k, v in record.audiences.items()},
            ids,
            subscriptions,
            user_id,
        )

    def with_change(self, change: Change) -> JourneyProfile:
        """The snapshot with `change` applied (so a caller passing the profile from before
        the change still sees it)."""
        traits = {**self.traits, change.key: change.value}
        audiences = dict(self.audiences)
        if change.kind == "audience":
            audiences[change.key] = change.value is True
        return JourneyProfile(
            self.profile_id, traits, audiences, self.external_ids, self.subscriptions, self.user_id
        )

    def identifier(self, id_type: str) -> str | None:
        for t, i in self.external_ids:
            if t == id_type:
                return i
        return None


# -- outputs ------------------------------------------------------------------------------------
OutputType = Literal[
    "instance_entered",
    "instance_completed",
    "instance_exited",
    "entry_skipped",
    "step_entered",
    "step_exited",
    "destination_send",
    "message_request",
    "message_skipped",
]


@dataclass(frozen=True, kw_only=True)
class JourneyOutput:
    """Common to every output. `at`: the instant it happened (a wait's due instant, not the
    processing time); `message_id`: a hash of what caused it, so a replay repeats it."""

    type: OutputType
    journey: str
    version: int
    profile_id: str
    instance_id: str
    step: str
    at: int
    cause: str
    message_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class InstanceRecord(JourneyOutput):
    """instance_entered / _completed / _exited / entry_skipped; `reason` for the last two:
    exit_step | exit_event | exit_after | max_age, or max_instances | missing_identifier."""

    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class StepRecord(JourneyOutput):
    """step_entered / step_exited; `branch` names the way out (true / false, a branch name,
    timeout, met, everyone_else, loop)."""

    branch: str = ""
    loops: int = 0


@dataclass(frozen=True, kw_only=True)
class DestinationSend(JourneyOutput):
    """One or more Segment calls for the destinations (v1 Identify / Track keyed by
    `step_key`; v2 a Track with journey_context and journey_metadata)."""

    step_key: str
    destinations: tuple[str, ...]
    calls: tuple[dict[str, Any], ...]


@dataclass(frozen=True, kw_only=True)
class MessageRequest(JourneyOutput):
    """What a messaging connector sends; `idempotency_key` is the same for every replay of
    this instance reaching this step."""

    channel: str
    template: str
    recipient: str
    group: str | None
    variables: dict[str, str]
    idempotency_key: str


@dataclass(frozen=True, kw_only=True)
class MessageSkipped(JourneyOutput):
    """A message not requested: `reason` is the recipient's subscription state (none,
    unsubscribed, did_not_subscribe) or `no_address`."""

    channel: str
    recipient: str | None
    reason: str


@dataclass(frozen=True)
class Result:
    state: dict[str, Any]
    outputs: list[JourneyOutput]
    next_wakeup: int | None


# -- compiled pieces --------------------------------------------------------------------------
PropsMatch = Callable[[Mapping[str, Any], int], bool]  # (properties, now)
CondEval = Callable[[JourneyProfile, Mapping[str, Any], int], bool]  # (profile, ctx, now)


def compile_filters(filters: Sequence[PropertyFilter]) -> PropsMatch:
    """AND of constant filters, duration operators relative to `now`."""
    checks = [(split_path(f.property), compile_static(f.operator, f.value)) for f in filters]

    def match(props: Mapping[str, Any], now: int) -> bool:
        d = props if type(props) is dict else dict(props)
        return all(pred(get_path(d, path), now) for path, pred in checks)

    return match


def _compile_row(row: Any) -> CondEval:
    if isinstance(row, AudienceCondition):
        key, member = row.audience, row.member
        return lambda p, ctx, now: p.audiences.get(key, False) is member
    if isinstance(row, TraitCondition):
        path = split_path(row.trait)
        if row.value_from is not None and row.value_from.trait is not None:
            dyn = compile_dynamic(row.operator)
            ref = split_path(row.value_from.trait)
            return lambda p, ctx, now: dyn(trait_value(p.traits, path), trait_value(p.traits, ref))
        pred = compile_static(row.operator, row.value)
        return lambda p, ctx, now: pred(trait_value(p.traits, path), now)
    if isinstance(row, ContextCondition):
        name, match = row.context_event, compile_filters(row.where)

        def ctx_cond(p: JourneyProfile, ctx: Mapping[str, Any], now: int) -> bool:
            props = ctx.get(name)
            return props is not None and match(props, now)

        return ctx_cond
    raise TypeError(f"not a journey condition: {type(row).__name__}")


def compile_conditions(rows: Sequence[Any]) -> CondEval:
    """Rows joined like the audience builder: AND binds tighter than OR."""
    groups: list[list[CondEval]] = [[]]
    for i, row in enumerate(rows):
        if i > 0 and row.join == "or":
            groups.append([])
        groups[-1].append(_compile_row(row))

    def evaluate(p: JourneyProfile, ctx: Mapping[str, Any], now: int) -> bool:
        return any(all(c(p, ctx, now) for c in g) for g in groups)

    return evaluate


@dataclass(frozen=True)
class _HoldBranch:
    name: str
    event: str
    alias: str
    match: PropsMatch
    loop_back: bool
    next: str | None


def _uid(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _hash(*parts: Any) -> str:
    raw = "\x00".join(str(p) for p in parts)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


RANDOM_BUCKETS = 10_000


class CompiledJourney:
    """A definition with its conditions and filters turned into closures once."""

    def __init__(self, definition: JourneyDefinition, version: int = 1, published_at: int = 0):
        self.definition = definition
        self.key = definition.key
        self.version = version
        self.published_at = published_at
        self.v2 = definition.event_triggered
        self.steps = {s.key: s for s in definition.steps}
        self.first = definition.steps[0].key
        self.conditions: dict[str, CondEval] = {}
        self.branch_conditions: dict[tuple[str, str], CondEval] = {}
        self.holds: dict[str, list[_HoldBranch]] = {}
        for s in definition.steps:
            if isinstance(s, WaitUntilStep | SplitStep):
                self.conditions[s.key] = compile_conditions(s.condition)
            elif isinstance(s, MultiSplitStep | DataSplitStep):
                for b in s.branches:
                    self.branch_conditions[(s.key, b.name)] = compile_conditions(b.condition)
            elif isinstance(s, HoldUntilStep):
                events = [b.event for b in s.branches]
                self.holds[s.key] = [
                    _HoldBranch(
                        b.name,
                        b.event,
                        f"{b.event} - {b.name}" if events.count(b.event) > 1 else b.event,
                        compile_filters(b.where),
                        b.loop_back,
                        b.next,
                    )
                    for b in s.branches
                ]
        entry = definition.entry
        self.entry = entry
        self.entry_match: PropsMatch | None = (
            compile_filters(entry.where) if isinstance(entry, EventEntry) else None
        )
        self.uid_path = (
            split_path(entry.unique_identifier)
            if isinstance(entry, EventEntry) and entry.unique_identifier
            else None
        )
        self.exit_events = [
            (e.event, compile_filters(e.where), e.match_identifier) for e in definition.exit.events
        ]
        self.exit_after = definition.exit.after.ms if definition.exit.after else None

    def step_key(self, step: str) -> str:
        return step_key(self.key, step, self.v2)

    def random_branch(self, step: RandomSplitStep, profile_id: str, ordinal: int) -> int:
        """The branch index: a hash of journey, step and profile (and the entry ordinal
        unless the branch is kept on re-entry) into 10 000 buckets, cut by the weights."""
        same = step.same_on_reentry if step.same_on_reentry is not None else not self.v2
        salt = "" if same else str(ordinal)
        h = hashlib.blake2b(
            f"{self.key}\x00{step.key}\x00{profile_id}\x00{salt}".encode(), digest_size=8
        ).digest()
        bucket = int.from_bytes(h, "big") % RANDOM_BUCKETS
        edge = 0
        for i, b in enumerate(step.branches):
            edge += b.percent * RANDOM_BUCKETS // 100
            if bucket < edge:
                return i
        return len(step.branches) - 1


# -- the machine ----------------------------------------------------------------------------------
class JourneyMachine:
    """Stateless apart from the compiled journey: every call gets and returns the state."""

    def __init__(self, journey: CompiledJourney | JourneyDefinition):
        self.j = journey if isinstance(journey, CompiledJourney) else CompiledJourney(journey)

    # -- public entry points ----------------------------------------------------------------
    def on_change(
        self,
        state: Mapping[str, Any] | None,
        profile: JourneyProfile,
        change: Change,
        capacity: int | None = None,
        entering: bool = True,
    ) -> Result:
        profile = profile.with_change(change)
        run = _Run(self.j, state, profile, capacity, entering)
        at = run.advance_to(change.at)
        cause = f"{change.kind}:{change.key}:{change.cause}"
        entry = self.j.entry
        if (
            isinstance(entry, AudienceEntry)
            and change.kind == "audience"
            and change.key == entry.audience
            and change.value is True
            and change.previous is not True
        ):
            historical = change.cause.startswith("definition:") or change.at < self.j.published_at
            if entry.use_historical_data or not historical:
                run.try_enter_v1(at, cause)
        run.recheck_waits(at, cause)
        return run.finish(at)

    def on_event(
        self,
        state: Mapping[str, Any] | None,
        profile: JourneyProfile,
        event: ProfileEvent,
        capacity: int | None = None,
        entering: bool = True,
    ) -> Result:
        run = _Run(self.j, state, profile, capacity, entering)
        at = run.advance_to(event.timestamp)
        cause = f"event:{event.message_id}"
        if event.event is not None:
            run.exit_events(event, at, cause)
            run.holds(event, at, cause)
            run.try_enter_v2(event, at, cause)
        run.recheck_waits(at, cause)
        return run.finish(at)

    def on_clock(
        self,
        state: Mapping[str, Any] | None,
        profile: JourneyProfile,
        now: int,
        capacity: int | None = None,
        entering: bool = True,
    ) -> Result:
        run = _Run(self.j, state, profile, capacity, entering)
        at = run.advance_to(now)
        return run.finish(at)

    def on_publish(
        self,
        state: Mapping[str, Any] | None,
        profile: JourneyProfile,
        now: int,
        capacity: int | None = None,
    ) -> Result:
        """This version reaches a profile that existed when it was published (the stage's
        sweep, once per profile and version): with `use_historical_data` a member of the
        entry audience enters now — the entry step alone looks at the past (§4.1)."""
        run = _Run(self.j, state, profile, capacity, True)
        at = run.advance_to(now)
        entry = self.j.entry
        if (
            isinstance(entry, AudienceEntry)
            and entry.use_historical_data
            and profile.audiences.get(entry.audience)
        ):
            run.try_enter_v1(at, f"historical:{self.j.version}")
        return run.finish(at)

    def on_archive(
        self,
        state: Mapping[str, Any] | None,
        profile: JourneyProfile,
        now: int,
        reason: str = "archived",
    ) -> Result:
        """End every instance (`instance_exited` with `reason`): the journey or this
        version was archived or deleted. Pending instants up to `now` fire first."""
        run = _Run(self.j, state, profile, None, False)
        at = run.advance_to(now)
        for inst in list(run.st["instances"]):
            run._end(inst, at, f"{reason}:{self.j.version}", "instance_exited", reason)
        return run.finish(at)


def next_wakeup(state: Mapping[str, Any]) -> int | None:
    """The earliest pending instant of a state (what the profile's wake-up index holds)."""
    due = [d for d, _ in _pending(state)]
    return min(due) if due else None


def merge_states(target: Mapping[str, Any] | None, source: Mapping[str, Any]) -> dict[str, Any]:
    """One profile's state of a journey from two merged profiles': both sides' instances
    (each keeps its id, its place and its pending instants), the entries of both (re-entry
    rules see the person's whole past), the later exit. The later clock: time never goes
    back for an instance."""
    a = orjson.loads(orjson.dumps(target)) if target else new_state()
    b = orjson.loads(orjson.dumps(source))
    ids = {i["id"] for i in a["instances"]}
    a["instances"].extend(i for i in b["instances"] if i["id"] not in ids)
    a["instances"].sort(key=lambda i: (i["entered"], i["id"]))
    a["entries"] += b["entries"]
    for k in ("clock", "ended_at"):
        vals = [v for v in (a.get(k), b.get(k)) if v is not None]
        a[k] = max(vals) if vals else None
    pending = [v for v in (a.get("reentry_at"), b.get("reentry_at")) if v is not None]
    a["reentry_at"] = max(pending) if pending else None
    return a


def active_instances(state: Mapping[str, Any] | None) -> int:
    """In-progress instances (the stage sums these across journeys for the 25 limit)."""
    return len(state.get("instances", [])) if state else 0


def _pending(state: Mapping[str, Any]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    if state.get("reentry_at") is not None:
        out.append((state["reentry_at"], "reentry"))
    for inst in state.get("instances", []):
        if inst.get("expires") is not None:
            out.append((inst["expires"], "expires"))
        out.append((inst["entered"] + MAX_INSTANCE_MS, "max_age"))
        for t in inst["tokens"]:
            if t["due"] is not None:
                out.append((t["due"], "token"))
    return out


class _Run:
    """One call: a private copy of the state, the outputs so far."""

    def __init__(
        self,
        j: CompiledJourney,
        state: Mapping[str, Any] | None,
        profile: JourneyProfile,
        capacity: int | None,
        entering: bool = True,
    ):
        self.j = j
        # False: paused, draining or archived — running instances go on, no one enters
        self.entering = entering
        # a deep copy through JSON: the caller's state is never modified, and a state
        # that is not plain JSON fails here rather than when it is stored
        self.st: dict[str, Any] = orjson.loads(orjson.dumps(state)) if state else new_state()
        self.p = profile
        self.capacity = capacity
        self.out: list[JourneyOutput] = []

    # -- time -------------------------------------------------------------------------------
    def advance_to(self, t_input: int) -> int:
        """Fire every pending instant <= the input's time, in order; the input's instant."""
        clock = self.st.get("clock")
        now = t_input if clock is None else max(clock, t_input)
        while True:
            due = next_wakeup(self.st)
            if due is None or due > now:
                break
            self._fire(due)
            self.st["clock"] = due
        return now

    def _fire(self, t: int) -> None:
        cause = f"timer:{t}"
        st = self.st
        if st.get("reentry_at") is not None and st["reentry_at"] <= t:
            st["reentry_at"] = None
            entry = self.j.entry
            if isinstance(entry, AudienceEntry) and self.p.audiences.get(entry.audience):
                self.try_enter_v1(t, cause)
        for inst in list(st["instances"]):
            if inst not in st["instances"]:
                continue
            if inst.get("expires") is not None and inst["expires"] <= t:
                self._end(inst, t, cause, "instance_exited", "exit_after")
                continue
            if inst["entered"] + MAX_INSTANCE_MS <= t:
                self._end(inst, t, cause, "instance_exited", "max_age")
                continue
            for tok in list(inst["tokens"]):
                if tok["due"] is not None and tok["due"] <= t:
                    self._timeout(inst, tok, t, cause)
            self._maybe_complete(inst, t, cause)

    def _timeout(self, inst: dict[str, Any], tok: dict[str, Any], t: int, cause: str) -> None:
        step = self.j.steps[tok["step"]]
        inst["tokens"].remove(tok)
        if isinstance(step, WaitStep):
            self._exited(inst, step.key, t, cause, "", tok["loops"])
            self._walk(inst, [step.next], t, cause)
        elif isinstance(step, WaitUntilStep | HoldUntilStep):
            self._exited(inst, step.key, t, cause, "timeout", tok["loops"])
            self._walk(inst, [step.timeout_next], t, cause)

    def finish(self, at: int) -> Result:
        st = self.st
        clock = st.get("clock")
        st["clock"] = at if clock is None else max(clock, at)
        return Result(st, self.out, next_wakeup(st))

    # -- entry ------------------------------------------------------------------------------
    def try_enter_v1(self, at: int, cause: str) -> None:
        st = self.st
        if not self.entering or st["instances"]:
            return  # one instance at a time in a classic journey
        if st["entries"] > 0:
            mode = self.j.definition.reentry
            if mode.mode == "never":
                return
            if mode.mode == "after":
                assert mode.after is not None
                if st["ended_at"] is not None and at < st["ended_at"] + mode.after.ms:
                    return
        self._enter(at, cause, None, {})

    def try_enter_v2(self, event: ProfileEvent, at: int, cause: str) -> None:
        entry = self.j.entry
        if not self.entering or not isinstance(entry, EventEntry) or event.event != entry.event:
            return
        assert self.j.entry_match is not None
        if not self.j.entry_match(event.properties, at):
            return
        if entry.audience is not None and not self.p.audiences.get(entry.audience):
            return
        st = self.st
        uid: str | None = None
        if entry.rule == "once":
            if st["entries"] > 0:
                return
        else:
            assert self.j.uid_path is not None
            uid = _uid(get_path(event.properties, self.j.uid_path))
            if uid is None:
                self._skipped(at, cause, "missing_identifier")
                return
            if any(i["uid"] == uid for i in st["instances"]):
                return  # routed to the running instance (its holds saw the event)
        self._enter(at, cause, uid, {entry.event: dict(event.properties)})

    def _skipped(self, at: int, cause: str, reason: str) -> None:
        self.out.append(
            InstanceRecord(
                type="entry_skipped",
                reason=reason,
                **self._base("entry_skipped", "", "", at, cause, reason),
            )
        )

    def _enter(self, at: int, cause: str, uid: str | None, ctx: dict[str, Any]) -> None:
        st = self.st
        limit = self.j.definition.max_instances
        if len(st["instances"]) >= limit or (self.capacity is not None and self.capacity <= 0):
            self._skipped(at, cause, "max_instances")
            return
        if self.capacity is not None:
            self.capacity -= 1
        st["entries"] += 1
        n = st["entries"]
        iid = "ji_" + _hash(self.j.key, self.p.profile_id, n, cause)
        inst: dict[str, Any] = {
            "id": iid,
            "n": n,
            "uid": uid,
            "entered": at,
            "expires": at + self.j.exit_after if self.j.exit_after else None,
            "ctx": ctx,
            "sent": [],
            "tokens": [],
        }
        st["instances"].append(inst)
        self.out.append(
            InstanceRecord(
                type="instance_entered", **self._base("instance_entered", iid, "", at, cause)
            )
        )
        self._walk(inst, [self.j.first], at, cause)
        self._maybe_complete(inst, at, cause)

    # -- the graph walk ------------------------------------------------------------------------
    def _walk(self, inst: dict[str, Any], starts: list[str | None], at: int, cause: str) -> None:
        """Enter `starts` and run every immediate step after them, until each path waits,
        ends, or the instance exits."""
        todo = [s for s in starts if s]
        visited: set[str] = set()
        j = self.j
        while todo:
            if inst not in self.st["instances"]:
                return  # an exit step ended it
            key = todo.pop(0)
            if key in visited or any(t["step"] == key for t in inst["tokens"]):
                continue  # a path join: the instance is already there
            visited.add(key)
            step = j.steps[key]
            self._entered(inst, key, at, cause)
            ctx = inst["ctx"]
            if isinstance(step, WaitStep):
                inst["tokens"].append(_token(key, at, at + step.duration.ms))
            elif isinstance(step, WaitUntilStep):
                if j.conditions[key](self.p, ctx, at):
                    self._exited(inst, key, at, cause, "met")
                    todo += [step.next] if step.next else []
                else:
                    due = at + step.max_wait.ms if step.max_wait else None
                    inst["tokens"].append(_token(key, at, due))
            elif isinstance(step, HoldUntilStep):
                inst["tokens"].append(_token(key, at, at + step.max_hold.ms))
            elif isinstance(step, SplitStep):
                ok = j.conditions[key](self.p, ctx, at)
                self._exited(inst, key, at, cause, "true" if ok else "false")
                nxt = step.if_true if ok else step.if_false
                todo += [nxt] if nxt else []
            elif isinstance(step, MultiSplitStep):
                for b in step.branches:
                    if j.branch_conditions[(key, b.name)](self.p, ctx, at):
                        self._exited(inst, key, at, cause, b.name)
                        todo += [b.next] if b.next else []
            elif isinstance(step, DataSplitStep):
                chosen = next(
                    (
                        b
                        for b in step.branches
                        if j.branch_conditions[(key, b.name)](self.p, ctx, at)
                    ),
                    None,
                )
                self._exited(inst, key, at, cause, chosen.name if chosen else "everyone_else")
                nxt = chosen.next if chosen else step.everyone_else
                todo += [nxt] if nxt else []
            elif isinstance(step, RandomSplitStep):
                rb = step.branches[j.random_branch(step, self.p.profile_id, inst["n"])]
                self._exited(inst, key, at, cause, rb.name)
                todo += [rb.next] if rb.next else []  # no next: holdout
            elif isinstance(step, GotoStep):
                self._exited(inst, key, at, cause, "")
                todo.append(step.target)
            elif isinstance(step, SendToDestinationStep):
                if key not in inst["sent"]:
                    inst["sent"].append(key)
                    self._send(inst, step, at, cause)
                self._exited(inst, key, at, cause, "")
                todo += [step.next] if step.next else []
            elif isinstance(step, SendMessageStep):
                if key not in inst["sent"]:
                    inst["sent"].append(key)
                    self._message(inst, step, at, cause)
                self._exited(inst, key, at, cause, "")
                todo += [step.next] if step.next else []
            elif isinstance(step, ExitStep):
                self._exited(inst, key, at, cause, "")
                self._end(inst, at, cause, "instance_exited", "exit_step")
                return

    def _maybe_complete(self, inst: dict[str, Any], at: int, cause: str) -> None:
        if inst in self.st["instances"] and not inst["tokens"]:
            self._end(inst, at, cause, "instance_completed", "")

    def _end(
        self, inst: dict[str, Any], at: int, cause: str, kind: OutputType, reason: str
    ) -> None:
        st = self.st
        for tok in inst["tokens"]:  # still waiting somewhere: it leaves that step too
            self._exited(inst, tok["step"], at, cause, "exit", tok["loops"])
        inst["tokens"] = []
        st["instances"].remove(inst)
        self.out.append(
            InstanceRecord(type=kind, reason=reason, **self._base(kind, inst["id"], "", at, cause))
        )
        st["ended_at"] = at
        mode = self.j.definition.reentry
        if not self.j.v2 and mode.mode == "after" and mode.after is not None:
            st["reentry_at"] = at + mode.after.ms

    # -- inputs on running instances ----------------------------------------------------------
    def exit_events(self, event: ProfileEvent, at: int, cause: str) -> None:
        if not self.j.exit_events:
            return
        uid = _uid(get_path(event.properties, self.j.uid_path)) if self.j.uid_path else None
        for inst in list(self.st["instances"]):
            for name, match, same_id in self.j.exit_events:
                if event.event != name or not match(event.properties, at):
                    continue
                if same_id and inst["uid"] != uid:
                    continue
                send = self.j.definition.exit.send
                if send is not None:
                    self._exit_send(inst, event, at, cause)
                self._end(inst, at, cause, "instance_exited", "exit_event")
                break

    def holds(self, event: ProfileEvent, at: int, cause: str) -> None:
        uid = _uid(get_path(event.properties, self.j.uid_path)) if self.j.uid_path else None
        for inst in list(self.st["instances"]):
            if self.j.uid_path is not None and inst["uid"] != uid:
                continue  # re-entry journeys: only the instance of the same identifier
            for tok in list(inst["tokens"]):
                branches = self.j.holds.get(tok["step"])
                if not branches:
                    continue
                b = next(
                    (
                        b
                        for b in branches
                        if b.event == event.event and b.match(event.properties, at)
                    ),
                    None,
                )
                if b is None:
                    continue
                inst["ctx"][b.alias] = dict(event.properties)
                if b.loop_back and tok["loops"] < MAX_HOLD_LOOPS:
                    self._exited(inst, tok["step"], at, cause, b.name, tok["loops"])
                    step = self.j.steps[tok["step"]]
                    assert isinstance(step, HoldUntilStep)
                    tok["loops"] += 1
                    tok["since"], tok["due"] = at, at + step.max_hold.ms
                    self._entered(inst, tok["step"], at, cause, tok["loops"])
                    continue
                inst["tokens"].remove(tok)
                self._exited(inst, tok["step"], at, cause, b.name, tok["loops"])
                self._walk(inst, [b.next], at, cause)
            self._maybe_complete(inst, at, cause)

    def recheck_waits(self, at: int, cause: str) -> None:
        """A wait-until step moves on as soon as its condition holds after an input."""
        for inst in list(self.st["instances"]):
            for tok in list(inst["tokens"]):
                step = self.j.steps[tok["step"]]
                if not isinstance(step, WaitUntilStep) or tok not in inst["tokens"]:
                    continue
                if self.j.conditions[step.key](self.p, inst["ctx"], at):
                    inst["tokens"].remove(tok)
                    self._exited(inst, step.key, at, cause, "met")
                    self._walk(inst, [step.next], at, cause)
            self._maybe_complete(inst, at, cause)

    # -- outputs ----------------------------------------------------------------------------
    def _base(
        self, kind: str, iid: str, step: str, at: int, cause: str, *extra: Any
    ) -> dict[str, Any]:
        return {
            "journey": self.j.key,
            "version": self.j.version,
            "profile_id": self.p.profile_id,
            "instance_id": iid,
            "step": step,
            "at": at,
            "cause": cause,
            "message_id": "journey-"
            + _hash(self.j.key, self.j.version, self.p.profile_id, iid, kind, step, cause, *extra),
        }

    def _entered(
        self, inst: dict[str, Any], step: str, at: int, cause: str, loops: int = 0
    ) -> None:
        self.out.append(
            StepRecord(
                type="step_entered",
                loops=loops,
                **self._base("step_entered", inst["id"], step, at, cause, loops),
            )
        )

    def _exited(
        self, inst: dict[str, Any], step: str, at: int, cause: str, branch: str, loops: int = 0
    ) -> None:
        self.out.append(
            StepRecord(
                type="step_exited",
                branch=branch,
                loops=loops,
                **self._base("step_exited", inst["id"], step, at, cause, branch, loops),
            )
        )

    def _send(self, inst: dict[str, Any], step: SendToDestinationStep, at: int, cause: str) -> None:
        base = self._base("destination_send", inst["id"], step.key, at, cause)
        key = self.j.step_key(step.key)
        mid = base["message_id"]
        ids = self._ids()
        traits = {t: self.p.traits.get(t) for t in step.traits if self.p.traits.get(t) is not None}
        calls: list[dict[str, Any]] = []
        if self.j.v2:
            calls.append(
                {
                    "type": "track",
                    "event": step.event or step.display_name,
                    **ids,
                    "timestamp": iso_ms(at),
                    "messageId": "personas_" + _hash(mid, "track"),
                    "context": {
                        "personas": {
                            "computation_class": "journey_step",
                            "computation_id": key,
                            "computation_key": key,
                        }
                    },
                    "properties": {
                        "journey_context": inst["ctx"],
                        "journey_metadata": {
                            "journey_id": self.j.definition.journey_id,
                            "epoch_id": inst["id"],
                        },
                        **traits,
                    },
                }
            )
        else:
            personas = {
                "computation_class": "audience",
                "computation_id": key,
                "computation_key": key,
            }
            # the email travels as audience outputs carry it (reference §3.3)
            email = self.p.identifier("email")
            with_email = {"email": email} if email else {}
            if step.identify:
                calls.append(
                    {
                        "type": "identify",
                        **ids,
                        "timestamp": iso_ms(at),
                        "messageId": "personas_" + _hash(mid, "identify"),
                        "traits": {key: "true", **with_email, **traits},
                        "context": {"personas": personas},
                    }
                )
            if step.track:
                calls.append(
                    {
                        "type": "track",
                        "event": "Audience Entered",
                        **ids,
                        "timestamp": iso_ms(at),
                        "messageId": "personas_" + _hash(mid, "track"),
                        "properties": {key: "true", "audience_key": key, **traits},
                        "context": {
                            "personas": personas,
                            **({"traits": with_email} if email else {}),
                        },
                    }
                )
        self.out.append(
            DestinationSend(
                type="destination_send",
                step_key=key,
                destinations=tuple(step.destinations),
                calls=tuple(calls),
                **base,
            )
        )

    def _exit_send(self, inst: dict[str, Any], event: ProfileEvent, at: int, cause: str) -> None:
        send = self.j.definition.exit.send
        assert send is not None and isinstance(self.j.entry, EventEntry)
        base = self._base("destination_send", inst["id"], "$exit", at, cause)
        key = self.j.step_key("exit")
        call = {
            "type": "track",
            "event": send.event,
            **self._ids(),
            "timestamp": iso_ms(at),
            "messageId": "personas_" + _hash(base["message_id"], "track"),
            "context": {
                "personas": {
                    "computation_class": "journey_step",
                    "computation_id": key,
                    "computation_key": key,
                }
            },
            "properties": {
                "journey_context": inst["ctx"],
                "entry_event": inst["ctx"].get(self.j.entry.event),
                "exit_event": {"event": event.event, "properties": dict(event.properties)},
                "journey_metadata": {
                    "journey_id": self.j.definition.journey_id,
                    "epoch_id": inst["id"],
                },
            },
        }
        self.out.append(
            DestinationSend(
                type="destination_send",
                step_key=key,
                destinations=tuple(send.destinations),
                calls=(call,),
                **base,
            )
        )

    def _ids(self) -> dict[str, Any]:
        ids: dict[str, Any] = {}
        if self.p.user_id is not None:
            ids["userId"] = self.p.user_id
        anon = self.p.identifier("anonymous_id")
        if anon is not None:
            ids["anonymousId"] = anon
        return ids

    def _message(self, inst: dict[str, Any], step: SendMessageStep, at: int, cause: str) -> None:
        trait = step.to or ("email" if step.channel == "email" else "phone")
        address = self.p.traits.get(trait)
        if not isinstance(address, str) or not address:
            address = self.p.identifier("email" if step.channel == "email" else "phone")
        if not address:
            self.out.append(
                MessageSkipped(
                    type="message_skipped",
                    channel=step.channel,
                    recipient=None,
                    reason="no_address",
                    **self._base("message_skipped", inst["id"], step.key, at, cause),
                )
            )
            return
        sub = state_of(self.p.subscriptions, step.channel, address, step.group)
        if not allowed(sub, step.channel, step.subscription):
            self.out.append(
                MessageSkipped(
                    type="message_skipped",
                    channel=step.channel,
                    recipient=address,
                    reason=sub,
                    **self._base("message_skipped", inst["id"], step.key, at, cause),
                )
            )
            return
        self.out.append(
            MessageRequest(
                type="message_request",
                channel=step.channel,
                template=step.template,
                recipient=address,
                group=step.group,
                variables={k: self._render(v, inst) for k, v in step.variables.items()},
                idempotency_key="jm_" + _hash(self.j.key, inst["id"], step.key),
                **self._base("message_request", inst["id"], step.key, at, cause),
            )
        )

    def _render(self, template: str, inst: dict[str, Any]) -> str:
        return render(
            template, self.p.traits, self.p.profile_id, inst["ctx"], {"journey": self.j.key}
        )


def _token(step: str, since: int, due: int | None) -> dict[str, Any]:
    return {"step": step, "since": since, "due": due, "loops": 0}


def outputs_json(outputs: Sequence[JourneyOutput]) -> bytes:
    """The outputs as canonical JSON (sorted keys): byte-comparable across runs."""
    return orjson.dumps([o.to_dict() for o in outputs], option=orjson.OPT_SORT_KEYS)


__all__ = [
    "CompiledJourney",
    "DestinationSend",
    "InstanceRecord",
    "JourneyMachine",
    "JourneyOutput",
    "JourneyProfile",
    "MessageRequest",
    "MessageSkipped",
    "Result",
    "StepRecord",
    "active_instances",
    "merge_states",
    "new_state",
    "next_wakeup",
]
