"""Audience and computed-trait definitions: the contract between YAML files, the engine and
the outputs.

Authored as YAML under `topologies/` (one or many definitions per file). The shapes follow
the Segment audience builder and query language (reference §1–3):

```yaml
kind: audience
key: cart_abandoners
name: Cart abandoners
include_history: {days: 90}     # or false: only events after the definition was applied
conditions:                     # rows joined like the builder; AND binds tighter than OR
  - event: Product Added
    within: 7 days
    then_not:                   # funnel: no Order Completed within 1 day after each add
      event: Order Completed
      within: 1 day
  - join: and
    trait: email
    operator: exists
destinations:
  - name: braze
    identify: true
    track: true
```

Every model forbids unknown fields, so a typo is a validation error with its location.
"""

from __future__ import annotations

import builtins
import hashlib
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    field_validator,
    model_validator,
)

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,254}$"

_UNIT_MS = {
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 7 * 86_400_000,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(minute|hour|day|week)s?\s*$", re.I)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- durations and windows ---------------------------------------------------------------
class Duration(_Strict):
    """A length of time: `{days: 7}` or the shorthand `"7 days"` (minutes|hours|days|weeks)."""

    minutes: float = 0
    hours: float = 0
    days: float = 0
    weeks: float = 0

    @model_validator(mode="before")
    @classmethod
    def _parse_shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            m = _DURATION_RE.match(data)
            if not m:
                raise ValueError(
                    f"invalid duration {data!r}: expected e.g. '30 minutes', '12 hours', "
                    "'7 days' or '2 weeks'"
                )
            return {m.group(2).lower() + "s": float(m.group(1))}
        return data

    @model_validator(mode="after")
    def _positive(self) -> Duration:
        if self.ms <= 0:
            raise ValueError("a duration must be longer than zero")
        return self

    @property
    def ms(self) -> int:
        return int(
            self.minutes * _UNIT_MS["minute"]
            + self.hours * _UNIT_MS["hour"]
            + self.days * _UNIT_MS["day"]
            + self.weeks * _UNIT_MS["week"]
        )


MAX_WINDOW_MS = 3 * 365 * 86_400_000  # reference §8: conditions evaluate the past 3 years


class Between(_Strict):
    """`in between A and B ago`: event time in [now - B, now - A] (A < B)."""

    start: Duration = Field(description="the more recent edge, e.g. 30 days (ago)")
    end: Duration = Field(description="the older edge, e.g. 90 days (ago)")

    @model_validator(mode="before")
    @classmethod
    def _pair(cls, data: Any) -> Any:
        if isinstance(data, list | tuple) and len(data) == 2:
            return {"start": data[0], "end": data[1]}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> Between:
        if self.start.ms >= self.end.ms:
            raise ValueError("between: the first duration must be shorter than the second")
        return self


def _check_window(d: Duration) -> Duration:
    if d.ms > MAX_WINDOW_MS:
        raise ValueError("window out of range: at most 3 years (1095 days)")
    return d


def _check_between(b: Between) -> Between:
    _check_window(b.end)  # the older edge bounds the window
    return b


# Every window (audience rows, funnel steps, computed traits) is range-checked the same way.
Window = Annotated[Duration, AfterValidator(_check_window)]
BetweenWindow = Annotated[Between, AfterValidator(_check_between)]

MIN_SESSION_MS = 30 * 60_000  # reference §8: session window 30 minutes ..
MAX_SESSION_MS = 90 * 86_400_000  # .. 90 days


class Session(_Strict):
    """A session window (reference §2): the value covers the current session — the trait's
    events, each less than `expires_after` after the one before — and resets once
    `expires_after` passes with no new event. `session: 1 hour` is short for
    `session: {expires_after: 1 hour}` (query language `expires_after(1 hour)`)."""

    expires_after: Duration = Field(description="inactivity that ends a session: 30 min..90 days")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"expires_after": data}
        return data

    @field_validator("expires_after", mode="after")
    @classmethod
    def _in_range(cls, d: Duration) -> Duration:
        if not MIN_SESSION_MS <= d.ms <= MAX_SESSION_MS:
            raise ValueError(
                "session window out of range: expires_after must be between 30 minutes and 90 days"
            )
        return d

    @property
    def ms(self) -> int:
        return self.expires_after.ms


# -- operators ---------------------------------------------------------------------------
class Op(StrEnum):
    """Property and trait operators (reference §1.5; query-language names as aliases)."""

    equals = "equals"
    not_equals = "not_equals"  # `differs`: true only if the value exists and is unequal
    less_than = "less_than"
    greater_than = "greater_than"
    at_most = "at_most"  # <=
    at_least = "at_least"  # >=
    equals_any_of = "equals_any_of"  # one_of
    none_of = "none_of"
    contains = "contains"  # substring; against any element of an array
    does_not_contain = "does_not_contain"  # omits
    contains_any_of = "contains_any_of"
    starts_with = "starts_with"
    ends_with = "ends_with"
    exists = "exists"
    not_exists = "not_exists"  # absent
    before_date = "before_date"
    after_date = "after_date"
    within_last = "within_last"  # value: duration; [now - d, now], inclusive
    within_next = "within_next"  # [now, now + d]
    before_last = "before_last"  # older than now - d
    after_next = "after_next"  # later than now + d


OP_ALIASES: dict[str, Op] = {
    "=": Op.equals,
    "==": Op.equals,
    "!=": Op.not_equals,
    "differs": Op.not_equals,
    "<": Op.less_than,
    ">": Op.greater_than,
    "<=": Op.at_most,
    ">=": Op.at_least,
    "less_than_or_equal": Op.at_most,
    "greater_than_or_equal": Op.at_least,
    "one_of": Op.equals_any_of,
    "equals_one_of": Op.equals_any_of,
    "contains_one_of": Op.contains_any_of,
    "omits": Op.does_not_contain,
    "absent": Op.not_exists,
}

NO_VALUE_OPS = frozenset({Op.exists, Op.not_exists})
LIST_OPS = frozenset({Op.equals_any_of, Op.none_of, Op.contains_any_of})
DURATION_OPS = frozenset({Op.within_last, Op.within_next, Op.before_last, Op.after_next})
DATE_OPS = frozenset({Op.before_date, Op.after_date})
STRING_OPS = frozenset({Op.contains, Op.does_not_contain, Op.starts_with, Op.ends_with})
ORDER_OPS = frozenset({Op.less_than, Op.greater_than, Op.at_most, Op.at_least})
# operators that accept a dynamic reference instead of a constant (reference §1.4)
DYNAMIC_OPS = frozenset(
    {Op.equals, Op.not_equals, *ORDER_OPS, Op.contains, Op.does_not_contain}
    | {Op.starts_with, Op.ends_with}
)


def _op(value: Any) -> Any:
    if isinstance(value, str):
        norm = value.strip().lower().replace(" ", "_")
        return OP_ALIASES.get(value.strip(), OP_ALIASES.get(norm, norm))
    return value


Scalar = str | int | float | bool


class ValueRef(_Strict):
    """A dynamic value: the parent event's property (funnel child filters) or a trait."""

    parent_property: str | None = Field(None, description="property path on the parent event")
    trait: str | None = Field(None, description="trait key on the profile")

    @model_validator(mode="after")
    def _exactly_one(self) -> ValueRef:
        if (self.parent_property is None) == (self.trait is None):
            raise ValueError("value_from needs exactly one of parent_property or trait")
        return self


class _Comparison(_Strict):
    operator: Op
    value: Scalar | list[Scalar] | Duration | None = None
    value_from: ValueRef | None = None

    @field_validator("operator", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        return _op(v)

    @model_validator(mode="before")
    @classmethod
    def _duration_value(cls, data: Any) -> Any:
        if isinstance(data, dict):
            op = _op(data.get("operator"))
            if op in DURATION_OPS and data.get("value") is not None:
                data = {**data, "value": Duration.model_validate(data["value"])}
        return data

    @model_validator(mode="after")
    def _value_fits_operator(self) -> _Comparison:
        op, v = self.operator, self.value
        if self.value_from is not None:
            if op not in DYNAMIC_OPS:
                raise ValueError(f"operator {op.value} does not accept value_from")
            if v is not None:
                raise ValueError("give either value or value_from, not both")
            return self
        if op in NO_VALUE_OPS:
            if v is not None:
                raise ValueError(f"operator {op.value} takes no value")
        elif op in LIST_OPS:
            if not isinstance(v, list) or not v:
                raise ValueError(f"operator {op.value} needs a non-empty list value")
        elif op in DURATION_OPS:
            if not isinstance(v, Duration):
                raise ValueError(f"operator {op.value} needs a duration value, e.g. '7 days'")
        elif op in DATE_OPS:
            if not isinstance(v, str) or parse_date_ms(v) is None:
                raise ValueError(
                    f"operator {op.value} needs an ISO-8601 date or timestamp, e.g. '2025-01-31'"
                )
        elif op in ORDER_OPS:
            if isinstance(v, bool) or not isinstance(v, int | float | str):
                raise ValueError(f"operator {op.value} needs a number (or date string) value")
        elif op in STRING_OPS:
            if not isinstance(v, str):
                raise ValueError(f"operator {op.value} needs a string value")
        elif v is None or isinstance(v, list | Duration):
            raise ValueError(f"operator {op.value} needs a single value")
        return self


class PropertyFilter(_Comparison):
    """Restricts which events count: `property` is a path (`.` nests, `\\.` is a literal dot)."""

    property: str = Field(min_length=1)


# -- conditions ----------------------------------------------------------------------------
class Count(_Strict):
    """`count: ">= 2"` or `{operator: ">=", value: 2}`; default: at least once."""

    operator: Literal[">=", ">", "=", "!=", "<=", "<"] = ">="
    value: int = Field(1, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"operator": ">=", "value": data}
        if isinstance(data, str):
            m = re.match(r"^\s*(>=|<=|!=|=|>|<)\s*(\d+)\s*$", data)
            if not m:
                raise ValueError(f"invalid count {data!r}: expected e.g. '>= 2'")
            return {"operator": m.group(1), "value": int(m.group(2))}
        return data


class _Row(_Strict):
    join: Literal["and", "or"] = Field(
        "and", description="how this row joins the previous one; AND binds tighter than OR"
    )


class FunnelStep(_Strict):
    """The child of a funnel: did / did not perform `event` within `within` after each parent
    occurrence. Filters may reference the parent's properties (`value_from.parent_property`)."""

    event: str = Field(min_length=1)
    where: list[PropertyFilter] = Field(default_factory=list)
    within: Window


class EventCondition(_Row):
    """Performed (`count`, default at least once) or not performed an event."""

    event: str = Field(min_length=1, description="event name; page/screen are 'Page Viewed'...")
    performed: bool = Field(True, description="false: 'and not who' (count = 0)")
    count: Count = Field(default_factory=Count)
    where: list[PropertyFilter] = Field(default_factory=list)
    within: Window | None = None
    between: BetweenWindow | None = None
    then: FunnelStep | None = Field(None, description="funnel: and then did")
    then_not: FunnelStep | None = Field(None, description="funnel: and then did not")

    @model_validator(mode="after")
    def _one_window(self) -> EventCondition:
        if self.within is not None and self.between is not None:
            raise ValueError("give either within or between, not both")
        if self.then is not None and self.then_not is not None:
            raise ValueError("a funnel has either then or then_not, not both")
        for f in self.where:
            if f.value_from is not None and f.value_from.parent_property is not None:
                raise ValueError("parent_property references are only allowed in funnel steps")
        return self

    @property
    def funnel(self) -> tuple[FunnelStep, bool] | None:
        """(child step, child must happen)."""
        if self.then is not None:
            return self.then, True
        if self.then_not is not None:
            return self.then_not, False
        return None


class TraitCondition(_Row, _Comparison):
    """A custom or computed trait (path) compared with an operator."""

    trait: str = Field(min_length=1, description="trait path; `.` nests, `\\.` is a literal dot")
    source: Literal["any", "custom", "computed"] = Field(
        "any",
        description="computed: must name a computed trait defined alongside (checked by "
        "validate); custom: only the profile's custom traits; any: audience, computed, then custom",
    )

    @model_validator(mode="after")
    def _no_parent(self) -> TraitCondition:
        if self.value_from is not None and self.value_from.parent_property is not None:
            raise ValueError("parent_property references are only allowed in funnel steps")
        return self


class AudienceCondition(_Row):
    """Part of (`member: true`) or not part of another audience."""

    audience: str = Field(pattern=KEY_PATTERN)
    member: bool = True


class GroupCondition(_Row):
    """Parenthesised rows; `negate` turns it into NOT (...)."""

    group: list[Condition] = Field(min_length=1)
    negate: bool = False


class UsersCondition(_Row):
    """Account audiences: user-level rows wrapped by any / all / none of the account's users
    (reference §1.7): each user is evaluated on their own events and traits."""

    users: Literal["any", "all", "none"] = Field(
        description="any: at least one user matches; all: every user; none: no user"
    )
    conditions: list[Condition] = Field(min_length=1, max_length=50)


def condition_kind(data: Any) -> str | None:
    """Which condition model a row is (by its leading field), so errors name one model."""
    if isinstance(data, BaseModel):
        data = data.model_dump()
    if isinstance(data, dict):
        for field_name in ("event", "trait", "audience", "group", "users"):
            if field_name in data:
                return field_name
    return None


def _check_rows(rows: list[Any], account: bool, top: bool) -> None:
    """`users:` rows only in account audiences, and there every event row inside one (an
    account has no events of its own)."""
    for row in rows:
        if isinstance(row, UsersCondition):
            if not account:
                raise ValueError(
                    "users: any|all|none rows belong in a collection: accounts audience"
                )
            _check_rows(row.conditions, False, top=False)
        elif isinstance(row, GroupCondition):
            _check_rows(row.group, account, top)
        elif account and isinstance(row, EventCondition):
            raise ValueError(
                f"event {row.event!r} in an account audience: wrap user-level rows in "
                "`users: any|all|none` (or use an account-level computed trait)"
            )


Condition = Annotated[
    Annotated[EventCondition, Tag("event")]
    | Annotated[TraitCondition, Tag("trait")]
    | Annotated[AudienceCondition, Tag("audience")]
    | Annotated[GroupCondition, Tag("group")]
    | Annotated[UsersCondition, Tag("users")],
    Discriminator(
        condition_kind,
        custom_error_type="condition_kind",
        custom_error_message="a condition row needs one of: event, trait, audience, group, users",
    ),
]


# -- destinations ---------------------------------------------------------------------------
class _Destination(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$", description="output topic suffix")
    identify: bool = True
    track: bool = False
    users: bool = Field(
        False,
        description="account-level definitions: also an Identify for each user of the "
        "account (reference §3.2), besides the account's Group call",
    )

    @model_validator(mode="after")
    def _some_call(self) -> _Destination:
        if not (self.identify or self.track):
            raise ValueError("a destination needs identify and/or track")
        return self


class AudienceDestination(_Destination):
    """Where membership changes go, and as which calls (reference §3)."""

    entered_event: str = "Audience Entered"
    exited_event: str = "Audience Exited"


class TraitDestination(_Destination):
    """Where computed-trait values go: Identify traits and/or a `Trait Computed` Track."""

    track_event: str = "Trait Computed"


# -- definitions ------------------------------------------------------------------------------
class History(_Strict):
    """Include historical event data, with a lookback (reference §1.1)."""

    days: float = Field(90, gt=0, le=1095)

    @property
    def ms(self) -> int:
        return int(self.days * 86_400_000)


def _history(v: Any) -> Any:
    if v is True:
        return History()
    if v is False or v is None:
        return None
    if isinstance(v, int | float) and not isinstance(v, bool):
        return {"days": v}
    return v


class _Definition(_Strict):
    key: str = Field(pattern=KEY_PATTERN, description="immutable; snake_case")
    name: str = Field("", description="display name; defaults to the key")
    description: str = ""
    id: str = Field("", description="computation_id; derived from the key when empty")
    enabled: bool = True
    include_anonymous: bool = Field(
        False, description="also profiles known only by anonymous_id (reference §1.1)"
    )
    include_history: History | None = Field(
        default_factory=History,
        description="consider events before the definition was applied (lookback); "
        "false = only events after",
    )
    collection: Literal["users", "accounts"] = Field(
        "users",
        description="accounts: evaluated per account (group_id) over its traits and the "
        "events of all its users (reference §1.7)",
    )

    @field_validator("include_history", mode="before")
    @classmethod
    def _hist(cls, v: Any) -> Any:
        return _history(v)

    @property
    def display_name(self) -> str:
        return self.name or self.key

    def computation_id(self, prefix: str) -> str:
        if self.id:
            return self.id
        return prefix + hashlib.blake2b(self.key.encode(), digest_size=8).hexdigest()


class AudienceDefinition(_Definition):
    kind: Literal["audience"] = "audience"
    conditions: list[Condition] = Field(min_length=1, max_length=50)
    destinations: list[AudienceDestination] = Field(default_factory=list)

    @model_validator(mode="after")
    def _collection_rows(self) -> AudienceDefinition:
        _check_rows(self.conditions, self.collection == "accounts", top=True)
        if self.collection == "users" and any(d.users for d in self.destinations):
            raise ValueError("destinations' `users: true` is for collection: accounts audiences")
        return self

    @property
    def computation_class(self) -> str:
        return "audience"

    @property
    def computation_prefix(self) -> str:
        return "aud_"


TraitType = Literal[
    "counter",
    "sum",
    "avg",
    "min",
    "max",
    "most_frequent",
    "first",
    "last",
    "unique_list",
    "unique_count",
]
PROPERTY_TRAIT_TYPES = frozenset(
    {"sum", "avg", "min", "max", "most_frequent", "first", "last", "unique_list", "unique_count"}
)


class ComputedTraitDefinition(_Definition):
    kind: Literal["computed_trait"] = "computed_trait"
    type: TraitType
    event: str = Field(min_length=1)
    property: str | None = Field(None, description="the event property aggregated (not counter)")
    where: list[PropertyFilter] = Field(default_factory=list)
    within: Window | None = Field(
        None,
        description="rolling window; from 1 day on an event leaves at the end of its grain "
        "(never early, at most 0.1 % of the window and an hour late)",
    )
    between: BetweenWindow | None = None
    session: Session | None = Field(
        None, description="session window instead of within/between: the current session only"
    )
    min_frequency: int = Field(2, ge=1, description="most_frequent: minimum occurrences")
    as_string: bool = Field(
        False,
        description="min / max: compare values as text (lexicographic, by code point) "
        "instead of as numbers",
    )
    destinations: list[TraitDestination] = Field(default_factory=list)

    @model_validator(mode="after")
    def _property_needed(self) -> ComputedTraitDefinition:
        if self.type in PROPERTY_TRAIT_TYPES and not self.property:
            raise ValueError(f"a {self.type} trait needs `property`")
        if self.type == "counter" and self.property:
            raise ValueError("a counter trait counts events; remove `property`")
        if self.within is not None and self.between is not None:
            raise ValueError("give either within or between, not both")
        if self.as_string and self.type not in ("min", "max"):
            raise ValueError("as_string orders min / max values; remove it from a " + self.type)
        for f in self.where:
            if f.value_from is not None and f.value_from.parent_property is not None:
                raise ValueError("parent_property references are only allowed in funnel steps")
        if self.session is not None:
            self._check_session(self.session)
        return self

    def _check_session(self, session: Session) -> None:
        if self.within is not None or self.between is not None:
            raise ValueError("a session window replaces within / between: give only one")
        if any(f.value_from is not None or f.operator in DURATION_OPS for f in self.where):
            raise ValueError(
                "a session window takes filters against constants only (no value_from, no "
                "relative dates): which events make up a session must not change afterwards"
            )
        history = self.include_history
        if history is not None and history.ms < session.ms:
            raise ValueError(
                f"include_history ({history.days:g} days) is shorter than the session "
                f"window's expires_after: a session must fit in the lookback"
            )

    @builtins.property
    def computation_class(self) -> str:
        return "trait"

    @builtins.property
    def computation_prefix(self) -> str:
        return "tra_"


Definition = Annotated[AudienceDefinition | ComputedTraitDefinition, Field(discriminator="kind")]


class DefinitionFile(RootModel[list[Definition]]):
    """What one YAML file holds (a single definition or a list); the JSON Schema root."""


# -- dates ---------------------------------------------------------------------------------------
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date_ms(value: Any) -> int | None:
    """ISO-8601 date (`2025-01-31`, UTC midnight) or timestamp with zone → epoch ms; else None.

    Timestamps without a zone are rejected, as in Segment (reference §1.1, §9)."""
    from datetime import UTC, datetime

    if not isinstance(value, str):
        return None
    s = value.strip()
    try:
        if _DATE_ONLY.match(s):
            return int(datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp() * 1000)
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return int(dt.timestamp() * 1000)


GroupCondition.model_rebuild()
