"""What the engine emits: one `Change` per audience membership or computed-trait value change.

A change is identified by what caused it, never by when it was processed, so replaying the
same input (or reprocessing after a crash) yields the same `message_id`:
- an event: its messageId;
- a window boundary with no new event: the boundary time (`timer:<ms>`), which is a function
  of the stored events, not of when the tick arrived;
- a new or edited definition evaluated over history: `definition:<version>`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

ChangeKind = Literal["audience", "computed_trait"]


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    key: str  # audience / computed-trait key
    version: int  # definition version that produced it
    profile_id: str
    value: Any  # audience: True (entered) / False (exited); trait: the new value, None = cleared
    previous: Any  # the value before (audience: False when first entering)
    at: int  # event time (ms) the change takes effect: the event's time or the boundary
    cause: str  # "event:<messageId>" | "timer:<ms>" | "definition:<version>"
    # message_id, once computed (not part of equality, hash or repr: it is a function of
    # the fields above)
    _message_id: str = field(default="", repr=False, compare=False)

    @property
    def message_id(self) -> str:
        """Deterministic: same definition version, profile, cause and value → same id."""
        mid = self._message_id
        if not mid:
            mid = message_id(
                self.kind, self.key, self.version, self.profile_id, self.cause, self.value
            )
            object.__setattr__(self, "_message_id", mid)
        return mid

    @classmethod
    def definition_cause(cls, version: int) -> str:
        return f"definition:{version}"


def message_id(kind: str, key: str, version: int, profile_id: str, cause: str, value: Any) -> str:
    raw = f"{kind}\x00{key}\x00{version}\x00{profile_id}\x00{cause}\x00{value!r}"
    return "engage-" + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


_new = object.__new__
(
    _set_kind,
    _set_key,
    _set_version,
    _set_profile_id,
    _set_value,
    _set_previous,
    _set_at,
    _set_cause,
    _set_message_id,
) = (
    Change.__dict__[name].__set__
    for name in (
        "kind",
        "key",
        "version",
        "profile_id",
        "value",
        "previous",
        "at",
        "cause",
        "_message_id",
    )
)


def make_change(
    kind: ChangeKind,
    key: str,
    version: int,
    profile_id: str,
    value: Any,
    previous: Any,
    at: int,
    cause: str,
    message_id: str,
) -> Change:
    """`Change(...)` with its message_id already known, without the frozen dataclass's
    `__init__` (which sets every field through `object.__setattr__`): the engine's hot
    path. Same object as the constructor builds."""
    c = _new(Change)
    _set_kind(c, kind)
    _set_key(c, key)
    _set_version(c, version)
    _set_profile_id(c, profile_id)
    _set_value(c, value)
    _set_previous(c, previous)
    _set_at(c, at)
    _set_cause(c, cause)
    _set_message_id(c, message_id)
    return c
